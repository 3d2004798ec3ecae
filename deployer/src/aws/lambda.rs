//! The Lambda function and its public URL.
//!
//! Lambda quirks handled here: a new IAM role is not usable for a while ("The role defined
//! for the function cannot be assumed by Lambda"), so creating the function is retried; a
//! function accepts one update at a time (ResourceConflictException while `InProgress`), so
//! each change waits, with the SDK's waiters (`FunctionActiveV2`, `FunctionUpdatedV2`), until
//! the function is Active and its last update Successful.

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

/// Waits with the SDK's waiter; on failure says the state the function is in, and why.
async fn wait(lambda: &Client, name: &str, ready: Ready) -> Result<(), AwsError> {
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
/// `role_is_new`: the role was just created, so "cannot be assumed" is worth retrying.
pub async fn upsert_function(
    lambda: &Client,
    spec: &FunctionSpec,
    role_is_new: bool,
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
            // IAM propagation: the new role is not assumable yet. Only retried for a role
            // this run created.
            |e| {
                if role_is_new && is_code(e, "InvalidParameterValueException") {
                    tracing::info!("IAM role not assumable yet; retrying");
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
                return Box::pin(upsert_function(lambda, spec, false)).await;
            }
            Err(e) => return Err(AwsError::sdk(format!("create function `{name}`"), &e)),
        };
        wait(lambda, name, Ready::Active).await?;
        changes.created = true;
        return Ok((arn, changes));
    };

    wait(lambda, name, Ready::Updated).await?;
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
        || conf.runtime() != Some(&Runtime::Providedal2023);
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
        .map_err(|e| AwsError::sdk(format!("update the configuration of function `{name}`"), &e))?;
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
    changes: &mut Changes,
) -> Result<Option<String>, AwsError> {
    let current = match lambda
        .get_function_url_config()
        .function_name(name)
        .send()
        .await
    {
        Ok(out) => Some((out.function_url().to_owned(), out.auth_type().clone())),
        Err(e) if is_code(&e, "ResourceNotFoundException") => None,
        Err(e) => {
            return Err(AwsError::sdk(
                format!("read the URL of function `{name}`"),
                &e,
            ));
        }
    };
    let sids = policy_sids(lambda, name).await?;
    if !wanted {
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
    if !sids.iter().any(|s| s == URL_PERMISSION_SID) {
        lambda
            .add_permission()
            .function_name(name)
            .statement_id(URL_PERMISSION_SID)
            .action("lambda:InvokeFunctionUrl")
            .principal("*")
            .function_url_auth_type(FunctionUrlAuthType::None)
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("allow public calls to the URL of `{name}`"), &e))?;
        changes.url = true;
    }
    if !sids.iter().any(|s| s == INVOKE_PERMISSION_SID) {
        lambda
            .add_permission()
            .function_name(name)
            .statement_id(INVOKE_PERMISSION_SID)
            .action("lambda:InvokeFunction")
            .principal("*")
            .invoked_via_function_url(true)
            .send()
            .await
            .map_err(|e| {
                AwsError::sdk(format!("allow invocation of `{name}` through its URL"), &e)
            })?;
        changes.url = true;
    }
    Ok(Some(url))
}

/// The statement IDs in the function's resource policy.
async fn policy_sids(lambda: &Client, name: &str) -> Result<Vec<String>, AwsError> {
    #[derive(serde::Deserialize)]
    struct Policy {
        #[serde(rename = "Statement", default)]
        statement: Vec<Statement>,
    }
    #[derive(serde::Deserialize)]
    struct Statement {
        #[serde(rename = "Sid", default)]
        sid: Option<String>,
    }
    match lambda.get_policy().function_name(name).send().await {
        Ok(out) => {
            let policy: Policy =
                serde_json::from_str(out.policy().unwrap_or("{}")).map_err(|e| {
                    AwsError::other(format!("read the policy of `{name}`"), e.to_string())
                })?;
            Ok(policy.statement.into_iter().filter_map(|s| s.sid).collect())
        }
        Err(e) if is_code(&e, "ResourceNotFoundException") => Ok(Vec::new()),
        Err(e) => Err(AwsError::sdk(format!("read the policy of `{name}`"), &e)),
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
