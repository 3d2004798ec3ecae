//! The function's public URL: auth NONE, and the two resource-policy statements AWS requires
//! of a public URL since October 2025, added when missing and repaired when wrong.
//!
//! A create answered 409 ResourceConflictException (a statement ID that exists, a URL that
//! exists: Lambda API Reference, AddPermission and CreateFunctionUrlConfig, "Errors") is
//! what the SDK's retry of a call Lambda had applied meets when the first reply was lost:
//! the URL or policy is read, and the call counts as done if it holds what was asked.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::types::FunctionUrlAuthType;

use super::lambda::Changes;
use super::{AwsError, is_code};

/// Regions where Lambda offers no function URLs (Lambda Developer Guide, "Creating and
/// managing Lambda function URLs": "Function URLs are not supported in ..."). A `url = true`
/// there is refused before any call, not found out after the role and function exist.
pub const REGIONS_WITHOUT_URLS: &[&str] = &[
    "ap-east-2",
    "ap-south-2",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-west-1",
    "eu-central-2",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
];

/// Whether Lambda offers function URLs in `region`.
pub fn offered_in(region: &str) -> bool {
    !REGIONS_WITHOUT_URLS.contains(&region)
}

/// What to do about a `url = true` where there are no function URLs.
pub const NO_URLS_HINT: &str = "remove `url = true` (and invoke the function another way, e.g. behind API Gateway), or deploy to a region with function URLs";

/// Statement IDs of the two public-access permissions a NONE-auth URL needs (since October
/// 2025 AWS requires both), named as the console names them.
pub const URL_PERMISSION_SID: &str = "FunctionURLAllowPublicAccess";
pub const INVOKE_PERMISSION_SID: &str = "FunctionURLInvokeAllowPublicAccess";

/// Makes the function's URL public (auth NONE, both permissions) and returns it; or, with
/// `wanted = false`, removes URL and permissions. Only missing pieces are added.
pub async fn converge_url(
    lambda: &Client,
    name: &str,
    qualifier: Option<&str>,
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
                .set_qualifier(qualifier.map(str::to_owned))
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
                    .set_qualifier(qualifier.map(str::to_owned))
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
                .set_qualifier(qualifier.map(str::to_owned))
                .auth_type(FunctionUrlAuthType::None)
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("make the URL of `{name}` public"), &e))?;
            changes.url = true;
            out.function_url().to_owned()
        }
        None => {
            let created = lambda
                .create_function_url_config()
                .function_name(name)
                .set_qualifier(qualifier.map(str::to_owned))
                .auth_type(FunctionUrlAuthType::None)
                .send()
                .await;
            changes.url = true;
            match created {
                Ok(out) => out.function_url().to_owned(),
                // A retry (the SDK's, after a lost reply) of a create Lambda had applied,
                // or another run's: the URL exists. Ours if it is public; else made so.
                Err(e) if is_code(&e, "ResourceConflictException") => {
                    let existing = lambda
                        .get_function_url_config()
                        .function_name(name)
                        .set_qualifier(qualifier.map(str::to_owned))
                        .send()
                        .await
                        .map_err(|e| AwsError::sdk(format!("read the URL of `{name}`"), &e))?;
                    if *existing.auth_type() == FunctionUrlAuthType::None {
                        existing.function_url().to_owned()
                    } else {
                        lambda
                            .update_function_url_config()
                            .function_name(name)
                            .set_qualifier(qualifier.map(str::to_owned))
                            .auth_type(FunctionUrlAuthType::None)
                            .send()
                            .await
                            .map_err(|e| {
                                AwsError::sdk(format!("make the URL of `{name}` public"), &e)
                            })?
                            .function_url()
                            .to_owned()
                    }
                }
                Err(e) => return Err(AwsError::sdk(format!("create the URL of `{name}`"), &e)),
            }
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
                .set_qualifier(qualifier.map(str::to_owned))
                .statement_id(sid)
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("remove permission `{sid}` of `{name}`"), &e))?;
        }
        let add = lambda
            .add_permission()
            .function_name(name)
            .set_qualifier(qualifier.map(str::to_owned))
            .statement_id(sid)
            .principal("*");
        let add = if sid == URL_PERMISSION_SID {
            add.action("lambda:InvokeFunctionUrl")
                .function_url_auth_type(FunctionUrlAuthType::None)
        } else {
            add.action("lambda:InvokeFunction")
                .invoked_via_function_url(true)
        };
        let failed = |e: &aws_sdk_lambda::error::SdkError<_, _>| {
            AwsError::sdk(
                format!("allow public calls to `{name}` through its URL ({sid})"),
                e,
            )
        };
        match add.send().await {
            Ok(_) => {}
            // The statement ID exists: a retry of an AddPermission Lambda had applied (its
            // reply lost), or another run's. Done if the policy now grants what we asked.
            Err(e) if is_code(&e, "ResourceConflictException") => {
                let now = UrlPolicy::read(lambda, name, qualifier).await?;
                let granted = if sid == URL_PERMISSION_SID {
                    now.public_url
                } else {
                    now.invoke_via_url
                };
                if !granted {
                    return Err(failed(&e));
                }
            }
            Err(e) => return Err(failed(&e)),
        }
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
    /// Whether there is a URL.
    pub fn has_url(&self) -> bool {
        self.current.is_some()
    }

    /// What differs from a public URL with both of its permissions (`wanted`), or from no
    /// URL; empty when nothing does.
    pub fn drift(&self, wanted: bool) -> Vec<String> {
        let mut drift = Vec::new();
        match (&self.current, wanted) {
            (None, true) => drift.push("its public URL is gone".to_owned()),
            (Some((url, _)), false) => {
                drift.push(format!("it has a URL ({url}) infra.toml does not ask for"))
            }
            (Some((_, auth)), true) if *auth != FunctionUrlAuthType::None => drift.push(format!(
                "its URL's auth type is {}, not NONE",
                auth.as_str()
            )),
            _ => {}
        }
        if wanted && self.current.is_some() {
            if !self.policy.public_url {
                drift.push("its URL lacks the lambda:InvokeFunctionUrl permission".to_owned());
            }
            if !self.policy.invoke_via_url {
                drift.push("its URL lacks the lambda:InvokeFunction permission".to_owned());
            }
        }
        drift
    }

    /// Reads both; a function that does not exist yet has neither.
    pub async fn read(
        lambda: &Client,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<UrlState, AwsError> {
        let url = async {
            match lambda
                .get_function_url_config()
                .function_name(name)
                .set_qualifier(qualifier.map(str::to_owned))
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
        let (current, policy) = tokio::try_join!(url, UrlPolicy::read(lambda, name, qualifier))?;
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
    async fn read(
        lambda: &Client,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<UrlPolicy, AwsError> {
        match lambda
            .get_policy()
            .function_name(name)
            .set_qualifier(qualifier.map(str::to_owned))
            .send()
            .await
        {
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
