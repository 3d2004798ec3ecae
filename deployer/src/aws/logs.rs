//! The function's log group, `/aws/lambda/<name>`: created by the deployer with a retention,
//! so logs do not pile up forever (Lambda creates the group on first invocation with none,
//! "Never expire"), and deleted with the function under `removal = "remove"`.

use aws_sdk_cloudwatchlogs::Client;

use super::{AwsError, is_code};

/// The group Lambda writes a function's logs to ("Sending Lambda function logs to
/// CloudWatch Logs", Lambda developer guide).
pub fn group_name(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// Creates the group if missing and sets its retention; true if anything changed.
pub async fn converge_group(
    logs: &Client,
    function: &str,
    retention_days: i32,
) -> Result<bool, AwsError> {
    let name = group_name(function);
    let found = logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("read log group `{name}`"), &e))?;
    let existing = found
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()));
    let retention = match existing {
        Some(group) => group.retention_in_days(),
        None => {
            match logs.create_log_group().log_group_name(&name).send().await {
                Ok(_) => {}
                // Lambda created it meanwhile, on a first invocation.
                Err(e) if is_code(&e, "ResourceAlreadyExistsException") => {}
                Err(e) => return Err(AwsError::sdk(format!("create log group `{name}`"), &e)),
            }
            None
        }
    };
    if retention == Some(retention_days) {
        return Ok(existing.is_none());
    }
    logs.put_retention_policy()
        .log_group_name(&name)
        .retention_in_days(retention_days)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("set the retention of log group `{name}`"), &e))?;
    Ok(true)
}

/// Deletes the group; one already gone (never invoked, or deleted by hand) is fine.
pub async fn delete_group(logs: &Client, function: &str) -> Result<(), AwsError> {
    let name = group_name(function);
    match logs.delete_log_group().log_group_name(&name).send().await {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, "ResourceNotFoundException") => Ok(()),
        Err(e) => Err(AwsError::sdk(format!("delete log group `{name}`"), &e)),
    }
}
