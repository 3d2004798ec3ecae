//! `deployer logs`: the stage's function logs from CloudWatch Logs (`/aws/lambda/<name>`,
//! `FilterLogEvents` through every page), one line per event with its time, its release
//! (the version in the stream's name, `2026/12/01/[3]abc...`) and its request ID (from
//! Lambda's `START RequestId: ...` line of that stream); `--follow` asks again every second.
//!
//! Every secret the stage knows (connection strings, passwords, the functions' environment
//! values) is masked in what is printed, even where the function logged it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::cli::LogsArgs;
use crate::config::Kind;
use crate::error::Failure;
use crate::state::StageState;

/// How often `--follow` asks for new events.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Environment values shorter than this are not taken for secrets (`info`, `128`).
const MIN_SECRET_LEN: usize = 8;

/// `30s`, `10m`, `2h`, `7d` in seconds.
fn since_seconds(s: &str) -> Option<u64> {
    match s.strip_suffix('s') {
        Some(n) => n.parse().ok().filter(|n| *n > 0),
        None => crate::config::parse_duration(s),
    }
}

/// The values to mask: secret outputs, links' properties, the functions' environments.
fn secrets(state: &StageState) -> Vec<String> {
    let mut out: HashSet<String> = HashSet::new();
    for rs in state.resources.values() {
        for (key, value) in &rs.outputs {
            if rs.kind.is_secret(key) && !value.is_empty() {
                out.insert(value.clone());
            }
        }
        if rs.kind == Kind::Function
            && let Some(env) = rs.inputs.get("environment").and_then(|e| e.as_object())
        {
            for v in env.values().filter_map(|v| v.as_str()) {
                if v.len() >= MIN_SECRET_LEN {
                    out.insert(v.to_owned());
                }
            }
        }
    }
    let mut out: Vec<String> = out.into_iter().collect();
    // Longest first: a URI is masked whole, not around its password.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn mask(message: &str, secrets: &[String]) -> String {
    let mut m = message.to_owned();
    for s in secrets {
        if m.contains(s.as_str()) {
            m = m.replace(s.as_str(), "******");
        }
    }
    m
}

/// The release a stream's events belong to: the version in its name's brackets.
fn release_of(stream: &str) -> &str {
    stream
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or("?", |(v, _)| v)
}

/// `RequestId: <id>` in one of Lambda's own lines.
fn request_id_in(message: &str) -> Option<&str> {
    let rest = message.split_once("RequestId: ")?.1;
    rest.split([' ', '\t']).next()
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub async fn run(config_path: &Path, args: &LogsArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (_env, config) = super::load(config_path, &stage)?;
    let Some(since) = since_seconds(&args.since) else {
        return Err(
            Failure::bad_input(format!("--since {} is not a duration", args.since))
                .hint("write a whole number and s, m, h or d, e.g. --since 10m"),
        );
    };
    let store = super::store_to_read(&config).await?;
    let state = super::load_state(&store, &config, &stage).await?;
    let functions = super::stage_functions(&state, &stage)?;
    // Logs need AWS only: no Neon key.
    let aws = &crate::aws::Aws::connect(config.region.as_deref())
        .await
        .map_err(Failure::bad_input)?;
    let secrets = secrets(&state);
    let now_ms = crate::output::now_unix() as i64 * 1000;
    let mut start = now_ms - since as i64 * 1000;
    for physical in functions.values() {
        let retention = crate::aws::logs::retention_days(&aws.logs, physical)
            .await
            .map_err(Failure::remote)?;
        if let Some(days) = retention
            && since > days as u64 * 86_400
        {
            eprintln!(
                "note: {} keeps events for {days} days (log_retention_days); older ones are gone",
                crate::aws::logs::group_name(physical)
            );
        }
    }
    let many = functions.len() > 1;
    let mut seen: HashSet<String> = HashSet::new();
    let mut request: HashMap<String, String> = HashMap::new();
    let mut any = false;
    loop {
        let mut latest = start;
        for (name, physical) in &functions {
            let Some(events) = crate::aws::logs::events_since(&aws.logs, physical, start)
                .await
                .map_err(Failure::remote)?
            else {
                if !args.follow {
                    eprintln!(
                        "{}: no logs yet (the function has not run)",
                        crate::aws::logs::group_name(physical)
                    );
                }
                continue;
            };
            for e in events {
                latest = latest.max(e.timestamp);
                if !seen.insert(e.id.clone()) {
                    continue;
                }
                let release = release_of(&e.stream);
                if args.release.as_deref().is_some_and(|r| r != release) {
                    continue;
                }
                if e.message.starts_with("START ")
                    && let Some(id) = request_id_in(&e.message)
                {
                    request.insert(e.stream.clone(), id.to_owned());
                }
                let id = request_id_in(&e.message)
                    .map(str::to_owned)
                    .or_else(|| request.get(&e.stream).cloned())
                    .unwrap_or_else(|| "-".to_owned());
                if e.message.starts_with("END ") {
                    request.remove(&e.stream);
                }
                let message = mask(&e.message, &secrets);
                any = true;
                if args.json {
                    let line = serde_json::json!({
                        "time": rfc3339_ms(e.timestamp),
                        "function": name,
                        "release": release,
                        "request_id": id,
                        "message": message,
                    });
                    println!("{line}");
                } else if many {
                    println!(
                        "{} {name} {release} {id} {message}",
                        rfc3339_ms(e.timestamp)
                    );
                } else {
                    println!("{} {release} {id} {message}", rfc3339_ms(e.timestamp));
                }
            }
        }
        if !args.follow {
            if !any {
                eprintln!("No log events in the last {}.", args.since);
            }
            return Ok(());
        }
        // FilterLogEvents' startTime is inclusive: ask from the newest seen, skip repeats.
        start = latest;
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_release_and_request_id_as_lambda_writes_them() {
        assert_eq!(release_of("2026/12/01/[3]0123456789abcdef"), "3");
        assert_eq!(release_of("2026/12/01/[$LATEST]0123"), "$LATEST");
        assert_eq!(
            request_id_in("START RequestId: 8b1f2a3e-4c5d Version: 3"),
            Some("8b1f2a3e-4c5d")
        );
        assert_eq!(
            request_id_in("REPORT RequestId: abc\tDuration: 1.00 ms"),
            Some("abc")
        );
        assert_eq!(since_seconds("30s"), Some(30));
        assert_eq!(since_seconds("10m"), Some(600));
        assert_eq!(since_seconds("soon"), None);
    }

    #[test]
    fn a_secret_is_masked_whole_before_its_parts() {
        let secrets = vec![
            "postgresql://u:npg_secret@h/db".to_owned(),
            "npg_secret".to_owned(),
        ];
        assert_eq!(
            mask(
                "connect postgresql://u:npg_secret@h/db, pw npg_secret",
                &secrets
            ),
            "connect ******, pw ******"
        );
    }
}
