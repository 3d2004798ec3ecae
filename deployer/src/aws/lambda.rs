//! The Lambda function and its public URL.
//!
//! Lambda quirks handled here, as documented in "Lambda function states"
//! (<https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html>):
//! - a new IAM role is not usable for a while ("The role defined for the function cannot be
//!   assumed by Lambda"), so creating the function is retried on that message only, and only
//!   for a role young enough to be propagating;
//! - a new function is `Pending`, and an update leaves `LastUpdateStatus` `InProgress`; while
//!   either lasts, other changes answer 409 ResourceConflictException. Each change waits, with
//!   the SDK's waiters (`FunctionActiveV2`, `FunctionUpdatedV2`), bounded;
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
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionUrlAuthType, Runtime,
};

use super::{AwsError, is_code};
use crate::retry::{self, Policy, Verdict};

/// Statement IDs of the two public-access permissions a NONE-auth URL needs (since October
/// 2025 AWS requires both), named as the console names them.
pub const URL_PERMISSION_SID: &str = "FunctionURLAllowPublicAccess";
pub const INVOKE_PERMISSION_SID: &str = "FunctionURLInvokeAllowPublicAccess";

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
}

/// What changed, for the output line.
#[derive(Debug, Default)]
pub struct Changes {
    pub created: bool,
    pub configuration: bool,
    pub code: bool,
    pub url: bool,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.created || self.configuration || self.code || self.url
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

/// How long [`wait`] polls on its own before handing over to the SDK's waiter.
const QUICK_PHASE: Duration = Duration::from_secs(6);
const QUICK_POLL: Duration = Duration::from_millis(200);

/// Waits until the function is `ready`. Lambda's transitions usually take a second or two;
/// the SDK's waiters poll no sooner than every second, growing, which would add about as
/// much again to each wait of a deploy. So the first seconds are polled here, every 250 ms
/// (GetFunction, as the SDK's V2 waiters use: its quota is 100 requests a second, where
/// GetFunctionConfiguration shares the control plane's 15); anything longer, or
/// anything that is not plain progress, is left to the SDK's waiter, bounded, whose
/// acceptors decide success and failure. On failure: the state the function is in, and why.
async fn wait(lambda: &Client, name: &str, ready: Ready) -> Result<(), AwsError> {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    let quick_until = std::time::Instant::now() + QUICK_PHASE;
    while std::time::Instant::now() < quick_until {
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
        if !progressing {
            break;
        }
        tokio::time::sleep(QUICK_POLL).await;
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

/// What Lambda says when the execution role has not propagated yet (CreateFunction, 400
/// InvalidParameterValueException). Any other invalid parameter is final.
const ROLE_NOT_ASSUMABLE: &str = "cannot be assumed by Lambda";

/// Waits until the function takes a change: not `Pending`, no update `InProgress`. An
/// `Inactive` function, or one whose last update `Failed`, takes changes as it is.
async fn settle(
    lambda: &Client,
    name: &str,
    conf: &aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput,
) -> Result<(), AwsError> {
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
    if let Some(at) = e.detail.0.find(MEASURED) {
        e.detail.0.truncate(at + MEASURED.len());
        e.detail
            .0
            .push_str(" (the environment, withheld: it holds secrets)");
    }
    for value in environment.values().filter(|v| v.len() >= 4) {
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        e.detail.0 = e
            .detail
            .0
            .replace(value.as_str(), "***")
            .replace(escaped, "***");
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
pub async fn upsert_function(
    lambda: &Client,
    spec: &FunctionSpec,
) -> Result<(String, Changes), AwsError> {
    let name = &spec.name;
    let mut changes = Changes::default();
    let existing = match lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
    {
        Ok(conf) => Some(conf),
        Err(e) if is_code(&e, "ResourceNotFoundException") => None,
        Err(e) => return Err(AwsError::sdk(format!("read function `{name}`"), &e)),
    };
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
                    .code(
                        FunctionCode::builder()
                            .zip_file(Blob::new(spec.zip.clone()))
                            .build(),
                    )
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
                return Box::pin(upsert_function(lambda, spec)).await;
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
                lambda
                    .update_function_code()
                    .function_name(name)
                    .architectures(architecture(spec.arm64))
                    .zip_file(Blob::new(spec.zip.clone()))
                    .send()
            },
            conflict,
        )
        .await
        .map_err(|e| AwsError::sdk(format!("update the code of function `{name}`"), &e))?;
        wait(lambda, name, Ready::Updated).await?;
        changes.code = true;
    }
    Ok((conf.function_arn().unwrap_or_default().to_owned(), changes))
}

/// Makes the function's URL public (auth NONE, both permissions) and returns it; or, with
/// `wanted = false`, removes URL and permissions. Only missing pieces are added.
pub async fn converge_url(
    lambda: &Client,
    name: &str,
    wanted: bool,
    found: UrlState,
    changes: &mut Changes,
) -> Result<Option<String>, AwsError> {
    let UrlState { current, policy } = found;
    if !wanted {
        let sids = policy.sids;
        if current.is_some() {
            lambda
                .delete_function_url_config()
                .function_name(name)
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("delete the URL of function `{name}`"), &e))?;
            changes.url = true;
        }
        for sid in [URL_PERMISSION_SID, INVOKE_PERMISSION_SID] {
            if sids.iter().any(|s| s == sid) {
                lambda
                    .remove_permission()
                    .function_name(name)
                    .statement_id(sid)
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::sdk(format!("remove permission `{sid}` of `{name}`"), &e)
                    })?;
                changes.url = true;
            }
        }
        return Ok(None);
    }
    let url = match current {
        Some((url, FunctionUrlAuthType::None)) => url,
        Some(_) => {
            let out = lambda
                .update_function_url_config()
                .function_name(name)
                .auth_type(FunctionUrlAuthType::None)
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("make the URL of `{name}` public"), &e))?;
            changes.url = true;
            out.function_url().to_owned()
        }
        None => {
            let out = lambda
                .create_function_url_config()
                .function_name(name)
                .auth_type(FunctionUrlAuthType::None)
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("create the URL of `{name}`"), &e))?;
            changes.url = true;
            out.function_url().to_owned()
        }
    };
    for (sid, present) in [
        (URL_PERMISSION_SID, policy.public_url),
        (INVOKE_PERMISSION_SID, policy.invoke_via_url),
    ] {
        if present {
            continue;
        }
        // Our statement ID with the wrong content (an old URL, a hand edit): replace it.
        if policy.sids.iter().any(|s| s == sid) {
            lambda
                .remove_permission()
                .function_name(name)
                .statement_id(sid)
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("remove permission `{sid}` of `{name}`"), &e))?;
        }
        let add = lambda
            .add_permission()
            .function_name(name)
            .statement_id(sid)
            .principal("*");
        let add = if sid == URL_PERMISSION_SID {
            add.action("lambda:InvokeFunctionUrl")
                .function_url_auth_type(FunctionUrlAuthType::None)
        } else {
            add.action("lambda:InvokeFunction")
                .invoked_via_function_url(true)
        };
        add.send().await.map_err(|e| {
            AwsError::sdk(
                format!("allow public calls to `{name}` through its URL ({sid})"),
                &e,
            )
        })?;
        changes.url = true;
    }
    Ok(Some(url))
}

/// The function's URL and resource policy as found, read before [`converge_url`] (and
/// alongside the function's own changes: reads need no wait).
#[derive(Debug)]
pub struct UrlState {
    current: Option<(String, FunctionUrlAuthType)>,
    policy: UrlPolicy,
}

impl UrlState {
    /// Reads both; a function that does not exist yet has neither.
    pub async fn read(lambda: &Client, name: &str) -> Result<UrlState, AwsError> {
        let url = async {
            match lambda
                .get_function_url_config()
                .function_name(name)
                .send()
                .await
            {
                Ok(out) => Ok(Some((
                    out.function_url().to_owned(),
                    out.auth_type().clone(),
                ))),
                Err(e) if is_code(&e, "ResourceNotFoundException") => Ok(None),
                Err(e) => Err(AwsError::sdk(
                    format!("read the URL of function `{name}`"),
                    &e,
                )),
            }
        };
        let (current, policy) = tokio::try_join!(url, UrlPolicy::read(lambda, name))?;
        Ok(UrlState { current, policy })
    }
}

/// What the function's resource policy grants a public URL. Since October 2025 a NONE-auth
/// URL needs two statements ("Control access to function URLs", Lambda developer guide):
/// `lambda:InvokeFunctionUrl` conditioned on `lambda:FunctionUrlAuthType` = NONE, and
/// `lambda:InvokeFunction` conditioned on `lambda:InvokedViaFunctionUrl` = true, both for
/// principal `*`. URLs created before then may lack the second; AWS ends that exception on
/// 1 November 2026, so a deploy repairs such URLs.
#[derive(Debug, Default, PartialEq, Eq)]
struct UrlPolicy {
    public_url: bool,
    invoke_via_url: bool,
    sids: Vec<String>,
}

impl UrlPolicy {
    async fn read(lambda: &Client, name: &str) -> Result<UrlPolicy, AwsError> {
        match lambda.get_policy().function_name(name).send().await {
            Ok(out) => UrlPolicy::parse(out.policy().unwrap_or("{}")).map_err(|e| {
                AwsError::other(format!("read the policy of `{name}`"), e.to_string())
            }),
            Err(e) if is_code(&e, "ResourceNotFoundException") => Ok(UrlPolicy::default()),
            Err(e) => Err(AwsError::sdk(format!("read the policy of `{name}`"), &e)),
        }
    }

    /// From the policy document GetPolicy returns (IAM policy grammar: `Action` and
    /// `Principal` may be a string or a list/map; condition values are strings).
    fn parse(document: &str) -> Result<UrlPolicy, serde_json::Error> {
        use serde_json::Value;
        let policy: Value = serde_json::from_str(document)?;
        let mut out = UrlPolicy::default();
        let empty = Vec::new();
        for s in policy["Statement"].as_array().unwrap_or(&empty) {
            if let Some(sid) = s["Sid"].as_str() {
                out.sids.push(sid.to_owned());
            }
            let allows = s["Effect"].as_str().is_none_or(|e| e == "Allow");
            let public = match &s["Principal"] {
                Value::String(p) => p == "*",
                Value::Object(m) => m.get("AWS").and_then(Value::as_str) == Some("*"),
                _ => false,
            };
            let has_action = |wanted: &str| match &s["Action"] {
                Value::String(a) => a == wanted,
                Value::Array(a) => a.iter().any(|a| a.as_str() == Some(wanted)),
                _ => false,
            };
            let condition = |operator: &str, key: &str| -> Option<String> {
                match &s["Condition"][operator][key] {
                    Value::String(v) => Some(v.to_ascii_lowercase()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                }
            };
            if !(allows && public) {
                continue;
            }
            if has_action("lambda:InvokeFunctionUrl")
                && condition("StringEquals", "lambda:FunctionUrlAuthType").as_deref()
                    == Some("none")
            {
                out.public_url = true;
            }
            if has_action("lambda:InvokeFunction")
                && condition("Bool", "lambda:InvokedViaFunctionUrl").as_deref() == Some("true")
            {
                out.invoke_via_url = true;
            }
        }
        Ok(out)
    }
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

#[cfg(test)]
mod tests {
    use super::UrlPolicy;

    fn policy(fixture: &str) -> UrlPolicy {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/policy")
            .join(fixture);
        UrlPolicy::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn a_public_url_needs_both_statements_with_their_conditions() {
        let both = policy("both.json");
        assert!(both.public_url && both.invoke_via_url);
        let old = policy("before-october-2025.json");
        assert!(old.public_url && !old.invoke_via_url);
        let wrong = policy("wrong-condition.json");
        assert!(!wrong.public_url && !wrong.invoke_via_url);
        assert_eq!(
            wrong.sids.len(),
            2,
            "the wrong statements are replaced by id"
        );
    }
}
