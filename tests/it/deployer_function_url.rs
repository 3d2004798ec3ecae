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

    // Without the InvokeFunction statement (AWS's October 2025 rule), the URL is refused.
    stack
        .lambda
        .remove_permission()
        .function_name(FUNCTION)
        .statement_id("FunctionURLInvokeAllowPublicAccess")
        .send()
        .await
        .expect("remove the statement");
    let (status, body) = stack.aws.get_url(url, "/version").await;
    assert_eq!((status, body.as_str()), (403, r#"{"Message":"Forbidden"}"#));
    // The next deploy puts it back, and the URL answers again.
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    assert_eq!(stack.aws.get_url(url, "/").await.0, 200);
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
