//! The api binary under a Lambda Runtime API, fed recorded function-URL events.

use std::time::Duration;

use harness::paths::workspace_bin;
use harness::pg::PgCluster;
use harness::process::{Spawned, clean_command};
use harness::runtime_api::{Outcome, RuntimeApi};
use serde_json::Value;

use harness::fixtures::event;

async fn response(runtime: &RuntimeApi, name: &str) -> Value {
    match runtime.invoke(event(name), Duration::from_secs(20)).await {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("{name}: the function reported an error: {e}"),
    }
}

/// The api binary under `runtime`, linked to a fresh database, with `extra` variables.
async fn function(runtime: &RuntimeApi, pg: &PgCluster, extra: &[(&str, &str)]) -> Spawned {
    pg.create_app_db("app", "lambda-pw", "appdb").await;
    let link = serde_json::json!({
        "connection_string": pg.url("app", "lambda-pw", "appdb", "sslmode=require&channel_binding=require")
    })
    .to_string();
    let mut env: std::collections::BTreeMap<String, String> = runtime
        .function_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert("LINK_NeonDB".into(), link);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Spawned::start(clean_command(&workspace_bin("api"), &env))
}

#[tokio::test]
async fn function_url_events_get_function_url_responses() {
    let pg = PgCluster::start();
    let runtime = RuntimeApi::start().await;
    let function = function(&runtime, &pg, &[]).await;

    let version = response(&runtime, "function-url-get-version.json").await;
    assert_eq!(
        version["statusCode"],
        200,
        "{version}\n{}",
        function.output()
    );
    assert_eq!(version["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(version["body"].as_str().unwrap()).unwrap();
    assert!(
        body["version"].as_str().unwrap().starts_with("PostgreSQL "),
        "{body}"
    );

    let root = response(&runtime, "function-url-get-root.json").await;
    assert_eq!(root["statusCode"], 200);
    assert_eq!(root["body"], "Hello Hono!");
    assert_eq!(root["headers"]["content-type"], "text/plain; charset=utf-8");

    let unknown = response(&runtime, "function-url-get-unknown.json").await;
    assert_eq!(unknown["statusCode"], 404);
    assert_eq!(unknown["body"], r#"{"error":"not found"}"#);

    let post = response(&runtime, "function-url-post-version.json").await;
    assert_eq!(post["statusCode"], 405);

    // On Lambda the logs are JSON lines for CloudWatch, and hold no secret.
    let logs = function.output();
    assert!(!logs.contains("lambda-pw"));
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

/// Lambda Managed Instances (and `cargo lambda watch`) set AWS_LAMBDA_MAX_CONCURRENCY: one
/// instance then serves that many invocations at once, without the runtime's warning that
/// it would run them one by one.
#[tokio::test]
async fn an_instance_serves_concurrent_invocations_when_lambda_allows_them() {
    let pg = PgCluster::start();
    let runtime = RuntimeApi::start().await;
    let function = function(&runtime, &pg, &[("AWS_LAMBDA_MAX_CONCURRENCY", "4")]).await;
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(runtime.submit(event("function-url-get-version.json")).await);
    }
    for answer in answers {
        match tokio::time::timeout(Duration::from_secs(20), answer).await {
            Ok(Ok(Outcome::Response(v))) => assert_eq!(v["statusCode"], 200, "{v}"),
            other => panic!("{other:?}\n{}", function.output()),
        }
    }
    let logs = function.output();
    assert!(!logs.contains("running sequentially"), "{logs}");
}
