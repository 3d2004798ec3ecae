//! A stage's resources over time, end to end against moto and the Neon emulator: `remove`
//! under each removal policy, protection, import of an existing project, a resource
//! dropped from infra.toml, and a rejected API key.

use deployer::neon::models::CreatedProject;
use deployer::resources::{project, role};
use harness::deploy::{DeployStack, temp_config};
use harness::fixtures::{self, GUIDE_FULL, GUIDE_HONO};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_deletes_everything_or_keeps_neon_data_as_the_policy_says() {
    let stack = DeployStack::start(|_| {}).await;
    // removal = "remove" (the default): everything goes.
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    stack
        .run(&config, &["deploy", "--stage", "gone"])
        .await
        .ok();
    let removed = stack
        .run(&config, &["remove", "--stage", "gone", "--yes"])
        .await
        .ok();
    assert!(
        removed.stdout.contains("Deleted   MyApi aws:Function"),
        "{}",
        removed.stdout
    );
    assert!(
        removed
            .stdout
            .contains("Deleted   MyAppProject neon:Project"),
        "{}",
        removed.stdout
    );
    assert!(
        stack
            .lambda
            .get_function()
            .function_name("aws-hono-gone-MyApi")
            .send()
            .await
            .is_err()
    );
    assert!(stack.projects_named("my-sst-project").await.is_empty());
    assert!(!stack.state_file("gone").exists());

    // removal = "retain": the function goes, the Neon project stays and can be imported.
    let keep = fixtures::read(GUIDE_HONO).with(
        "[stages.production]",
        "[stages.keep]\nremoval = \"retain\"\n\n[stages.production]",
    );
    let (_dir2, config) = temp_config(&keep);
    stack
        .run(&config, &["deploy", "--stage", "keep"])
        .await
        .ok();
    let removed = stack
        .run(&config, &["remove", "--stage", "keep", "--yes"])
        .await
        .ok();
    assert!(
        removed.stdout.contains("Deleted   MyApi aws:Function"),
        "{}",
        removed.stdout
    );
    assert!(
        removed
            .stdout
            .contains("Retained  MyAppProject neon:Project"),
        "{}",
        removed.stdout
    );
    let kept = stack.projects_named("my-sst-project").await;
    assert_eq!(kept.len(), 1, "the data survives");
    let id = &kept[0].id.0;
    assert!(
        removed.stdout.contains(&format!("import = \"{id}\"")),
        "{}",
        removed.stdout
    );
    assert!(
        stack
            .lambda
            .get_function()
            .function_name("aws-hono-keep-MyApi")
            .send()
            .await
            .is_err()
    );

    // Without --yes and without a terminal, nothing is removed.
    stack
        .run(&config, &["deploy", "--stage", "keep2"])
        .await
        .ok();
    let refused = stack.run(&config, &["remove", "--stage", "keep2"]).await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(refused.stderr.contains("pass --yes"));
    assert!(
        stack
            .lambda
            .get_function()
            .function_name("aws-hono-keep2-MyApi")
            .send()
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_stage_refuses_remove_and_data_loss() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    stack
        .run(&config, &["deploy", "--stage", "production"])
        .await
        .ok();
    let refused = stack
        .run(&config, &["remove", "--stage", "production", "--yes"])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains("stage `production` is protected"),
        "{}",
        refused.stderr
    );
    assert!(
        stack
            .lambda
            .get_function()
            .function_name("aws-hono-production-MyApi")
            .send()
            .await
            .is_ok()
    );

    // Replacing the project (a new Postgres version) would lose its data: refused.
    let (_dir2, newer) =
        temp_config(fixtures::read(GUIDE_HONO).with("pg_version = 17", "pg_version = 16"));
    stack.neon.emulator.clear_requests();
    let refused = stack
        .run(&newer, &["deploy", "--stage", "production"])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("would delete or replace: MyAppProject neon:Project"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--allow-data-loss"));
    assert!(
        stack.neon.emulator.requests().iter().all(|r| !r.mutating),
        "refused, yet changed"
    );
    assert_eq!(stack.projects_named("my-sst-project").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_project_is_imported_not_created() {
    let stack = DeployStack::start(|_| {}).await;
    let existing = stack
        .neon
        .client
        .call("POST", "/projects", &[], "", Some(json!({"project": {"name": "legacy-db", "pg_version": 17, "history_retention_seconds": 21600}})))
        .await;
    let id = existing.typed::<CreatedProject>().project.id.0;
    let text = fixtures::read(GUIDE_HONO).with(
        "name = \"my-sst-project\"",
        &format!("name = \"legacy-db\"\nimport = \"{id}\""),
    );
    let (_dir, config) = temp_config(&text);
    stack.neon.emulator.clear_requests();
    let run = stack
        .run(&config, &["deploy", "--stage", "adopt"])
        .await
        .ok();
    assert!(
        run.stdout.contains("Imported  MyAppProject neon:Project"),
        "{}",
        run.stdout
    );
    // Settings that differ from infra.toml are named.
    assert!(
        run.stderr.contains("imported `region_id`"),
        "{}",
        run.stderr
    );
    assert!(
        stack
            .neon
            .emulator
            .requests()
            .iter()
            .all(|r| !(r.method == "POST" && r.path == "/projects"))
    );
    let adopted: project::Ids = stack.recorded_ids("adopt", "MyAppProject");
    assert_eq!(adopted.project_id.0, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_dropped_from_infra_toml_is_deleted_or_retained_by_policy() {
    let stack = DeployStack::start(|_| {}).await;
    let full = fixtures::read(GUIDE_FULL);
    let full = full.as_str();
    let without_db = full[..full.find("[neon.database.ServiceDb]").unwrap()].to_owned();
    let (_a, full_config) = temp_config(full);
    let (_b, smaller) = temp_config(&without_db);
    let database = "/projects/{project_id}/branches/{branch_id}/databases/{database_name}";

    // `[stages.default] removal = "remove"`: the database is deleted; `[stages.production]`
    // removal = "retain" (and protected): it is kept, with the line that adopts it again.
    for (stage, verb, status_after) in [("shrink", "Deleted", 404), ("production", "Retained", 200)]
    {
        stack
            .run(&full_config, &["deploy", "--stage", stage])
            .await
            .ok();
        let ids: role::Ids = stack.recorded_ids(stage, "ServiceDb");
        let (pid, bid) = (ids.project_id.0, ids.branch_id.0);
        let run = stack
            .run(&smaller, &["deploy", "--stage", stage])
            .await
            .ok();
        assert!(
            run.stdout
                .contains(&format!("{verb:<9} ServiceDb neon:Database")),
            "{}",
            run.stdout
        );
        if verb == "Retained" {
            assert!(
                run.stdout
                    .contains(&format!("import = \"{pid}/{bid}/service_database\"")),
                "{}",
                run.stdout
            );
        }
        let after = stack
            .neon
            .client
            .call("GET", database, &[&pid, &bid, "service_database"], "", None)
            .await;
        assert_eq!(after.status, status_after, "{stage}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_api_key_fails_at_once_with_a_hint() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    let out = stack
        .command(&config, &["deploy", "--stage", "badkey"])
        .env("NEON_API_KEY", "not-the-key")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Neon answered 401"), "{stderr}");
    assert!(stderr.contains("hint: check NEON_API_KEY"), "{stderr}");
    assert!(!stderr.contains("not-the-key"), "the key was printed");
    // No retry of a 401.
    assert_eq!(
        stack.neon.emulator.requests().len(),
        1,
        "{:?}",
        stack.neon.emulator.requests()
    );
}
