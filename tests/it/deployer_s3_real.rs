//! What real S3 does that moto alone would not show, for state shared in S3: a preview stage
//! writes its own object on its own ETag while it reads its base stage's, and a team bucket
//! whose policy keeps SSE-KMS takes the state (the deployer sends no encryption header).
//! The behaviours moto lacks are modelled in the harness's proxy (`aws_model`).

use harness::deploy::{DeployStack, temp_config};
use harness::fixtures;

/// A preview stage with S3 state, as the preview workflow runs it: its first deploy writes
/// a state object that does not exist yet, while the run has read the base stage's. Each
/// object is written on its own ETag (real S3 and moto answer 404 to `If-Match` on a
/// missing key, and 412 to another object's ETag), and prod's state is never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_stage_deploys_redeploys_and_is_removed_with_s3_state() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read("infra/guide-preview-s3.toml"));
    stack
        .run(&config, &["deploy", "--stage", "prod"])
        .await
        .ok();
    let (_, prod_etag) = stack.state_object("prod", "state.json").await.unwrap();

    let first = stack
        .run(&config, &["deploy", "--stage", "pr-7"])
        .await
        .ok();
    assert!(
        first.stdout.contains("Created   MyAppProject neon:Project"),
        "{}",
        first.stdout
    );
    let (state, _) = stack.state_object("pr-7", "state.json").await.unwrap();
    assert_eq!(
        state["resources"]["MyAppProject"]["kind"], "Preview",
        "{state:#}"
    );
    let again = stack
        .run(&config, &["deploy", "--stage", "pr-7"])
        .await
        .ok();
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);

    stack
        .run(&config, &["remove", "--stage", "pr-7", "--yes"])
        .await
        .ok();
    assert!(stack.state_object("pr-7", "state.json").await.is_none());
    let (_, prod_etag_after) = stack.state_object("prod", "state.json").await.unwrap();
    assert_eq!(prod_etag, prod_etag_after, "a preview wrote prod's state");
    assert_eq!(stack.projects_named("my-sst-project").await.len(), 1);
}

/// A team's bucket whose policy denies SSE-S3 (it keeps SSE-KMS): the deployer sends no
/// encryption header, so the bucket's default applies and the state is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_denies_sse_s3_takes_the_state_with_its_own_encryption() {
    let stack = DeployStack::start(|_| {}).await;
    stack.aws.model().s3_denies_sse_s3 = true;
    let (_dir, config) = temp_config(fixtures::read("infra/guide-s3-state.toml"));
    stack.run(&config, &["deploy", "--stage", "kms"]).await.ok();
    assert!(stack.state_object("kms", "state.json").await.is_some());
    let puts: Vec<_> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/kms/state.json"))
        .collect();
    assert!(!puts.is_empty(), "no state write went through the proxy");
}
