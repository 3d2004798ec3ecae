//! A function's releases: Lambda versions. A deploy that changed the function's code or
//! configuration checks it and publishes it as a version, described as the release it is
//! (`deployer release <commit>[-dirty] <time>`, and each migration set's last migration);
//! one whose `$LATEST` already equals a version (an unchanged redeploy, or the code of a
//! release rolled back from) reuses that version instead of publishing a copy.
//!
//! The check runs before the version exists: `$LATEST` is invoked with a function-URL event
//! for `GET <smoke>` and must answer 2xx within the function's timeout; only then is it
//! published, pinned to what was checked (`PublishVersion` with the `CodeSha256` and
//! `RevisionId` of the checked configuration, API Reference, "PublishVersion"). So every
//! version the deployer published passed its check, and Lambda's list of versions is the
//! list of releases, readable from any machine. Versions beyond `keep_releases` are
//! deleted, never the live one or the one before it.

use std::time::Duration;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::FunctionConfiguration;
use serde::Serialize;
use serde_json::{Value, json};

use crate::aws::AwsError;

/// Descriptions of the versions the deployer publishes start so.
pub const PREFIX: &str = "deployer release ";

/// Lambda's limit on a version's description.
const MAX_DESCRIPTION: usize = 256;

/// One release, as `deployer releases` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    /// When it was published (Lambda's `LastModified`).
    pub time: String,
    /// The git commit it was built from (`-dirty`: with uncommitted changes), if known.
    pub commit: Option<String>,
    pub code_sha256: String,
    /// `passed` for the deployer's releases (only those are published); `unchecked` for
    /// versions published another way.
    pub check: &'static str,
    pub live: bool,
    /// Each migration set's last migration when it was released (`Set=version`).
    pub migrations: Vec<String>,
}

/// Why a release did not go out.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "the new code failed its check, GET {path}: {what}; `live` still serves the previous release"
    )]
    CheckFailed { path: String, what: String },
}

/// The release's name for its description: the commit (`-dirty` when the tree has changes)
/// and the time.
pub fn release_name(project_dir: &std::path::Path, migrations: &[String]) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(project_dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
            format!("{c}{}", if dirty { "-dirty" } else { "" })
        }
        _ => "unknown".to_owned(),
    };
    let mut name = format!("{PREFIX}{commit} {}", crate::output::now_rfc3339());
    if !migrations.is_empty() {
        name.push_str(&format!("; migrations {}", migrations.join(" ")));
    }
    name.chars().take(MAX_DESCRIPTION).collect()
}

/// Reads a description the deployer wrote: (commit, migrations).
fn parse_description(d: &str) -> Option<(String, Vec<String>)> {
    let rest = d.strip_prefix(PREFIX)?;
    let (head, migrations) = match rest.split_once("; migrations ") {
        Some((h, m)) => (h, m.split(' ').map(str::to_owned).collect()),
        None => (rest, Vec::new()),
    };
    Some((head.split(' ').next()?.to_owned(), migrations))
}

/// Every version of the function, `$LATEST` first, through every page.
pub async fn list(lambda: &Client, name: &str) -> Result<Vec<FunctionConfiguration>, AwsError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = lambda
            .list_versions_by_function()
            .function_name(name)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("list the versions of `{name}`"), &e))?;
        out.extend(page.versions().iter().cloned());
        match page.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// Whether version `v` runs what `latest` would: the same code and configuration.
fn same(latest: &FunctionConfiguration, v: &FunctionConfiguration) -> bool {
    fn env(c: &FunctionConfiguration) -> Option<std::collections::BTreeMap<&String, &String>> {
        c.environment()
            .and_then(|e| e.variables())
            .map(|m| m.iter().collect())
    }
    latest.code_sha256() == v.code_sha256()
        && env(latest) == env(v)
        && latest.memory_size() == v.memory_size()
        && latest.timeout() == v.timeout()
        && latest.role() == v.role()
        && latest.handler() == v.handler()
        && latest.runtime() == v.runtime()
        && latest.architectures() == v.architectures()
}

/// The releases of the function, newest first, with which one `live` serves.
pub fn releases(versions: &[FunctionConfiguration], live: Option<&str>) -> Vec<Release> {
    let mut out: Vec<Release> = versions
        .iter()
        .filter(|v| v.version() != Some("$LATEST"))
        .map(|v| {
            let parsed = v.description().and_then(parse_description);
            Release {
                version: v.version().unwrap_or_default().to_owned(),
                time: v.last_modified().unwrap_or_default().to_owned(),
                commit: parsed.as_ref().map(|p| p.0.clone()),
                code_sha256: v.code_sha256().unwrap_or_default().to_owned(),
                check: if parsed.is_some() {
                    "passed"
                } else {
                    "unchecked"
                },
                live: live == v.version(),
                migrations: parsed.map(|p| p.1).unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.version.parse::<u64>().unwrap_or(0)));
    out
}

/// What a deploy's release step settled on.
#[derive(Debug, Clone)]
pub struct Settled {
    pub version: String,
    /// Published by this run (it passed its check now).
    pub published: bool,
    /// The versions there are now (the one published included), for pruning.
    pub versions: Vec<String>,
}

/// The version `live` should serve for the function as `$LATEST` is now: the one equal to
/// it, or a new one, checked and published. `secrets` are withheld from a failed check's
/// report.
pub async fn settle(
    lambda: &Client,
    name: &str,
    smoke: Option<&str>,
    timeout: Duration,
    description: &str,
    secrets: &[String],
) -> Result<Settled, ReleaseError> {
    let versions = list(lambda, name).await?;
    let latest = versions
        .iter()
        .find(|v| v.version() == Some("$LATEST"))
        .cloned()
        .ok_or_else(|| {
            AwsError::other(
                format!("read `$LATEST` of `{name}`"),
                "Lambda listed no $LATEST",
            )
        })?;
    let mut equal: Vec<&FunctionConfiguration> = versions
        .iter()
        .filter(|v| v.version() != Some("$LATEST") && same(&latest, v))
        .collect();
    equal.sort_by_key(|v| std::cmp::Reverse(v.version().and_then(|n| n.parse::<u64>().ok())));
    let mut numbers: Vec<String> = versions
        .iter()
        .filter_map(|v| v.version())
        .filter(|v| *v != "$LATEST")
        .map(str::to_owned)
        .collect();
    if let Some(v) = equal.first() {
        return Ok(Settled {
            version: v.version().unwrap_or_default().to_owned(),
            published: false,
            versions: numbers,
        });
    }
    if let Some(path) = smoke {
        check(lambda, name, path, timeout, secrets).await?;
    }
    let published = lambda
        .publish_version()
        .function_name(name)
        .set_code_sha256(latest.code_sha256().map(str::to_owned))
        .set_revision_id(latest.revision_id().map(str::to_owned))
        .description(description)
        .send()
        .await
        .map_err(|e| AwsError::sdk(format!("publish a version of `{name}`"), &e))?;
    let version = published.version().unwrap_or_default().to_owned();
    if !numbers.contains(&version) {
        numbers.push(version.clone());
    }
    Ok(Settled {
        version,
        published: true,
        versions: numbers,
    })
}

/// A function URL event (payload format 2.0) for `GET <path>`, as Lambda sends one.
fn url_event(path: &str) -> Value {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let now = crate::output::now_unix();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "deployer-check.lambda-url.on.aws", "user-agent": "deployer-check"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "deployer-check",
            "domainName": "deployer-check.lambda-url.on.aws",
            "domainPrefix": "deployer-check",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "deployer-check"},
            "requestId": format!("deployer-check-{now}"),
            "routeKey": "$default",
            "stage": "$default",
            "time": crate::output::rfc3339(now),
            "timeEpoch": now * 1000,
        },
        "isBase64Encoded": false,
    })
}

/// The first 200 characters of `text`, secrets withheld.
fn start_of(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_owned();
    for s in secrets {
        t = t.replace(s.as_str(), "******");
    }
    let cut: String = t.chars().take(200).collect();
    if cut.len() < t.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// Invokes `$LATEST` with `GET <path>` and requires a 2xx.
async fn check(
    lambda: &Client,
    name: &str,
    path: &str,
    timeout: Duration,
    secrets: &[String],
) -> Result<(), ReleaseError> {
    let failed = |what: String| ReleaseError::CheckFailed {
        path: path.to_owned(),
        what,
    };
    let call = lambda
        .invoke()
        .function_name(name)
        .qualifier("$LATEST")
        .payload(Blob::new(url_event(path).to_string()))
        .send();
    // Lambda stops the function at its timeout; a little more for the round trip.
    let out = match tokio::time::timeout(timeout + Duration::from_secs(10), call).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(AwsError::sdk(format!("invoke `{name}` to check it"), &e).into()),
        Err(_) => return Err(failed(format!("no answer within {}s", timeout.as_secs()))),
    };
    let payload = out
        .payload()
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
        .unwrap_or_default();
    if let Some(kind) = out.function_error() {
        let v: Value = serde_json::from_str(&payload).unwrap_or_default();
        let what = match (v["errorType"].as_str(), v["errorMessage"].as_str()) {
            (Some(t), Some(m)) => format!("{t}: {m}"),
            _ => payload.clone(),
        };
        return Err(failed(format!(
            "the function failed ({kind}): {}",
            start_of(&what, secrets)
        )));
    }
    let v: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
    // A value without `statusCode` is a 200 to a function URL.
    let status = v.get("statusCode").and_then(Value::as_u64).unwrap_or(200);
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = v["body"].as_str().unwrap_or_default();
    Err(failed(format!("{status}: {}", start_of(body, secrets))))
}

/// Deletes the oldest of `versions` beyond the newest `keep`, never `live` or the release
/// before it (what `rollback` goes back to).
pub async fn prune(
    lambda: &Client,
    name: &str,
    versions: &[String],
    keep: usize,
    live: &str,
) -> Result<Vec<String>, AwsError> {
    let mut numbers: Vec<u64> = versions.iter().filter_map(|v| v.parse().ok()).collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    let live_n: u64 = live.parse().unwrap_or(0);
    let before = numbers.iter().copied().filter(|n| *n < live_n).max();
    let mut deleted = Vec::new();
    for n in numbers.into_iter().skip(keep.max(2)) {
        if n == live_n || Some(n) == before {
            continue;
        }
        let v = n.to_string();
        lambda
            .delete_function()
            .function_name(name)
            .qualifier(&v)
            .send()
            .await
            .map_err(|e| AwsError::sdk(format!("delete version {v} of `{name}`"), &e))?;
        deleted.push(v);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_description_reads_back() {
        let d = format!(
            "{PREFIX}0123456789ab-dirty 2026-12-01T15:00:00Z; migrations MyAppProject/migrations=20260102000000"
        );
        assert_eq!(
            parse_description(&d),
            Some((
                "0123456789ab-dirty".to_owned(),
                vec!["MyAppProject/migrations=20260102000000".to_owned()]
            ))
        );
        assert_eq!(parse_description("made in the console"), None);
        let long = release_name(std::path::Path::new("/"), &["x".repeat(300)]);
        assert!(long.chars().count() <= MAX_DESCRIPTION);
    }
}
