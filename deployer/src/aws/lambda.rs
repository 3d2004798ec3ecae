//! The Lambda function and its public URL.
//!
//! Lambda quirks handled here: a new IAM role is not usable for a while ("The role defined
//! for the function cannot be assumed by Lambda"), so creating the function is retried; a
//! function accepts one update at a time (ResourceConflictException while `InProgress`), so
//! each change waits until the function is Active and its last update Successful.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionUrlAuthType, LastUpdateStatus, Runtime, State,
};

use super::describe;

/// Statement IDs of the two public-access permissions a NONE-auth URL needs (since October
/// 2025 AWS requires both), named as the console names them.
pub const URL_PERMISSION_SID: &str = "FunctionURLAllowPublicAccess";
pub const INVOKE_PERMISSION_SID: &str = "FunctionURLInvokeAllowPublicAccess";

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

/// Waits until the function is Active and not being updated.
async fn wait_ready(lambda: &Client, name: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let conf = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| format!("cannot read function `{name}`: {}", describe(&e)))?;
        let state = conf.state().cloned().unwrap_or(State::Active);
        let update = conf
            .last_update_status()
            .cloned()
            .unwrap_or(LastUpdateStatus::Successful);
        match (&state, &update) {
            (State::Failed, _) => {
                return Err(format!(
                    "function `{name}` failed: {}",
                    conf.state_reason().unwrap_or("no reason given")
                ));
            }
            (_, LastUpdateStatus::Failed) => {
                return Err(format!(
                    "the last update of function `{name}` failed: {}",
                    conf.last_update_status_reason()
                        .unwrap_or("no reason given")
                ));
            }
            (State::Active, LastUpdateStatus::Successful) => return Ok(()),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "function `{name}` did not become ready within 5 minutes"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the function or brings it to `spec`, changing only what differs.
/// `role_is_new`: the role was just created, so "cannot be assumed" is worth retrying.
pub async fn upsert_function(
    lambda: &Client,
    spec: &FunctionSpec,
    role_is_new: bool,
) -> Result<(String, Changes), String> {
    let name = &spec.name;
    let mut changes = Changes::default();
    let existing = match lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
    {
        Ok(conf) => Some(conf),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => return Err(format!("cannot read function `{name}`: {}", describe(&e))),
    };
    let environment = Environment::builder()
        .set_variables(Some(spec.environment.clone()))
        .build();

    let Some(conf) = existing else {
        let started = Instant::now();
        let mut delay = Duration::from_secs(1);
        let arn = loop {
            let result = lambda
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
                .await;
            match result {
                Ok(out) => break out.function_arn().unwrap_or_default().to_owned(),
                // IAM propagation: the new role is not assumable yet. Only retried for a
                // role this run created, and for at most three minutes.
                Err(e)
                    if role_is_new
                        && e.as_service_error()
                            .is_some_and(|s| s.is_invalid_parameter_value_exception())
                        && started.elapsed() < Duration::from_secs(180) =>
                {
                    tracing::info!("IAM role not assumable yet; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_conflict_exception()) =>
                {
                    // Created by an earlier, interrupted attempt: converge on it below.
                    return Box::pin(upsert_function(lambda, spec, false)).await;
                }
                Err(e) => return Err(format!("cannot create function `{name}`: {}", describe(&e))),
            }
        };
        wait_ready(lambda, name).await?;
        changes.created = true;
        return Ok((arn, changes));
    };

    wait_ready(lambda, name).await?;
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
        retry_conflicts(|| async {
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
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        e.as_service_error()
                            .is_some_and(|s| s.is_resource_conflict_exception()),
                        describe(&e),
                    )
                })
        })
        .await
        .map_err(|e| format!("cannot update the configuration of function `{name}`: {e}"))?;
        wait_ready(lambda, name).await?;
        changes.configuration = true;
    }
    let arch_differs = !conf.architectures().contains(&architecture(spec.arm64));
    if conf.code_sha256() != Some(spec.code_sha256.as_str()) || arch_differs {
        retry_conflicts(|| async {
            lambda
                .update_function_code()
                .function_name(name)
                .architectures(architecture(spec.arm64))
                .zip_file(Blob::new(spec.zip.clone()))
                .send()
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        e.as_service_error()
                            .is_some_and(|s| s.is_resource_conflict_exception()),
                        describe(&e),
                    )
                })
        })
        .await
        .map_err(|e| format!("cannot update the code of function `{name}`: {e}"))?;
        wait_ready(lambda, name).await?;
        changes.code = true;
    }
    Ok((conf.function_arn().unwrap_or_default().to_owned(), changes))
}

async fn retry_conflicts<F, Fut>(mut call: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), (bool, String)>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(()) => return Ok(()),
            Err((true, _)) if attempt < 20 => {
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await
            }
            Err((_, message)) => return Err(message),
        }
    }
}

/// Makes the function's URL public (auth NONE, both permissions) and returns it; or, with
/// `wanted = false`, removes URL and permissions. Only missing pieces are added.
pub async fn converge_url(
    lambda: &Client,
    name: &str,
    wanted: bool,
    changes: &mut Changes,
) -> Result<Option<String>, String> {
    let current = match lambda
        .get_function_url_config()
        .function_name(name)
        .send()
        .await
    {
        Ok(out) => Some((out.function_url().to_owned(), out.auth_type().clone())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => {
            return Err(format!(
                "cannot read the URL of function `{name}`: {}",
                describe(&e)
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
                .map_err(|e| {
                    format!(
                        "cannot delete the URL of function `{name}`: {}",
                        describe(&e)
                    )
                })?;
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
                        format!(
                            "cannot remove permission `{sid}` of `{name}`: {}",
                            describe(&e)
                        )
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
                .map_err(|e| format!("cannot make the URL of `{name}` public: {}", describe(&e)))?;
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
                .map_err(|e| format!("cannot create the URL of `{name}`: {}", describe(&e)))?;
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
            .map_err(|e| {
                format!(
                    "cannot allow public calls of `{name}`'s URL: {}",
                    describe(&e)
                )
            })?;
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
                format!(
                    "cannot allow invocations of `{name}` through its URL: {}",
                    describe(&e)
                )
            })?;
        changes.url = true;
    }
    Ok(Some(url))
}

async fn policy_sids(lambda: &Client, name: &str) -> Result<Vec<String>, String> {
    match lambda.get_policy().function_name(name).send().await {
        Ok(out) => {
            let policy: serde_json::Value =
                serde_json::from_str(out.policy().unwrap_or("{}")).unwrap_or_default();
            Ok(policy["Statement"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|st| st["Sid"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default())
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(format!(
            "cannot read the policy of `{name}`: {}",
            describe(&e)
        )),
    }
}

/// Deletes the function (and with it its URL and permissions); one already gone is fine.
pub async fn delete_function(lambda: &Client, name: &str) -> Result<(), String> {
    match lambda
        .delete_function_url_config()
        .function_name(name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => {
            return Err(format!(
                "cannot delete the URL of `{name}`: {}",
                describe(&e)
            ));
        }
    }
    match lambda.delete_function().function_name(name).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("cannot delete function `{name}`: {}", describe(&e))),
    }
}
