//! Releases through the binary, against moto and the harness's Lambda model (which runs the
//! uploaded code): each change a Lambda version behind the alias `live`, checked before it
//! serves; an unchanged redeploy publishes nothing; `rollback` is one call; a release that
//! fails its check never serves; a URL that answers 403 after the release is caught.

use harness::deploy::DeployStack;
use harness::fixtures;

const FUNCTION: &str = "aws-hono-e2e-MyApi";

/// The Lambda calls of the last run that change something, as `METHOD path`.
fn mutating_lambda_calls(stack: &DeployStack) -> Vec<String> {
    stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating() && c.action.is_none() && c.path.contains("/functions"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

async fn releases(stack: &DeployStack, config: &std::path::Path) -> serde_json::Value {
    let out = stack
        .run(config, &["releases", "--stage", "e2e", "--json"])
        .await
        .ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["MyApi"].clone()
}

fn live(releases: &serde_json::Value) -> String {
    releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["live"] == true)
        .map(|r| r["version"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_a_checked_release_behind_live_and_rollback_is_one_call() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) =
        harness::deploy::temp_config(fixtures::guide_with_function_lines("smoke = \"/version\""));
    let first = stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    assert!(
        first.stdout.contains("Released  MyApi version 1"),
        "{}",
        first.stdout
    );
    let url = stack.state("e2e").resources["MyApi"].outputs["url"].clone();
    let (status, body) = stack.aws.get_url(&url, "/version").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("PostgreSQL"), "{body}");
    assert_eq!(stack.aws.executor().served().last().unwrap(), "1");
    let r = releases(&stack, &config).await;
    assert_eq!(live(&r), "1");
    assert_eq!(r[0]["check"], "passed");

    // A configuration change: version 2, same URL.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("url = true\n", "url = true\nmemory = 256\n"),
    )
    .unwrap();
    let second = stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    assert!(
        second.stdout.contains("Released  MyApi version 2"),
        "{}",
        second.stdout
    );
    assert_eq!(stack.state("e2e").resources["MyApi"].outputs["url"], url);
    assert_eq!(stack.aws.get_url(&url, "/").await.0, 200);
    assert_eq!(stack.aws.executor().served().last().unwrap(), "2");

    // Unchanged: nothing published, nothing moved.
    stack.aws.clear();
    stack.assert_no_changes(&config, "e2e").await;
    assert!(
        mutating_lambda_calls(&stack).is_empty(),
        "{:?}",
        mutating_lambda_calls(&stack)
    );

    // Rollback: one UpdateAlias, the same URL serving version 1.
    stack.aws.clear();
    let back = stack
        .run(&config, &["rollback", "--stage", "e2e"])
        .await
        .ok();
    assert!(
        back.stdout.contains("MyApi: live is now version 1"),
        "{}",
        back.stdout
    );
    let all_mutating: Vec<_> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .collect();
    assert_eq!(all_mutating.len(), 1, "{all_mutating:?}");
    assert!(
        all_mutating[0].path.ends_with("/aliases/live"),
        "{:?}",
        all_mutating[0]
    );
    assert_eq!(stack.aws.get_url(&url, "/").await.0, 200);
    assert_eq!(stack.aws.executor().served().last().unwrap(), "1");

    // A deploy of version 2's code and configuration points live back at it, publishing
    // no copy.
    stack.aws.clear();
    let again = stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    assert!(
        again
            .stdout
            .contains("Released  MyApi version 2 (published before)"),
        "{}",
        again.stdout
    );
    assert!(
        !mutating_lambda_calls(&stack)
            .iter()
            .any(|c| c.ends_with("/versions")),
        "{:?}",
        mutating_lambda_calls(&stack)
    );
    assert_eq!(live(&releases(&stack, &config).await), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_its_check_never_serves() {
    let stack = DeployStack::start(|_| {}).await;
    let (dir, config) =
        harness::deploy::temp_config(fixtures::guide_with_function_lines("smoke = \"/version\""));
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    let url = stack.state("e2e").resources["MyApi"].outputs["url"].clone();

    // A bootstrap that exits at once (a binary that is not a Lambda runtime).
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(broken.join("api")).unwrap();
    std::fs::copy("/bin/true", broken.join("api/bootstrap")).unwrap();
    let mut cmd = stack.command(&config, &["deploy", "--stage", "e2e"]);
    cmd.env("DEPLOYER_ARTIFACT_DIR", &broken);
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the new code failed its check, GET /version"),
        "{stderr}"
    );
    assert!(stderr.contains("Runtime.ExitError"), "{stderr}");
    assert!(
        stderr.contains("`live` still serves the previous release"),
        "{stderr}"
    );
    let (status, body) = stack.aws.get_url(&url, "/version").await;
    assert_eq!(status, 200, "the previous release still answers: {body}");
    assert_eq!(stack.aws.executor().served().last().unwrap(), "1");

    // A release whose /version answers 500 (its database is unreachable) is refused too,
    // with the start of its answer and no secret.
    let text = std::fs::read_to_string(&config).unwrap();
    let unreachable = text.replace(
        "connection_string = \"${MyAppProject.connection_uri}\"",
        "connection_string = \"postgresql://app:s3cret-password@127.0.0.1:1/app?connect_timeout=2\"",
    );
    assert_ne!(text, unreachable);
    std::fs::write(&config, unreachable).unwrap();
    let failed = stack.run(&config, &["deploy", "--stage", "e2e"]).await;
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(
        failed.stderr.contains("failed its check, GET /version: 5"),
        "{}",
        failed.stderr
    );
    assert!(
        !failed.all().contains("s3cret-password"),
        "{}",
        failed.all()
    );
    assert_eq!(stack.aws.get_url(&url, "/version").await.0, 200);
    let r = releases(&stack, &config).await;
    assert_eq!(
        r.as_array().unwrap().len(),
        1,
        "nothing failed was published: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_answers_403_after_the_release_is_caught() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = harness::deploy::temp_config(fixtures::read(fixtures::GUIDE_HONO));
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();

    // An organisation's policy now denies the URL: the next release's check of the URL
    // itself fails, saying what to look at.
    stack.aws.executor().deny_urls(true);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("url = true\n", "url = true\nmemory = 256\n"),
    )
    .unwrap();
    let denied = stack.run(&config, &["deploy", "--stage", "e2e"]).await;
    assert_eq!(denied.code, 1, "{}", denied.all());
    assert!(
        denied.stderr.contains("answers 403 Forbidden"),
        "{}",
        denied.stderr
    );
    assert!(
        denied
            .stderr
            .contains("hint: `deployer refresh` shows what the URL lacks"),
        "{}",
        denied.stderr
    );

    // A permission removed by hand is put back by the next deploy, and the URL answers.
    stack.aws.executor().deny_urls(false);
    stack
        .lambda
        .remove_permission()
        .function_name(FUNCTION)
        .qualifier("live")
        .statement_id("FunctionURLAllowPublicAccess")
        .send()
        .await
        .unwrap();
    let url = stack.state("e2e").resources["MyApi"].outputs["url"].clone();
    assert_eq!(stack.aws.get_url(&url, "/").await.0, 403);
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    assert_eq!(stack.aws.get_url(&url, "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_made_before_releases_moves_to_live_once_allowed_and_the_old_one_goes_after() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = harness::deploy::temp_config(fixtures::read(fixtures::GUIDE_HONO));
    stack
        .run(&config, &["deploy", "--stage", "production"])
        .await
        .ok();
    // Make the stage as a deployer before releases left it: the URL and its two
    // permissions on the function itself, no alias, inputs without `url_on`.
    let function = "aws-hono-production-MyApi";
    let l = &stack.lambda;
    l.delete_function_url_config()
        .function_name(function)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    l.delete_alias()
        .function_name(function)
        .name("live")
        .send()
        .await
        .unwrap();
    let old = l
        .create_function_url_config()
        .function_name(function)
        .auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
        .send()
        .await
        .unwrap()
        .function_url()
        .to_owned();
    l.add_permission()
        .function_name(function)
        .statement_id("FunctionURLAllowPublicAccess")
        .action("lambda:InvokeFunctionUrl")
        .principal("*")
        .function_url_auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
        .send()
        .await
        .unwrap();
    l.add_permission()
        .function_name(function)
        .statement_id("FunctionURLInvokeAllowPublicAccess")
        .action("lambda:InvokeFunction")
        .principal("*")
        .invoked_via_function_url(true)
        .send()
        .await
        .unwrap();
    let file = stack.state_file("production");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let api = &mut state["resources"]["MyApi"];
    for field in ["url_on", "smoke", "keep_releases"] {
        api["inputs"].as_object_mut().unwrap().remove(field);
    }
    api["outputs"]["url"] = serde_json::json!(old);
    api["outputs"].as_object_mut().unwrap().remove("version");
    std::fs::write(&file, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    assert_eq!(stack.aws.get_url(&old, "/").await.0, 200);

    let diff = stack
        .run(&config, &["diff", "--stage", "production"])
        .await
        .ok();
    assert!(
        diff.stdout
            .contains("url_on: the URL is replaced by the alias `live`'s (a new hostname)"),
        "{}",
        diff.stdout
    );
    let refused = stack
        .run(&config, &["deploy", "--stage", "production"])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains("hint: pass --allow-url-change"),
        "{}",
        refused.stderr
    );
    assert_eq!(stack.aws.get_url(&old, "/").await.0, 200, "nothing changed");

    stack
        .run(
            &config,
            &["deploy", "--stage", "production", "--allow-url-change"],
        )
        .await
        .ok();
    let new = stack.state("production").resources["MyApi"].outputs["url"].clone();
    assert_ne!(new, old, "a new hostname");
    assert_eq!(stack.aws.get_url(&new, "/").await.0, 200);
    assert_eq!(
        stack.aws.get_url(&old, "/").await.0,
        403,
        "the old URL is gone"
    );
    assert!(
        l.get_function_url_config()
            .function_name(function)
            .send()
            .await
            .is_err()
    );
    stack.assert_no_changes(&config, "production").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_names_the_migrations_that_stay_and_old_releases_are_pruned() {
    let stack = DeployStack::start(|_| {}).await;
    let (dir, config) = fixtures::with_migrations(fixtures::GUIDE_HONO, "");
    // The fixture as written, with the memory of each release and keep_releases = 2.
    let original = std::fs::read_to_string(&config).unwrap();
    let set_memory = |mb: u32| {
        let lines = format!("url = true\nmemory = {mb}\nkeep_releases = 2\n");
        std::fs::write(&config, original.replace("url = true\n", &lines)).unwrap();
    };
    set_memory(128);
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    // Release 2 comes with a third migration.
    std::fs::copy(
        harness::paths::fixture("migrations/extra/20260103000000_index_author.sql"),
        dir.path()
            .join("migrations/20260103000000_index_author.sql"),
    )
    .unwrap();
    set_memory(256);
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    let back = stack
        .run(&config, &["rollback", "--stage", "e2e"])
        .await
        .ok();
    assert!(
        back.stdout.contains("MyApi: live is now version 1"),
        "{}",
        back.stdout
    );
    assert!(
        back.stdout.contains(
            "note: MyAppProject/migrations: migrations are not undone; 20260103000000_index_author.sql stay applied"
        ),
        "{}",
        back.stdout
    );

    // Two more releases with keep_releases = 2: the oldest go, never live or the one before.
    set_memory(512);
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    set_memory(1024);
    let fourth = stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    assert!(
        fourth.stdout.contains("Released  MyApi version 4"),
        "{}",
        fourth.stdout
    );
    let kept: Vec<String> = releases(&stack, &config)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, ["4", "3"], "{}", fourth.all());
    assert!(
        fourth
            .stderr
            .contains("deleted version 2 (keep_releases = 2)"),
        "{}",
        fourth.stderr
    );
}
