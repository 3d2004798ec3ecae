//! The function's execution role: trusts lambda.amazonaws.com, has AWSLambdaBasicExecutionRole.
//!
//! IAM is eventually consistent
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>):
//! right after `CreateRole`, IAM itself may answer `NoSuchEntity` for the role, and Lambda
//! cannot assume it for several seconds. The first is retried here; the second in
//! `lambda::upsert_function`, for a role young enough to be still propagating.

use std::time::{Duration, SystemTime};

use aws_sdk_iam::Client;

use super::{AwsError, is_code};
use crate::retry::{self, Policy, Verdict};

const BASIC_EXECUTION_POLICY_PATH: &str = "policy/service-role/AWSLambdaBasicExecutionRole";
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// How long after its creation a role may still be propagating to Lambda. AWS gives no
/// bound; minutes, not seconds, is what users report.
const PROPAGATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The execution role as the function needs it.
#[derive(Debug, Clone)]
pub struct Role {
    pub arn: String,
    /// Created by this run.
    pub created: bool,
    /// Created recently enough (by this run or an interrupted one) that Lambda may not be
    /// able to assume it yet.
    pub propagating: bool,
}

/// The managed policy's ARN in the role's partition (`aws`, `aws-cn`, `aws-us-gov`): an ARN
/// is `arn:<partition>:iam::<account>:role/<name>`.
pub fn basic_execution_policy(role_arn: &str) -> String {
    let partition = role_arn
        .split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or("aws");
    format!("arn:{partition}:iam::aws:{BASIC_EXECUTION_POLICY_PATH}")
}

/// A new role's `NoSuchEntity` from IAM itself: retried briefly.
fn not_yet_visible<E, R>(e: &aws_sdk_iam::error::SdkError<E, R>) -> Verdict
where
    E: aws_sdk_iam::error::ProvideErrorMetadata,
{
    if is_code(e, "NoSuchEntity") {
        Verdict::Retry
    } else {
        Verdict::Stop
    }
}

const IAM_READ_AFTER_CREATE: Policy = Policy {
    initial: Duration::from_millis(250),
    max_delay: Duration::from_secs(2),
    max_attempts: 12,
    max_elapsed: Duration::from_secs(20),
};

async fn get_role(iam: &Client, name: &str) -> Result<Option<Role>, AwsError> {
    match iam.get_role().role_name(name).send().await {
        Ok(out) => {
            let role = out.role();
            let created_at = role.map(|r| r.create_date().secs()).unwrap_or(0);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            Ok(Some(Role {
                arn: role.map(|r| r.arn().to_owned()).unwrap_or_default(),
                created: false,
                propagating: now - created_at < PROPAGATION_WINDOW.as_secs() as i64,
            }))
        }
        Err(e) if is_code(&e, "NoSuchEntity") => Ok(None),
        Err(e) => Err(AwsError::sdk(format!("read IAM role `{name}`"), &e)),
    }
}

/// Finds or creates the role, and attaches the basic execution policy if it is missing.
pub async fn upsert_role(iam: &Client, name: &str) -> Result<Role, AwsError> {
    // The role usually exists (every deploy after the first): its policies are listed
    // beside the read, one round trip instead of two; the list is only used if the role
    // was found.
    let (found, listed) = tokio::join!(
        get_role(iam, name),
        iam.list_attached_role_policies().role_name(name).send()
    );
    let found = found?;
    let listed = if found.is_some() { listed.ok() } else { None };
    let role = match found {
        Some(role) => role,
        None => match iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(TRUST_POLICY)
            .description("Execution role created by deployer")
            .send()
            .await
        {
            Ok(out) => Role {
                arn: out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
                created: true,
                propagating: true,
            },
            // Another run created it between our read and our create.
            Err(e) if is_code(&e, "EntityAlreadyExists") => get_role(iam, name)
                .await?
                .ok_or_else(|| AwsError::sdk(format!("create IAM role `{name}`"), &e))?,
            Err(e) => return Err(AwsError::sdk(format!("create IAM role `{name}`"), &e)),
        },
    };
    let policy = basic_execution_policy(&role.arn);
    // A role this run created has no policies yet: no need to list them.
    let has_basic = !role.created && {
        let attached = match listed {
            Some(attached) => attached,
            None => retry::retry(
                IAM_READ_AFTER_CREATE,
                || iam.list_attached_role_policies().role_name(name).send(),
                not_yet_visible,
            )
            .await
            .map_err(|e| AwsError::sdk(format!("list the policies of IAM role `{name}`"), &e))?,
        };
        attached
            .attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(policy.as_str()))
    };
    if !has_basic {
        retry::retry(
            IAM_READ_AFTER_CREATE,
            || {
                iam.attach_role_policy()
                    .role_name(name)
                    .policy_arn(&policy)
                    .send()
            },
            not_yet_visible,
        )
        .await
        .map_err(|e| {
            AwsError::sdk(
                format!("attach AWSLambdaBasicExecutionRole to `{name}`"),
                &e,
            )
        })?;
    }
    Ok(role)
}

/// Deletes the role: IAM refuses while policies are attached or inline, so every attached
/// policy is detached and every inline one deleted first (whoever added them). A role
/// already gone counts as deleted.
pub async fn delete_role(iam: &Client, name: &str) -> Result<(), AwsError> {
    let mut attached = Vec::new();
    let mut marker = None;
    loop {
        match iam
            .list_attached_role_policies()
            .role_name(name)
            .set_marker(marker.take())
            .send()
            .await
        {
            Ok(out) => {
                attached.extend(
                    out.attached_policies()
                        .iter()
                        .filter_map(|p| p.policy_arn().map(str::to_owned)),
                );
                match (out.is_truncated(), out.marker()) {
                    (true, Some(m)) => marker = Some(m.to_owned()),
                    _ => break,
                }
            }
            Err(e) if is_code(&e, "NoSuchEntity") => return Ok(()),
            Err(e) => {
                return Err(AwsError::sdk(
                    format!("list the policies of IAM role `{name}`"),
                    &e,
                ));
            }
        }
    }
    for arn in attached {
        match iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(&arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, "NoSuchEntity") => {}
            Err(e) => {
                return Err(AwsError::sdk(
                    format!("detach `{arn}` from IAM role `{name}`"),
                    &e,
                ));
            }
        }
    }
    let mut inline = Vec::new();
    let mut marker = None;
    loop {
        match iam
            .list_role_policies()
            .role_name(name)
            .set_marker(marker.take())
            .send()
            .await
        {
            Ok(out) => {
                inline.extend(out.policy_names().iter().cloned());
                match (out.is_truncated(), out.marker()) {
                    (true, Some(m)) => marker = Some(m.to_owned()),
                    _ => break,
                }
            }
            Err(e) if is_code(&e, "NoSuchEntity") => return Ok(()),
            Err(e) => {
                return Err(AwsError::sdk(
                    format!("list the inline policies of IAM role `{name}`"),
                    &e,
                ));
            }
        }
    }
    for policy in inline {
        match iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(&policy)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, "NoSuchEntity") => {}
            Err(e) => {
                return Err(AwsError::sdk(
                    format!("delete inline policy `{policy}` of IAM role `{name}`"),
                    &e,
                ));
            }
        }
    }
    match iam.delete_role().role_name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, "NoSuchEntity") => Ok(()),
        Err(e) => Err(AwsError::sdk(format!("delete IAM role `{name}`"), &e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_managed_policy_is_in_the_roles_partition() {
        assert_eq!(
            super::basic_execution_policy("arn:aws:iam::123456789012:role/r"),
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        );
        assert_eq!(
            super::basic_execution_policy("arn:aws-cn:iam::123456789012:role/r"),
            "arn:aws-cn:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        );
        assert_eq!(
            super::basic_execution_policy("arn:aws-us-gov:iam::123456789012:role/r"),
            "arn:aws-us-gov:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        );
    }
}
