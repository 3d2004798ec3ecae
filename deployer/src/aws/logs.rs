//! The function's log group, `/aws/lambda/<name>`: created by the deployer with a retention,
//! so logs do not pile up forever (Lambda creates the group on first invocation with none,
//! "Never expire"), and deleted with the function under `removal = "remove"`.

use std::collections::BTreeMap;

use aws_sdk_cloudwatchlogs::Client;

use super::{AwsError, is_code};

/// The group Lambda writes a function's logs to ("Sending Lambda function logs to
/// CloudWatch Logs", Lambda developer guide).
pub fn group_name(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// Creates the group if missing and sets its retention and tags (`None`: left as they
/// are); true if anything changed.
pub async fn converge_group(
    logs: &Client,
    function: &str,
    retention_days: i32,
    tags: Option<&BTreeMap<String, String>>,
) -> Result<bool, AwsError> {
    let name = group_name(function);
    let found = find_group(logs, &name).await?;
    let existing = found.as_ref();
    let tags_changed = match (existing, tags) {
        (Some(group), Some(wanted)) => converge_tags(logs, group, wanted).await?,
        _ => false,
    };
    let retention = match existing {
        Some(group) => group.retention_in_days(),
        None => {
            let create = logs.create_log_group().log_group_name(&name).set_tags(
                tags.filter(|t| !t.is_empty())
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            );
            match create.send().await {
                Ok(_) => {}
                // Lambda created it meanwhile, on a first invocation.
                Err(e) if is_code(&e, "ResourceAlreadyExistsException") => {}
                Err(e) => return Err(AwsError::sdk(format!("create log group `{name}`"), &e)),
            }
            None
        }
    };
    if retention == Some(retention_days) {
        return Ok(existing.is_none() || tags_changed);
    }
    logs.put_retention_policy()
        .log_group_name(&name)
        .retention_in_days(retention_days)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("set the retention of log group `{name}`"), &e))?;
    Ok(true)
}

/// Brings a group's tags to `wanted` (AWS's own `aws:` tags aside), by its ARN (the
/// `logGroupArn`, without the `:*` of `arn`); true if changed.
async fn converge_tags(
    logs: &Client,
    group: &aws_sdk_cloudwatchlogs::types::LogGroup,
    wanted: &BTreeMap<String, String>,
) -> Result<bool, AwsError> {
    let Some(arn) = group
        .log_group_arn()
        .map(str::to_owned)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_owned()))
    else {
        return Ok(false);
    };
    let current: BTreeMap<String, String> = logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("read the tags of log group `{arn}`"), &e))?
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let (set, unset) = super::iam::tag_changes(&current, wanted);
    if !set.is_empty() {
        logs.tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(set.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("tag log group `{arn}`"), &e))?;
    }
    if !unset.is_empty() {
        logs.untag_resource()
            .resource_arn(&arn)
            .set_tag_keys(Some(unset.clone()))
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("untag log group `{arn}`"), &e))?;
    }
    Ok(!set.is_empty() || !unset.is_empty())
}

/// One event of a log group, as `FilterLogEvents` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub stream: String,
    pub message: String,
}

/// The group's events from `start_ms` on, through every page (`nextToken`), oldest first;
/// `None` when the group does not exist (a function never invoked, and not made by a
/// deploy).
pub async fn events_since(
    logs: &Client,
    function: &str,
    start_ms: i64,
) -> Result<Option<Vec<Event>>, AwsError> {
    let name = group_name(function);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(&name)
            .start_time(start_ms)
            .set_next_token(token.take())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) if is_code(&e, "ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(AwsError::sdk(format!("read the logs of `{name}`"), &e)),
        };
        for e in page.events() {
            out.push(Event {
                id: e.event_id().unwrap_or_default().to_owned(),
                timestamp: e.timestamp().unwrap_or_default(),
                stream: e.log_stream_name().unwrap_or_default().to_owned(),
                message: e.message().unwrap_or_default().trim_end().to_owned(),
            });
        }
        // The last page has no token (or repeats the one sent, as the API allows).
        match page.next_token() {
            Some(t) if !t.is_empty() && !page.events().is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    out.sort_by_key(|e| e.timestamp);
    Ok(Some(out))
}

/// How many days the group keeps events (`None`: forever, or no such group).
pub async fn retention_days(logs: &Client, function: &str) -> Result<Option<i32>, AwsError> {
    let found = find_group(logs, &group_name(function)).await?;
    Ok(found.and_then(|g| g.retention_in_days()))
}

/// The group named exactly `name` (DescribeLogGroups matches by prefix).
async fn find_group(
    logs: &Client,
    name: &str,
) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, AwsError> {
    let found = logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("read log group `{name}`"), &e))?;
    Ok(found
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .cloned())
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
