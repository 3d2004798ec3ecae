//! The Lambda function: its environment (links and `environment`, checked against Lambda's
//! 4 KB limit before the function is created or changed), its code (built with cargo-lambda
//! off the async threads), its IAM role, the function itself and its public URL.
//!
//! The build and the IAM role need nothing from Neon, and are the slow parts (a release
//! build; IAM propagation), so [`Prepared`] starts both when the run starts: they overlap
//! the Neon steps, and the function step, once its links are known, only waits for what is
//! left of them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use tokio::task::JoinHandle;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Clients, KNOWN_AFTER, Live, Recorded, Step, StepCause, outputs_of, resolve_template};
use crate::aws::iam::Role;
use crate::aws::{self, Aws, is_code, lambda};
use crate::build::Artifact;
use crate::config::{Config, FunctionSpec, Kind, Resource, Spec, Template};
use crate::state::{Recorder, ResourceState, StageState};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ids {
    pub function_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub name: String,
    pub arn: String,
    /// The URL of the alias `live` (of the function itself, for a stage deployed before
    /// releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The version `live` serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The inputs `refresh` compares with the live function.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Inputs {
    #[serde(default)]
    pub memory: Option<i64>,
    #[serde(default)]
    pub timeout: Option<i64>,
    #[serde(default)]
    pub url: Option<bool>,
    #[serde(default)]
    pub reserved_concurrency: Option<i64>,
    #[serde(default)]
    pub role_permissions_boundary: Option<String>,
    /// `live` where the URL is the alias's; none for a URL on the function itself.
    #[serde(default)]
    pub url_on: Option<String>,
}

/// Its environment holds the links' secrets: diffs say only that it changed.
pub const SECRET_INPUTS: &[&str] = &["environment"];

pub fn desired_inputs(f: &FunctionSpec, state: &StageState) -> Value {
    let env = function_environment(&f.links, &f.environment, state);
    json!({
        "package": f.package, "url": f.url, "memory": f.memory, "timeout": f.timeout,
        "log_retention_days": f.log_retention_days,
        "reserved_concurrency": f.reserved_concurrency,
        "role_permissions_boundary": f.role_permissions_boundary,
        "tags": f.tags,
        "architecture": if f.arm64 { "arm64" } else { "x86_64" },
        "environment": env.map_or(json!(KNOWN_AFTER), |e| json!(e)),
        // The URL is the alias's: a stage whose URL is the function's moves it (a new
        // hostname), which `describe_field` says.
        "url_on": f.url.then_some(super::alias::LIVE),
    })
}

/// How `diff` shows the URL moving to the alias `live`.
pub fn describe(field: &str, old: &Value, new: &Value) -> Option<String> {
    (field == "url_on" && old.is_null() && new == super::alias::LIVE).then(|| {
        "the URL is replaced by the alias `live`'s (a new hostname); the old one is removed once the new one answers".to_owned()
    })
}

/// `LINK_<Name>` (JSON of the link's properties) plus `environment`, if all are known.
pub fn function_environment(
    links: &[String],
    environment: &BTreeMap<String, Template>,
    state: &StageState,
) -> Option<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for link in links {
        let outputs = outputs_of(state, link)?;
        env.insert(format!("LINK_{link}"), serde_json::to_string(outputs).ok()?);
    }
    for (k, t) in environment {
        env.insert(k.clone(), resolve_template(t, |n| outputs_of(state, n))?);
    }
    Some(env)
}

/// The environment each function will have, where it is known before the deploy: from
/// recorded outputs, and from links whose properties are literal (or known) themselves.
/// `None` for a function that waits on an output this deploy produces.
pub fn known_environments(
    config: &Config,
    state: &StageState,
) -> Vec<(String, Option<BTreeMap<String, String>>)> {
    let mut view = state.clone();
    for r in &config.resources {
        if let Spec::Link(link) = &r.spec {
            let resolved: Option<BTreeMap<String, String>> = link
                .properties
                .iter()
                .map(|(k, t)| resolve_template(t, |n| outputs_of(state, n)).map(|v| (k.clone(), v)))
                .collect();
            if let Some(outputs) = resolved {
                view.resources.insert(
                    r.name.clone(),
                    ResourceState {
                        kind: r.kind,
                        ids: BTreeMap::new(),
                        inputs: Value::Null,
                        outputs,
                        imported: false,
                    },
                );
            }
        }
    }
    config
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Function(f) => Some((
                r.name.clone(),
                function_environment(&f.links, &f.environment, &view),
            )),
            _ => None,
        })
        .collect()
}

/// Records every function the plan creates, IDs only, before anything starts: its IAM role
/// and log group may exist before the function step runs (or if it fails), and what the
/// state names, `remove` deletes. The step records it fully.
pub async fn record_before_creating(
    config: &Config,
    stage: &str,
    created: &[&str],
    recorder: &Recorder,
) -> Result<(), (String, crate::state::StateError)> {
    for function in created {
        let placeholder = ResourceState {
            kind: Kind::Function,
            ids: crate::state::to_map(&Ids {
                function_name: aws::physical_name(&config.app, stage, function),
            }),
            inputs: Value::Null,
            outputs: BTreeMap::new(),
            imported: false,
        };
        recorder
            .record(function, placeholder)
            .await
            .map_err(|e| (function.to_string(), e))?;
    }
    Ok(())
}

/// A function's build and its role, started ahead of its step, side by side: IAM's
/// propagation is the longest wait of a fresh deploy, so the role is created first thing.
/// (Prebuilt code was checked before the run started; a failed cargo build leaves the role,
/// which the state names, so the next deploy adopts it and `remove` deletes it.)
type Prep = JoinHandle<Result<(Artifact, Role), StepCause>>;

/// The builds and roles started for this run's functions, taken by their steps.
#[derive(Default)]
pub struct Prepared(Mutex<HashMap<String, Prep>>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

impl Prepared {
    /// Starts the build and the role of each of `functions` (those the plan creates or
    /// deploys).
    pub fn start(
        config: &Config,
        stage: &str,
        project_dir: &Path,
        clients: &Clients,
        functions: &[&str],
        recorded: &StageState,
    ) -> Prepared {
        let Some(aws) = &clients.aws else {
            return Prepared::default();
        };
        let mut preps = HashMap::new();
        for &function in functions {
            let Some(Resource {
                spec: spec @ Spec::Function(FunctionSpec { package, arm64, .. }),
                ..
            }) = config.resource(function)
            else {
                continue;
            };
            let Spec::Function(spec) = spec else {
                continue;
            };
            let settings = role_settings(spec, recorded.resources.get(function));
            let via_s3 = matches!(config.state, crate::config::StateBackend::S3 { .. });
            let (dir, package, arm64) = (project_dir.to_owned(), package.clone(), *arm64);
            let (iam, name) = (
                aws.iam.clone(),
                aws::physical_name(&config.app, stage, function),
            );
            let prep = tokio::spawn(async move {
                let build = tokio::task::spawn_blocking(move || {
                    crate::build::build(&dir, &package, arm64, via_s3)
                });
                let role = aws::iam::upsert_role(&iam, &name, &settings).await;
                let artifact = build.await??;
                Ok((artifact, role?))
            });
            preps.insert(function.to_owned(), prep);
        }
        Prepared(Mutex::new(preps))
    }

    fn take(&self, function: &str) -> Option<Prep> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(function)
    }
}

impl Drop for Prepared {
    /// A run that stops before a function's step leaves no IAM work running behind it (a
    /// build cannot be stopped half-way; it finishes and is dropped).
    fn drop(&mut self) {
        for prep in self.0.get_mut().unwrap_or_else(|p| p.into_inner()).values() {
            prep.abort();
        }
    }
}

/// What the function's role should have: the declared boundary (and the one recorded, to
/// remove it when the key goes) and tags.
fn role_settings(spec: &FunctionSpec, recorded: Option<&ResourceState>) -> aws::iam::RoleSettings {
    let previous: Inputs = recorded
        .and_then(|rs| rs.inputs_as("").ok())
        .unwrap_or_default();
    aws::iam::RoleSettings {
        boundary: spec.role_permissions_boundary.clone(),
        previous_boundary: previous.role_permissions_boundary,
        tags: spec.tags.clone(),
    }
}

/// Lambda's limit on a function's environment variables: 4 KB, measured on the JSON of the
/// variables map ("Lambda was unable to configure your environment variables because the
/// environment variables you have provided exceeded the 4KB limit. String measured: {...}").
pub const LAMBDA_ENV_LIMIT_BYTES: usize = 4 * 1024;

/// The size Lambda measures: the map's JSON, `{"K":"V",...}`, escapes included.
pub fn environment_size(env: &std::collections::BTreeMap<String, String>) -> usize {
    serde_json::to_string(env).map_or(usize::MAX, |s| s.len())
}

/// How old a read of the function may be when it is acted on: one made before a build that
/// took longer is made again.
const STALE_READ: std::time::Duration = std::time::Duration::from_secs(5);

/// Builds and converges the function; the record, and whether anything changed in AWS.
pub async fn converge(
    step: &Step<'_>,
    r: &Resource,
    spec: &FunctionSpec,
) -> Result<(Recorded, bool), StepCause> {
    let FunctionSpec {
        package,
        links,
        url,
        memory,
        timeout,
        log_retention_days,
        reserved_concurrency,
        arm64,
        environment,
        role_permissions_boundary: _,
        tags,
        smoke,
        keep_releases,
    } = spec;
    let settings = role_settings(spec, step.state.resources.get(&r.name));
    let via_s3 = matches!(step.config.state, crate::config::StateBackend::S3 { .. });
    let env = function_environment(links, environment, &step.state)
        .ok_or_else(|| StepCause::Unresolved(format!("{} (a link or variable)", r.name)))?;
    let size = environment_size(&env);
    if size > LAMBDA_ENV_LIMIT_BYTES {
        return Err(StepCause::EnvTooLarge {
            function: r.name.clone(),
            size,
        });
    }
    let name = aws::physical_name(&step.config.app, step.stage, &r.name);
    let aws = step.aws()?;
    let prepared = async {
        let started = std::time::Instant::now();
        let (artifact, role) = match step.prepared.take(&r.name) {
            Some(prep) => prep.await??,
            // Not started ahead (`--concurrency 1`, or a replaced function): in turn.
            None => {
                let (dir, pkg, arm) = (step.project_dir.to_owned(), package.clone(), *arm64);
                let artifact = tokio::task::spawn_blocking(move || {
                    crate::build::build(&dir, &pkg, arm, via_s3)
                })
                .await??;
                (
                    artifact,
                    aws::iam::upsert_role(&aws.iam, &name, &settings).await?,
                )
            }
        };
        Ok::<_, StepCause>((artifact, role, started.elapsed()))
    };
    // The reads need neither the code nor the role, so they overlap with them: a code-only
    // deploy then costs the role's reads, the upload and its wait, not their sum. All three
    // finish, so a failure reported is the same whichever fails first: the build's or the
    // role's before the reads'.
    let live = Some(super::alias::LIVE);
    let (prepared, existing, url_state, legacy_url) = tokio::join!(
        prepared,
        lambda::read_function(&aws.lambda, &name),
        aws::url::UrlState::read(&aws.lambda, &name, live),
        aws::url::UrlState::read(&aws.lambda, &name, None),
    );
    let (artifact, role, prepared_in) = prepared?;
    let (mut existing, mut url_state, mut legacy_url) = (existing?, url_state?, legacy_url?);
    // After a long build, what was read may be stale (another run, or the console): read
    // again rather than decide on it.
    if prepared_in > STALE_READ {
        (existing, url_state, legacy_url) = tokio::try_join!(
            lambda::read_function(&aws.lambda, &name),
            aws::url::UrlState::read(&aws.lambda, &name, live),
            aws::url::UrlState::read(&aws.lambda, &name, None),
        )?;
    }
    // Code over Lambda's direct-upload limit goes through the state bucket, when it is to
    // be uploaded at all (Lambda has other code than this).
    let new_code = existing
        .as_ref()
        .is_none_or(|c| c.code_sha256() != Some(artifact.sha256_base64.as_str()));
    let s3_code = match step.recorder.store() {
        crate::state::Store::S3(s3)
            if new_code && artifact.zip.len() > crate::build::DIRECT_UPLOAD_SWITCH_BYTES =>
        {
            let bucket_region = s3.region().unwrap_or_default();
            let region = aws.region.clone().unwrap_or_default();
            if bucket_region != region {
                return Err(StepCause::CodeBucketRegion {
                    function: r.name.clone(),
                    bucket: s3.bucket.clone(),
                    bucket_region,
                    region,
                });
            }
            Some((
                s3.clone(),
                s3.put_code(
                    step.stage,
                    &r.name,
                    &artifact.sha256_base64,
                    artifact.zip.clone(),
                )
                .await?,
            ))
        }
        _ => None,
    };
    // What a failed check's report withholds: the values the function is given.
    let secrets: Vec<String> = env.values().filter(|v| v.len() >= 8).cloned().collect();
    let spec = lambda::FunctionSpec {
        name: name.clone(),
        s3_code: s3_code.as_ref().map(|(_, location)| location.clone()),
        role_arn: role.arn.clone(),
        zip: artifact.zip,
        code_sha256: artifact.sha256_base64,
        role_propagating: role.propagating,
        arm64: *arm64,
        memory: *memory as i32,
        timeout: *timeout as i32,
        environment: env.into_iter().collect::<HashMap<_, _>>(),
        tags: tags.clone(),
    };
    // Two independent things at once: the log group (created before the function's first
    // invocation could make one without a retention) and the function. The URL and its
    // policy were read above (a function still being created has neither, which reads the
    // same).
    let upserted = tokio::try_join!(
        aws::logs::converge_group(&aws.logs, &name, *log_retention_days as i32, tags.as_ref()),
        lambda::upsert_function(&aws.lambda, &spec, existing),
    );
    if let Some((s3, (_, key))) = &s3_code {
        s3.delete_code(key).await;
    }
    let (logs_changed, (arn, mut changes)) = upserted?;
    changes.concurrency =
        lambda::converge_concurrency(&aws.lambda, &name, *reserved_concurrency).await?;
    // The release: `$LATEST` checked and published (or the version equal to it), then
    // `live` pointed at it, then the URL, which is `live`'s.
    let migrations: Vec<String> = step
        .state
        .resources
        .iter()
        .filter(|(_, rs)| rs.kind == Kind::Migrations)
        .filter_map(|(n, rs)| {
            let last = rs.outputs.get("last")?;
            Some(format!("{n}={}", last.split('_').next().unwrap_or(last)))
        })
        .collect();
    let description = super::version::release_name(step.project_dir, &migrations);
    // Where `live` points is read while the release settles: it needs nothing of it.
    let (settled, live_now) = tokio::join!(
        super::version::settle(
            &aws.lambda,
            &name,
            smoke.as_deref(),
            std::time::Duration::from_secs(*timeout as u64),
            &description,
            &secrets,
        ),
        super::alias::live_version(&aws.lambda, &name),
    );
    let (settled, live_now) = (settled?, live_now?);
    let moved = super::alias::point_from(&aws.lambda, &name, live_now, &settled.version).await?;
    if moved {
        println!(
            "Released  {} version {}{}",
            r.name,
            settled.version,
            if settled.published {
                ""
            } else {
                " (published before)"
            }
        );
    }
    let url =
        aws::url::converge_url(&aws.lambda, &name, live, *url, url_state, &mut changes).await?;
    let moving_url = legacy_url.has_url();
    if let Some(u) = &url
        && (moved || changes.url || moving_url)
    {
        super::alias::check_url(u, smoke.as_deref().unwrap_or("/")).await?;
    }
    // A URL of the function itself (a stage deployed before releases) goes once `live`'s
    // answers.
    if moving_url {
        aws::url::converge_url(&aws.lambda, &name, None, false, legacy_url, &mut changes).await?;
    }
    let pruned = super::version::prune(
        &aws.lambda,
        &name,
        &settled.versions,
        *keep_releases as usize,
        &settled.version,
    )
    .await?;
    if !pruned.is_empty() {
        eprintln!(
            "{}: deleted version {} (keep_releases = {keep_releases})",
            r.name,
            pruned.join(", ")
        );
    }
    let outputs = Outputs {
        name: name.clone(),
        arn,
        url,
        version: Some(settled.version),
    };
    Ok((
        Recorded::typed(
            &Ids {
                function_name: name,
            },
            &outputs,
        ),
        changes.any()
            || role.created
            || role.changed
            || logs_changed
            || moved
            || !pruned.is_empty(),
    ))
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let name = rs.ids_as::<Ids>(step.name)?.function_name;
    let aws = step.aws()?;
    lambda::delete_function(&aws.lambda, &name).await?;
    aws::iam::delete_role(&aws.iam, &name).await?;
    // Logs are data: a stage that retains its data keeps them (with their retention).
    if step.config.policy(step.stage).removal == crate::config::Removal::Remove {
        aws::logs::delete_group(&aws.logs, &name).await?;
    }
    Ok(())
}

/// What `refresh` shows: memory and timeout as Lambda has them, and the URL and its two
/// permissions.
pub async fn read(aws: &Aws, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    let function = rs.ids_as::<Ids>(name)?.function_name;
    let recorded: Inputs = rs.inputs_as(name).unwrap_or_default();
    let conf = match aws
        .lambda
        .get_function_configuration()
        .function_name(&function)
        .send()
        .await
    {
        Ok(conf) => conf,
        Err(e) if is_code(&e, "ResourceNotFoundException") => return Ok(Live::Gone),
        Err(e) => {
            return Err(aws::AwsError::sdk(format!("read function `{function}`"), &e).into());
        }
    };
    let mut changes = Vec::new();
    for (key, recorded, live) in [
        ("memory", recorded.memory, conf.memory_size()),
        ("timeout", recorded.timeout, conf.timeout()),
    ] {
        if let (Some(recorded), Some(live)) = (recorded, live)
            && recorded != i64::from(live)
        {
            changes.push(super::drift(key, recorded, live));
        }
    }
    let reserved = aws
        .lambda
        .get_function_concurrency()
        .function_name(&function)
        .send()
        .await
        .map_err(|e| {
            aws::AwsError::sdk(format!("read the reserved concurrency of `{function}`"), &e)
        })?
        .reserved_concurrent_executions()
        .map(i64::from);
    if reserved != recorded.reserved_concurrency {
        changes.push(super::drift(
            "reserved_concurrency",
            json!(recorded.reserved_concurrency),
            json!(reserved),
        ));
    }
    let qualifier = recorded.url_on.as_deref();
    let url = aws::url::UrlState::read(&aws.lambda, &function, qualifier).await?;
    changes.extend(url.drift(recorded.url.unwrap_or(false)));
    Ok(Live::Found(changes))
}
