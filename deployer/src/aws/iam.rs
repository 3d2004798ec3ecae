//! The function's execution role: trusts lambda.amazonaws.com, has AWSLambdaBasicExecutionRole.
//!
//! IAM is eventually consistent
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>):
//! right after `CreateRole`, IAM itself may answer `NoSuchEntity` for the role, and Lambda
//! cannot assume it for several seconds. The first is retried here; the second in
//! `lambda::upsert_function`, for a role young enough to be still propagating.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;

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
    /// Its permissions boundary and tags as IAM has them (a role just made: as made).
    boundary: Option<String>,
    tags: BTreeMap<String, String>,
    /// Whether this run changed its boundary or tags.
    pub changed: bool,
}

/// What an organisation may require of the role: a permissions boundary (`None`: none, and
/// one the deployer set before, `previous_boundary`, is removed) and tags (`None`: left as
/// they are; else exactly these, but AWS's own `aws:` ones).
#[derive(Debug, Clone, Default)]
pub struct RoleSettings {
    pub boundary: Option<String>,
    pub previous_boundary: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
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
                boundary: role
                    .and_then(|r| r.permissions_boundary())
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_owned),
                tags: role
                    .map(|r| {
                        r.tags()
                            .iter()
                            .map(|t| (t.key().to_owned(), t.value().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                changed: false,
            }))
        }
        Err(e) if is_code(&e, "NoSuchEntity") => Ok(None),
        Err(e) => Err(AwsError::sdk(format!("read IAM role `{name}`"), &e)),
    }
}

/// Finds or creates the role with `settings`, and attaches the basic execution policy if it
/// is missing.
pub async fn upsert_role(
    iam: &Client,
    name: &str,
    settings: &RoleSettings,
) -> Result<Role, AwsError> {
    // The role usually exists (every deploy after the first): its policies are listed
    // beside the read, one round trip instead of two; the list is only used if the role
    // was found.
    let (found, listed) = tokio::join!(
        get_role(iam, name),
        iam.list_attached_role_policies().role_name(name).send()
    );
    let found = found?;
    let listed = if found.is_some() { listed.ok() } else { None };
    let tags: Vec<Tag> = settings
        .tags
        .iter()
        .flatten()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    let mut role = match found {
        Some(role) => role,
        // Made with its boundary and tags: an organisation's SCP may refuse a role without.
        None => match iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(TRUST_POLICY)
            .description("Execution role created by deployer")
            .set_permissions_boundary(settings.boundary.clone())
            .set_tags((!tags.is_empty()).then(|| tags.clone()))
            .send()
            .await
        {
            Ok(out) => Role {
                arn: out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
                created: true,
                propagating: true,
                boundary: settings.boundary.clone(),
                tags: settings.tags.clone().unwrap_or_default(),
                changed: true,
            },
            // Another run created it between our read and our create.
            Err(e) if is_code(&e, "EntityAlreadyExists") => get_role(iam, name)
                .await?
                .ok_or_else(|| AwsError::sdk(format!("create IAM role `{name}`"), &e))?,
            Err(e) => return Err(AwsError::sdk(format!("create IAM role `{name}`"), &e)),
        },
    };
    converge_settings(iam, name, &mut role, settings).await?;
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

/// Brings a found role's boundary and tags to `settings`.
async fn converge_settings(
    iam: &Client,
    name: &str,
    role: &mut Role,
    settings: &RoleSettings,
) -> Result<(), AwsError> {
    match (&settings.boundary, &role.boundary) {
        (Some(wanted), current) if current.as_ref() != Some(wanted) => {
            iam.put_role_permissions_boundary()
                .role_name(name)
                .permissions_boundary(wanted)
                .send()
                .await
                .map_err(|e| {
                    AwsError::sdk(format!("set the permissions boundary of `{name}`"), &e)
                })?;
            role.changed = true;
        }
        (None, Some(current)) if settings.previous_boundary.as_ref() == Some(current) => {
            iam.delete_role_permissions_boundary()
                .role_name(name)
                .send()
                .await
                .map_err(|e| {
                    AwsError::sdk(format!("remove the permissions boundary of `{name}`"), &e)
                })?;
            role.changed = true;
        }
        _ => {}
    }
    let Some(wanted) = &settings.tags else {
        return Ok(());
    };
    let (set, unset) = tag_changes(&role.tags, wanted);
    if !set.is_empty() {
        let tags: Vec<Tag> = set
            .iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        iam.tag_role()
            .role_name(name)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("tag IAM role `{name}`"), &e))?;
        role.changed = true;
    }
    if !unset.is_empty() {
        iam.untag_role()
            .role_name(name)
            .set_tag_keys(Some(unset))
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("untag IAM role `{name}`"), &e))?;
        role.changed = true;
    }
    Ok(())
}

/// The tags to set (missing or different) and the keys to remove (not wanted; AWS's own
/// `aws:` ones are never touched) to bring `current` to `wanted`.
pub fn tag_changes(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let unset = current
        .keys()
        .filter(|k| !wanted.contains_key(*k) && !k.starts_with("aws:"))
        .cloned()
        .collect();
    (set, unset)
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
