//! The Lambda function: its environment (links and `environment`, checked against Lambda's
//! 4 KB limit before the function is created or changed), its code (built with cargo-lambda
//! off the async threads), its IAM role, the function itself and its public URL.
//!
//! The build and the IAM role need nothing from Neon, and are the slow parts (a release
//! build; IAM propagation), so [`Prepared`] starts both when the run starts: they overlap
//! the Neon steps, and the function step, once its links are known, only waits for what is
//! left of them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use tokio::task::JoinHandle;

use super::records::{FunctionIds, FunctionOutputs};
use super::{Clients, Recorded, Step, StepCause};
use crate::aws::iam::Role;
use crate::aws::{self, lambda};
use crate::build::Artifact;
use crate::config::{Config, Kind, Resource, Spec};
use crate::plan::{Action, Plan, function_environment};
use crate::state::ResourceState;

/// Records every function the plan creates, IDs only, before anything starts: its IAM role
/// and log group may exist before the function step runs (or if it fails), and what the
/// state names, `remove` deletes. The step records it fully.
pub(super) async fn record_before_creating(
    config: &Config,
    stage: &str,
    plan: &Plan,
    recorder: &super::Recorder,
) -> Result<(), Vec<super::StepError>> {
    for change in &plan.changes {
        if change.kind != Kind::Function || change.action != Action::Create {
            continue;
        }
        let placeholder = ResourceState {
            kind: Kind::Function,
            ids: std::collections::BTreeMap::from([(
                "function_name".to_owned(),
                aws::physical_name(&config.app, stage, &change.resource),
            )]),
            inputs: serde_json::Value::Null,
            outputs: std::collections::BTreeMap::new(),
            imported: false,
        };
        recorder
            .record(&change.resource, placeholder)
            .await
            .map_err(|e| {
                vec![super::StepError {
                    verb: "create",
                    resource: change.resource.clone(),
                    kind: change.kind,
                    cause: e.into(),
                }]
            })?;
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
    /// Starts the build and the role of every function the plan creates or deploys.
    pub fn start(
        config: &Config,
        stage: &str,
        project_dir: &Path,
        clients: &Clients,
        plan: &Plan,
    ) -> Prepared {
        let Some(aws) = &clients.aws else {
            return Prepared::default();
        };
        let mut preps = HashMap::new();
        for change in &plan.changes {
            if change.kind != Kind::Function
                || matches!(change.action, Action::Delete | Action::Retain)
            {
                continue;
            }
            let Some(Resource {
                spec: Spec::Function { package, arm64, .. },
                ..
            }) = config.resource(&change.resource)
            else {
                continue;
            };
            let (dir, package, arm64) = (project_dir.to_owned(), package.clone(), *arm64);
            let (iam, name) = (
                aws.iam.clone(),
                aws::physical_name(&config.app, stage, &change.resource),
            );
            let prep = tokio::spawn(async move {
                let build =
                    tokio::task::spawn_blocking(move || crate::build::build(&dir, &package, arm64));
                let role = aws::iam::upsert_role(&iam, &name).await;
                let artifact = build.await??;
                Ok((artifact, role?))
            });
            preps.insert(change.resource.clone(), prep);
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
pub async fn converge(step: &Step<'_>, r: &Resource) -> Result<(Recorded, bool), StepCause> {
    let Spec::Function {
        package,
        links,
        url,
        memory,
        timeout,
        log_retention_days,
        arm64,
        environment,
    } = &r.spec
    else {
        unreachable!("function::converge is called for functions")
    };
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
                let artifact =
                    tokio::task::spawn_blocking(move || crate::build::build(&dir, &pkg, arm))
                        .await??;
                (artifact, aws::iam::upsert_role(&aws.iam, &name).await?)
            }
        };
        Ok::<_, StepCause>((artifact, role, started.elapsed()))
    };
    // The reads need neither the code nor the role, so they overlap with them: a code-only
    // deploy then costs the role's reads, the upload and its wait, not their sum. All three
    // finish, so a failure reported is the same whichever fails first: the build's or the
    // role's before the reads'.
    let (prepared, existing, url_state) = tokio::join!(
        prepared,
        lambda::read_function(&aws.lambda, &name),
        aws::url::UrlState::read(&aws.lambda, &name),
    );
    let (artifact, role, prepared_in) = prepared?;
    let (mut existing, mut url_state) = (existing?, url_state?);
    // After a long build, what was read may be stale (another run, or the console): read
    // again rather than decide on it.
    if prepared_in > STALE_READ {
        (existing, url_state) = tokio::try_join!(
            lambda::read_function(&aws.lambda, &name),
            aws::url::UrlState::read(&aws.lambda, &name),
        )?;
    }
    let spec = lambda::FunctionSpec {
        name: name.clone(),
        role_arn: role.arn.clone(),
        zip: artifact.zip,
        code_sha256: artifact.sha256_base64,
        role_propagating: role.propagating,
        arm64: *arm64,
        memory: *memory as i32,
        timeout: *timeout as i32,
        environment: env.into_iter().collect::<HashMap<_, _>>(),
    };
    // Two independent things at once: the log group (created before the function's first
    // invocation could make one without a retention) and the function. The URL and its
    // policy were read above (a function still being created has neither, which reads the
    // same).
    let (logs_changed, (arn, mut changes)) = tokio::try_join!(
        aws::logs::converge_group(&aws.logs, &name, *log_retention_days as i32),
        lambda::upsert_function(&aws.lambda, &spec, existing),
    )?;
    let url = aws::url::converge_url(&aws.lambda, &name, *url, url_state, &mut changes).await?;
    let outputs = FunctionOutputs {
        name: name.clone(),
        arn,
        url,
    };
    Ok((
        Recorded::typed(
            &FunctionIds {
                function_name: name,
            },
            &outputs,
        ),
        changes.any() || role.created || logs_changed,
    ))
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let name = rs.id(step.name, "function_name")?;
    let aws = step.aws()?;
    lambda::delete_function(&aws.lambda, name).await?;
    aws::iam::delete_role(&aws.iam, name).await?;
    // Logs are data: a stage that retains its data keeps them (with their retention).
    if step.config.policy(step.stage).removal == crate::config::Removal::Remove {
        aws::logs::delete_group(&aws.logs, name).await?;
    }
    Ok(())
}
