//! The guide's last step as a user takes it: deploy, then request the function URL and get
//! `/version` from the database. The harness's proxy answers for function URLs by their
//! hostname and runs the uploaded `bootstrap` (moto cannot invoke functions), with the
//! function's environment as moto holds it, and answers 403 as a real URL does when a
//! permission statement is missing.

use harness::deploy::DeployStack;
use harness::fixtures::GUIDE_HONO;
use harness::paths::fixture;

const FUNCTION: &str = "aws-hono-e2e-MyApi";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_deploy_the_function_url_answers_version_from_the_database() {
    let stack = DeployStack::start(|_| {}).await;
    let config = fixture(GUIDE_HONO);
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    let outputs = stack
        .run(&config, &["outputs", "--stage", "e2e", "--json"])
        .await
        .ok();
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).unwrap();
    let url = outputs["MyApi"]["url"].as_str().expect("a function URL");

    let (status, body) = stack.aws.get_url(url, "/").await;
    assert_eq!((status, body.as_str()), (200, "Hello Hono!"));
    let (status, body) = stack.aws.get_url(url, "/version").await;
    assert_eq!(status, 200, "{body}");
    let version: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        version["version"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL "),
        "{body}"
    );

    // What the function printed is in its log group, between Lambda's own lines.
    let events = log_messages(&stack, &format!("/aws/lambda/{FUNCTION}")).await;
    for line in ["START RequestId: ", "END RequestId: ", "REPORT RequestId: "] {
        assert!(
            events.iter().any(|e| e.starts_with(line)),
            "{line}: {events:?}"
        );
    }

    // `deployer logs`: those lines, each with its release and request ID.
    let logs = stack.run(&config, &["logs", "--stage", "e2e"]).await.ok();
    // The URL serves the release `live` points at: version 1.
    let start = logs
        .stdout
        .lines()
        .find(|l| l.contains(" START RequestId: ") && l.ends_with("Version: 1"))
        .unwrap_or_else(|| panic!("{}", logs.all()));
    let words: Vec<&str> = start.split(' ').collect();
    assert_eq!(words[1], "1", "{start}");
    assert_eq!(words[5], words[2], "the line names its request: {start}");
    assert!(
        logs.stdout
            .lines()
            .any(|l| l.contains(&format!("{} REPORT RequestId: ", words[2])))
    );

    // The URL's first request started an instance of version 1 (its REPORT has the
    // init's duration); the next ones found it warm.
    let json = stack
        .run(
            &config,
            &["logs", "--stage", "e2e", "--release", "1", "--json"],
        )
        .await
        .ok();
    let reports: Vec<String> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["release"] == "1")
        .map(|v| v["message"].as_str().unwrap().to_owned())
        .filter(|m| m.starts_with("REPORT"))
        .collect();
    assert!(reports.len() >= 2, "{reports:?}");
    assert!(reports[0].contains("Init Duration"), "cold: {reports:?}");
    assert!(
        reports[1..].iter().all(|r| !r.contains("Init Duration")),
        "warm: {reports:?}"
    );

    // A secret the function logged is masked: the connection string it was linked.
    let secret = stack.state("e2e").resources["MyAppProject"].outputs["connection_uri"].clone();
    put_log_line(&stack, &format!("oops, connecting to {secret}")).await;
    let logs = stack
        .run(&config, &["logs", "--stage", "e2e", "--since", "1h"])
        .await
        .ok();
    assert!(
        logs.stdout.contains("oops, connecting to ******"),
        "{}",
        logs.stdout
    );
    assert!(!logs.all().contains(&secret));
    let password =
        stack.state("e2e").resources["MyAppProject"].outputs["database_password"].clone();
    assert!(!logs.all().contains(&password));

    // Further back than the log group keeps events (14 days): said so.
    let far = stack
        .run(&config, &["logs", "--stage", "e2e", "--since", "30d"])
        .await
        .ok();
    assert!(
        far.stderr
            .contains("keeps events for 14 days (log_retention_days)"),
        "{}",
        far.stderr
    );

    // `--follow` shows a new request's lines within two seconds.
    let mut follow = stack.command(&config, &["logs", "--stage", "e2e", "--follow", "--json"]);
    follow.stdout(std::process::Stdio::piped());
    let mut child = follow.spawn().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    // What is there already comes first; then one more request.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (status, _) = stack.aws.get_url(url, "/").await;
    assert_eq!(status, 200);
    let asked = std::time::Instant::now();
    let reports = async {
        let mut n = 0;
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["message"].as_str().unwrap().starts_with("REPORT") {
                n += 1;
                if n == 3 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reports)
        .await
        .expect("the new request's REPORT line");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    child.kill().await.unwrap();

    // Without the InvokeFunction statement (AWS's October 2025 rule), the URL is refused.
    stack
        .lambda
        .remove_permission()
        .function_name(FUNCTION)
        .statement_id("FunctionURLInvokeAllowPublicAccess")
        .qualifier("live")
        .send()
        .await
        .expect("remove the statement");
    let (status, body) = stack.aws.get_url(url, "/version").await;
    assert_eq!((status, body.as_str()), (403, r#"{"Message":"Forbidden"}"#));
    // The next deploy puts it back, and the URL answers again.
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    assert_eq!(stack.aws.get_url(url, "/").await.0, 200);
}

/// A line in the function's log group, as the function would print it.
async fn put_log_line(stack: &DeployStack, line: &str) {
    let group = format!("/aws/lambda/{FUNCTION}");
    let stream = "2026/12/01/[$LATEST]00000000000000000000000000000001";
    stack
        .logs
        .create_log_stream()
        .log_group_name(&group)
        .log_stream_name(stream)
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    stack
        .logs
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name(stream)
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now)
                .message(line)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Every message of the log group, oldest first.
async fn log_messages(stack: &DeployStack, group: &str) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..50 {
        out = stack
            .logs
            .filter_log_events()
            .log_group_name(group)
            .send()
            .await
            .map(|r| {
                r.events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if out.iter().any(|e| e.starts_with("REPORT")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    out
}

/// `scripts/offline --check`: the whole guide with no account. The offline binary starts
/// its own emulator and moto, deploys this repository's infra.toml, and `/version` answers
/// at a local address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_guide_deploys_this_repos_infra_toml_and_serves_version_locally() {
    // Built once for the whole test run (the offline run then finds it built).
    harness::deploy::lambda_artifacts();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("infra.toml");
    std::fs::copy(harness::paths::workspace_root().join("infra.toml"), &config).unwrap();
    let port = harness::pg::free_port().to_string();
    let out = tokio::process::Command::new(harness::paths::workspace_bin("offline"))
        .args(["--check", "--port", &port, "--config"])
        .arg(&config)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Released  MyApi version 1"), "{stdout}");
    assert!(
        stdout.contains(&format!("served at http://127.0.0.1:{port}/")),
        "{stdout}"
    );
    assert!(stdout.contains(r#"{"version":"PostgreSQL "#), "{stdout}");
}
