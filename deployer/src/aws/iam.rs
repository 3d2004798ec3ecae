//! The function's execution role: trusts lambda.amazonaws.com, has AWSLambdaBasicExecutionRole.

use aws_sdk_iam::Client;

use super::{AwsError, is_code};

pub const BASIC_EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The role's ARN, and whether this call created it (IAM then needs time to propagate).
pub async fn upsert_role(iam: &Client, name: &str) -> Result<(String, bool), AwsError> {
    let (arn, created) = match iam.get_role().role_name(name).send().await {
        Ok(out) => (
            out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
            false,
        ),
        Err(e) if is_code(&e, "NoSuchEntity") => {
            let out = iam
                .create_role()
                .role_name(name)
                .assume_role_policy_document(TRUST_POLICY)
                .description("Execution role created by deployer")
                .send()
                .await
                .map_err(|e| AwsError::sdk(format!("create IAM role `{name}`"), &e))?;
            (
                out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
                true,
            )
        }
        Err(e) => return Err(AwsError::sdk(format!("read IAM role `{name}`"), &e)),
    };
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("list the policies of IAM role `{name}`"), &e))?;
    let has_basic = attached
        .attached_policies()
        .iter()
        .any(|p| p.policy_arn() == Some(BASIC_EXECUTION_POLICY));
    if !has_basic {
        iam.attach_role_policy()
            .role_name(name)
            .policy_arn(BASIC_EXECUTION_POLICY)
            .send()
            .await
            .map_err(|e| {
                AwsError::sdk(
                    format!("attach AWSLambdaBasicExecutionRole to `{name}`"),
                    &e,
                )
            })?;
    }
    Ok((arn, created))
}

/// Detaches the policy and deletes the role; a role already gone counts as deleted.
pub async fn delete_role(iam: &Client, name: &str) -> Result<(), AwsError> {
    match iam
        .detach_role_policy()
        .role_name(name)
        .policy_arn(BASIC_EXECUTION_POLICY)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if is_code(&e, "NoSuchEntity") => {}
        Err(e) => {
            return Err(AwsError::sdk(
                format!("detach the policy of IAM role `{name}`"),
                &e,
            ));
        }
    }
    match iam.delete_role().role_name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, "NoSuchEntity") => Ok(()),
        Err(e) => Err(AwsError::sdk(format!("delete IAM role `{name}`"), &e)),
    }
}
