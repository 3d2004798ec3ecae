//! The Lambda function: created, updated only where it differs, each change waited for.
//!
//! Lambda quirks handled here, as documented in "Lambda function states"
//! (<https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html>):
//! - a new IAM role is not usable for a while ("The role defined for the function cannot be
//!   assumed by Lambda"), so creating the function is retried on that message only, and only
//!   for a role young enough to be propagating;
//! - a new function is `Pending`, and an update leaves `LastUpdateStatus` `InProgress`; while
//!   either lasts, other changes answer 409 ResourceConflictException. Each change waits, with
//!   the SDK's waiters (`FunctionActiveV2`, `FunctionUpdatedV2`), bounded;
//! - a function whose creation failed is `Failed` and takes no change: it is deleted and
//!   created again ("you must delete and recreate the function");
//! - an idle function is `Inactive` and still accepts updates; a function whose last update
//!   `Failed` accepts the update that fixes it (its configuration is sent again);
//! - Lambda's error for an oversized environment echoes the environment ("String
//!   measured: {...}"): such text is withheld from what we print.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime};

use super::{AwsError, is_code};
use crate::retry::{self, Policy, Verdict};

/// How long one wait for the function's state may take.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// What the function should be.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub role_arn: String,
    pub zip: Vec<u8>,
    /// Base64 SHA-256 of the zip, as Lambda reports `CodeSha256`.
    pub code_sha256: String,
    /// The role may still be propagating: "cannot be assumed" is worth waiting out.
    pub role_propagating: bool,
    pub arm64: bool,
    pub memory: i32,
    pub timeout: i32,
    pub environment: HashMap<String, String>,
    /// Where the code was uploaded for Lambda to fetch (bucket, key), when it is over the
    /// direct-upload limit; `zip` is uploaded with the call otherwise.
    pub s3_code: Option<(String, String)>,
    /// `[app] tags`; `None`: the function's tags are left as they are.
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

/// What changed, for the output line.
#[derive(Debug, Default)]
pub struct Changes {
    pub created: bool,
    pub configuration: bool,
    pub code: bool,
    pub url: bool,
    pub concurrency: bool,
    pub tags: bool,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.created || self.configuration || self.code || self.url || self.concurrency || self.tags
    }
}

fn architecture(arm64: bool) -> Architecture {
    if arm64 {
        Architecture::Arm64
    } else {
        Architecture::X8664
    }
}

/// Which state a wait is for.
#[derive(Debug, Clone, Copy)]
enum Ready {
    /// A new function: `State` Active.
    Active,
    /// After an update: `LastUpdateStatus` Successful.
    Updated,
}

/// How long [`wait`] polls on its own before handing over to the SDK's waiter, and how
/// often: every 100 ms for the first 3 s, then every 250 ms.
const QUICK_PHASE: Duration = Duration::from_secs(6);
const FAST_PHASE: Duration = Duration::from_secs(3);
const FAST_POLL: Duration = Duration::from_millis(100);
const QUICK_POLL: Duration = Duration::from_millis(250);

/// Waits until the function is `ready`. Lambda's transitions usually take a second or two;
/// the SDK's waiters poll no sooner than every second, growing, which would add about as
/// much again to each wait of a deploy (a code-only deploy is little more than this wait).
/// So the first seconds are polled here, every 100 ms then 250 ms (GetFunction, as the
/// SDK's V2 waiters use: its quota is 100 requests a second per Region, so one wait uses
/// at most a tenth of it, where GetFunctionConfiguration shares the control plane's 15);
/// anything longer, or anything that is not plain progress, is left to the SDK's waiter,
/// bounded, whose acceptors decide success and failure. On failure: the state the
/// function is in, and why.
async fn wait(lambda: &Client, name: &str, ready: Ready) -> Result<(), AwsError> {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    let started = std::time::Instant::now();
    while started.elapsed() < QUICK_PHASE {
        let Ok(function) = lambda.get_function().function_name(name).send().await else {
            break;
        };
        let Some(conf) = function.configuration() else {
            break;
        };
        let (done, progressing) = match ready {
            Ready::Active => (
                conf.state() == Some(&State::Active),
                conf.state() == Some(&State::Pending),
            ),
            Ready::Updated => (
                conf.last_update_status() == Some(&LastUpdateStatus::Successful),
                conf.last_update_status() == Some(&LastUpdateStatus::InProgress),
            ),
        };
        if done {
            return Ok(());
        }
        if conf.state() == Some(&State::Failed) {
            return Err(creation_failed(name, conf));
        }
        if !progressing {
            break;
        }
        let poll = if started.elapsed() < FAST_PHASE {
            FAST_POLL
        } else {
            QUICK_POLL
        };
        tokio::time::sleep(poll).await;
    }
    let result = match ready {
        Ready::Active => lambda
            .wait_until_function_active_v2()
            .function_name(name)
            .wait(MAX_WAIT)
            .await
            .map(drop)
            .map_err(|e| DisplayErrorContext(e).to_string()),
        Ready::Updated => lambda
            .wait_until_function_updated_v2()
            .function_name(name)
            .wait(MAX_WAIT)
            .await
            .map(drop)
            .map_err(|e| DisplayErrorContext(e).to_string()),
    };
    let Err(waiter) = result else {
        return Ok(());
    };
    let action = match ready {
        Ready::Active => format!("wait for function `{name}` to become Active"),
        Ready::Updated => format!("wait for the update of function `{name}` to finish"),
    };
    // Name the state and Lambda's reason, which the waiter's error does not carry.
    let detail = match lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
    {
        Ok(conf) if conf.state() == Some(&State::Failed) => {
            return Err(creation_failed(name, &conf));
        }
        Ok(conf) => format!(
            "state {}, last update {}: {} (waiter: {waiter})",
            conf.state().map_or("unknown", |s| s.as_str()),
            conf.last_update_status().map_or("unknown", |s| s.as_str()),
            conf.state_reason()
                .or(conf.last_update_status_reason())
                .unwrap_or("no reason given"),
        ),
        Err(_) => waiter,
    };
    Err(AwsError::other(action, detail))
}

/// A function whose creation failed (`State` Failed): Lambda's reason, and what to do.
/// Lambda takes no change to such a function: "you must delete and recreate the function"
/// (Lambda guide, "Lambda function states"), which the next deploy does.
fn creation_failed(name: &str, conf: &impl FunctionState) -> AwsError {
    AwsError::other(
        format!("create function `{name}`: Lambda could not set it up (State Failed)"),
        format!(
            "{} ({})",
            conf.reason().unwrap_or("no reason given"),
            conf.reason_code().unwrap_or("no reason code"),
        ),
    )
    .advise(
        "fix what Lambda's reason names (the role, its permissions, a subnet or file system), then deploy again: the next deploy deletes the failed function and creates it again",
    )
}

/// The state fields GetFunction and GetFunctionConfiguration share.
trait FunctionState {
    fn reason(&self) -> Option<&str>;
    fn reason_code(&self) -> Option<&str>;
}

impl FunctionState for aws_sdk_lambda::types::FunctionConfiguration {
    fn reason(&self) -> Option<&str> {
        self.state_reason()
    }
    fn reason_code(&self) -> Option<&str> {
        self.state_reason_code().map(|c| c.as_str())
    }
}

impl FunctionState for Configuration {
    fn reason(&self) -> Option<&str> {
        self.state_reason()
    }
    fn reason_code(&self) -> Option<&str> {
        self.state_reason_code().map(|c| c.as_str())
    }
}

/// What Lambda says when the execution role has not propagated yet (CreateFunction, 400
/// InvalidParameterValueException). Any other invalid parameter is final.
const ROLE_NOT_ASSUMABLE: &str = "cannot be assumed by Lambda";

/// Waits until the function takes a change: not `Pending`, no update `InProgress`. An
/// `Inactive` function, or one whose last update `Failed`, takes changes as it is.
async fn settle(lambda: &Client, name: &str, conf: &Configuration) -> Result<(), AwsError> {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    if conf.state() == Some(&State::Pending) {
        return wait(lambda, name, Ready::Active).await;
    }
    if conf.last_update_status() == Some(&LastUpdateStatus::InProgress) {
        // Someone else's update: whether it ends Successful or Failed, ours comes next.
        if let Err(e) = wait(lambda, name, Ready::Updated).await {
            let now = lambda
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("read function `{name}`"), &e))?;
            if now.last_update_status() != Some(&LastUpdateStatus::Failed) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// An AWS error with the function's environment values withheld: Lambda echoes the
/// environment in some errors, and it holds connection strings.
fn redacted(mut e: AwsError, environment: &HashMap<String, String>) -> AwsError {
    const MEASURED: &str = "String measured:";
    let mut link = Some(&mut e.detail);
    while let Some(detail) = link {
        let text = &mut detail.0;
        if let Some(at) = text.find(MEASURED) {
            text.truncate(at + MEASURED.len());
            text.push_str(" (the environment, withheld: it holds secrets)");
        }
        for value in environment.values().filter(|v| v.len() >= 4) {
            let escaped = serde_json::to_string(value).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            *text = text.replace(value.as_str(), "***").replace(escaped, "***");
        }
        link = detail.1.as_deref_mut();
    }
    e
}

fn conflict<E, R>(e: &aws_sdk_lambda::error::SdkError<E, R>) -> Verdict
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata,
{
    if is_code(e, "ResourceConflictException") {
        Verdict::Retry
    } else {
        Verdict::Stop
    }
}

/// Creates the function or brings it to `spec`, changing only what differs.
/// The function's configuration as Lambda has it, or `None` if there is no such function.
pub async fn read_function(lambda: &Client, name: &str) -> Result<Option<Configuration>, AwsError> {
    match lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
    {
        Ok(conf) => Ok(Some(conf)),
        Err(e) if is_code(&e, "ResourceNotFoundException") => Ok(None),
        Err(e) => Err(AwsError::sdk(format!("read function `{name}`"), &e)),
    }
}

/// What [`read_function`] finds.
pub type Configuration =
    aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;

/// Creates the function, or brings `existing` (what [`read_function`] found) to `spec`.
pub async fn upsert_function(
    lambda: &Client,
    spec: &FunctionSpec,
    existing: Option<Configuration>,
) -> Result<(String, Changes), AwsError> {
    let name = &spec.name;
    let mut changes = Changes::default();
    let environment = Environment::builder()
        .set_variables(Some(spec.environment.clone()))
        .build();

    let Some(conf) = existing else {
        let created = retry::retry(
            Policy::IAM_PROPAGATION,
            || {
                lambda
                    .create_function()
                    .function_name(name)
                    .runtime(Runtime::Providedal2023)
                    .handler("bootstrap")
                    .role(&spec.role_arn)
                    .architectures(architecture(spec.arm64))
                    .memory_size(spec.memory)
                    .timeout(spec.timeout)
                    .environment(environment.clone())
                    .set_tags(
                        spec.tags
                            .as_ref()
                            .filter(|t| !t.is_empty())
                            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                    )
                    .code(match &spec.s3_code {
                        Some((bucket, key)) => FunctionCode::builder()
                            .s3_bucket(bucket)
                            .s3_key(key)
                            .build(),
                        None => FunctionCode::builder()
                            .zip_file(Blob::new(spec.zip.clone()))
                            .build(),
                    })
                    .send()
            },
            // IAM propagation: the role is not assumable yet. Only that message, and only
            // for a young role; a bad zip or environment fails at once.
            |e| {
                let not_assumable = is_code(e, "InvalidParameterValueException")
                    && e.as_service_error()
                        .and_then(|s| aws_sdk_lambda::error::ProvideErrorMetadata::message(s))
                        .is_some_and(|m| m.contains(ROLE_NOT_ASSUMABLE));
                if spec.role_propagating && not_assumable {
                    tracing::info!("IAM role not assumable by Lambda yet; retrying");
                    Verdict::Retry
                } else {
                    Verdict::Stop
                }
            },
        )
        .await;
        let arn = match created {
            Ok(out) => out.function_arn().unwrap_or_default().to_owned(),
            // Created by an earlier, interrupted attempt: converge on it.
            Err(e) if is_code(&e, "ResourceConflictException") => {
                let existing = read_function(lambda, name).await?;
                return Box::pin(upsert_function(lambda, spec, existing)).await;
            }
            Err(e) => {
                return Err(redacted(
                    AwsError::sdk(format!("create function `{name}`"), &e),
                    &spec.environment,
                ));
            }
        };
        wait(lambda, name, Ready::Active).await?;
        changes.created = true;
        return Ok((arn, changes));
    };

    if conf.state() == Some(&aws_sdk_lambda::types::State::Failed) {
        // Its creation failed: Lambda takes no change to it, so it is made again. It never
        // served (nor had a URL), so nothing is lost.
        eprintln!(
            "note: function `{name}` failed when it was created ({}); deleting it to create it again",
            conf.state_reason().unwrap_or("no reason given")
        );
        // DeleteFunction alone: the only call Lambda takes on it (it never got a URL).
        match lambda.delete_function().function_name(name).send().await {
            Ok(_) => {}
            Err(e) if is_code(&e, "ResourceNotFoundException") => {}
            Err(e) => {
                return Err(AwsError::sdk(
                    format!("delete failed function `{name}`"),
                    &e,
                ));
            }
        }
        return Box::pin(upsert_function(lambda, spec, None)).await;
    }
    settle(lambda, name, &conf).await?;
    // A failed last update is retried by sending the configuration again.
    let last_failed =
        conf.last_update_status() == Some(&aws_sdk_lambda::types::LastUpdateStatus::Failed);
    let current_env = conf
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let config_differs = current_env != spec.environment
        || conf.memory_size() != Some(spec.memory)
        || conf.timeout() != Some(spec.timeout)
        || conf.role() != Some(spec.role_arn.as_str())
        || conf.handler() != Some("bootstrap")
        || conf.runtime() != Some(&Runtime::Providedal2023)
        || last_failed;
    if config_differs {
        retry::retry(
            Policy::LAMBDA_CONFLICT,
            || {
                lambda
                    .update_function_configuration()
                    .function_name(name)
                    .role(&spec.role_arn)
                    .handler("bootstrap")
                    .runtime(Runtime::Providedal2023)
                    .memory_size(spec.memory)
                    .timeout(spec.timeout)
                    .environment(environment.clone())
                    .send()
            },
            conflict,
        )
        .await
        .map_err(|e| {
            redacted(
                AwsError::sdk(format!("update the configuration of function `{name}`"), &e),
                &spec.environment,
            )
        })?;
        wait(lambda, name, Ready::Updated).await?;
        changes.configuration = true;
    }
    let arch_differs = !conf.architectures().contains(&architecture(spec.arm64));
    if conf.code_sha256() != Some(spec.code_sha256.as_str()) || arch_differs {
        retry::retry(
            Policy::LAMBDA_CONFLICT,
            || {
                let update = lambda
                    .update_function_code()
                    .function_name(name)
                    .architectures(architecture(spec.arm64));
                match &spec.s3_code {
                    Some((bucket, key)) => update.s3_bucket(bucket).s3_key(key),
                    None => update.zip_file(Blob::new(spec.zip.clone())),
                }
                .send()
            },
            conflict,
        )
        .await
        .map_err(|e| AwsError::sdk(format!("update the code of function `{name}`"), &e))?;
        wait(lambda, name, Ready::Updated).await?;
        changes.code = true;
    }
    let arn = conf.function_arn().unwrap_or_default().to_owned();
    if let Some(wanted) = &spec.tags {
        changes.tags = converge_tags(lambda, &arn, wanted).await?;
    }
    Ok((arn, changes))
}

/// Brings the function's tags to `wanted` (AWS's own `aws:` tags aside); true if changed.
async fn converge_tags(
    lambda: &Client,
    arn: &str,
    wanted: &std::collections::BTreeMap<String, String>,
) -> Result<bool, AwsError> {
    let current: std::collections::BTreeMap<String, String> = lambda
        .list_tags()
        .resource(arn)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("read the tags of `{arn}`"), &e))?
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let (set, unset) = super::iam::tag_changes(&current, wanted);
    let changed = !set.is_empty() || !unset.is_empty();
    if !set.is_empty() {
        lambda
            .tag_resource()
            .resource(arn)
            .set_tags(Some(set.into_iter().collect()))
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("tag `{arn}`"), &e))?;
    }
    if !unset.is_empty() {
        lambda
            .untag_resource()
            .resource(arn)
            .set_tag_keys(Some(unset.clone()))
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("untag `{arn}`"), &e))?;
    }
    Ok(changed)
}

/// Sets the function's reserved concurrency to `wanted` (`None`: none reserved, the
/// account's unreserved pool); true if it changed. A public URL with no cap lets anyone use
/// the account's whole concurrency, and as many Neon connections.
pub async fn converge_concurrency(
    lambda: &Client,
    name: &str,
    wanted: Option<i64>,
) -> Result<bool, AwsError> {
    let current = lambda
        .get_function_concurrency()
        .function_name(name)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("read the reserved concurrency of `{name}`"), &e))?
        .reserved_concurrent_executions()
        .map(i64::from);
    if current == wanted {
        return Ok(false);
    }
    match wanted {
        Some(n) => {
            retry::retry(
                Policy::LAMBDA_CONFLICT,
                || {
                    lambda
                        .put_function_concurrency()
                        .function_name(name)
                        .reserved_concurrent_executions(n as i32)
                        .send()
                },
                conflict,
            )
            .await
            .map_err(|e| {
                AwsError::sdk(
                    format!("reserve {n} concurrent executions for `{name}`"),
                    &e,
                )
            })?;
        }
        None => {
            retry::retry(
                Policy::LAMBDA_CONFLICT,
                || {
                    lambda
                        .delete_function_concurrency()
                        .function_name(name)
                        .send()
                },
                conflict,
            )
            .await
            .map_err(|e| {
                AwsError::sdk(format!("remove the reserved concurrency of `{name}`"), &e)
            })?;
        }
    }
    Ok(true)
}

/// Deletes the function (and with it its URL and permissions); one already gone is fine.
pub async fn delete_function(lambda: &Client, name: &str) -> Result<(), AwsError> {
    match lambda
        .delete_function_url_config()
        .function_name(name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if is_code(&e, "ResourceNotFoundException") => {}
        Err(e) => return Err(AwsError::sdk(format!("delete the URL of `{name}`"), &e)),
    }
    match lambda.delete_function().function_name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, "ResourceNotFoundException") => Ok(()),
        Err(e) => Err(AwsError::sdk(format!("delete function `{name}`"), &e)),
    }
}
