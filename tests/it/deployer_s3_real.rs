//! What real S3 does that moto alone would not show, for state shared in S3: a preview stage
//! writes its own object on its own ETag while it reads its base stage's, and a team bucket
//! whose policy keeps SSE-KMS takes the state (the deployer sends no encryption header).
//! Also: a bucket another account owns, a bucket in another region, a new bucket's
//! versioning lag, and replies lost after the write applied. The behaviours moto lacks are
//! modelled in the harness's proxy (`s3_model`).

use harness::deploy::{DeployStack, STATE_BUCKET, temp_config};
use harness::fixtures;
use harness::paths::workspace_root;
use harness::s3_model::S3Policy;

/// A CI role's policy from `docs/ci/`, for the fixtures' bucket, prefix and app.
fn ci_policy(file: &str) -> S3Policy {
    let path = workspace_root().join("docs/ci").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    S3Policy::parse(
        &text,
        &[
            ("BUCKET", STATE_BUCKET),
            ("PREFIX", "team"),
            ("APP", "aws-hono"),
        ],
    )
}

/// A preview stage with S3 state, as the preview workflow runs it: its first deploy writes
/// a state object that does not exist yet, while the run has read the base stage's. Each
/// object is written on its own ETag (real S3 and moto answer 404 to `If-Match` on a
/// missing key, and 412 to another object's ETag), and prod's state is never written.
/// Prod redeploys under prod's CI role and the preview deploys, prunes and is removed
/// under the preview's, as `docs/ci/` writes their policies (S3 refusing what they do not
/// allow): the preview reads prod's secret-free `base.json`, never prod's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_stage_deploys_redeploys_and_is_removed_with_s3_state() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read("infra/guide-preview-s3.toml"));
    stack
        .run(&config, &["deploy", "--stage", "prod"])
        .await
        .ok();
    // What previews read of prod: IDs and names, no secret.
    let (base, _) = stack.state_object("prod", "base.json").await.unwrap();
    let project = &base["resources"]["MyAppProject"];
    assert!(project["ids"]["project_id"].is_string(), "{base:#}");
    assert!(
        project["outputs"]["default_branch_id"].is_string(),
        "{base:#}"
    );
    let text = base.to_string();
    for secret in ["password", "connection_uri", "postgres"] {
        assert!(!text.contains(secret), "{secret} in base.json: {base:#}");
    }
    // Prod's CI role, as docs/ci/prod-permissions.json has it, redeploys prod.
    stack.aws.model().s3.policy = Some(ci_policy("prod-permissions.json"));
    stack.assert_no_changes(&config, "prod").await;
    let (_, prod_etag) = {
        stack.aws.model().s3.policy = None;
        stack.state_object("prod", "state.json").await.unwrap()
    };
    // The preview's CI role (docs/ci/preview-permissions.json) does the rest: it may not
    // read prod's state, which holds prod's passwords.
    let preview_role = ci_policy("preview-permissions.json");
    assert!(!preview_role.allows(
        "s3:GetObject",
        &format!("arn:aws:s3:::{STATE_BUCKET}/team/aws-hono/prod/state.json")
    ));
    stack.aws.model().s3.policy = Some(preview_role);

    let first = stack
        .run(&config, &["deploy", "--stage", "pr-7"])
        .await
        .ok();
    assert!(
        first.stdout.contains("Created   MyAppProject neon:Project"),
        "{}",
        first.stdout
    );
    let (state, _) = {
        stack.aws.model().s3.policy = None;
        let read = stack.state_object("pr-7", "state.json").await.unwrap();
        stack.aws.model().s3.policy = Some(ci_policy("preview-permissions.json"));
        read
    };
    assert_eq!(
        state["resources"]["MyAppProject"]["kind"], "Preview",
        "{state:#}"
    );
    stack.assert_no_changes(&config, "pr-7").await;
    // The daily prune lists every stage, prod by its base.json.
    stack
        .run(&config, &["prune", "--older-than", "7d", "--yes"])
        .await
        .ok();

    stack
        .run(&config, &["remove", "--stage", "pr-7", "--yes"])
        .await
        .ok();
    stack.aws.model().s3.policy = None;
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
    stack.aws.model().s3.denies_sse_s3 = true;
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

/// The account moto answers STS with: the one that must own the state bucket.
const ACCOUNT: &str = "123456789012";

/// A bucket another account made first: with `ExpectedBucketOwner` on its calls, the
/// deployer is refused (403) and stops before any other call, naming whose bucket it is not
/// (exit 2). Without it, the bucket's permissive policy would have taken the state and its
/// passwords. Both the predictable default name and a named bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_bucket_another_account_owns_gets_no_write_and_no_resource_is_made() {
    let stack = DeployStack::start(|_| {}).await;
    for bucket in [STATE_BUCKET, "team-state"] {
        stack
            .s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        stack
            .aws
            .model()
            .s3
            .foreign
            .insert(bucket.to_owned(), "999988887777".to_owned());
    }
    let default = fixtures::read("infra/guide-s3-state.toml");
    let named = fixtures::read("infra/guide-s3-state.toml").with(
        "prefix = \"team\"",
        "bucket = \"team-state\"\nprefix = \"team\"",
    );
    for (text, bucket, hint) in [
        (default, STATE_BUCKET, "the deployer's default name"),
        (
            named,
            "team-state",
            "name a bucket account 123456789012 owns",
        ),
    ] {
        let (_dir, config) = temp_config(text.as_str());
        stack.aws.clear();
        stack.neon.emulator.clear_requests();
        let run = stack.run(&config, &["deploy", "--stage", "dev"]).await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "the state bucket `{bucket}` is not owned by AWS account {ACCOUNT}"
            )),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(hint), "{}", run.stderr);
        let calls = stack.aws.calls();
        let mutating: Vec<_> = calls.iter().filter(|c| c.mutating()).collect();
        assert!(mutating.is_empty(), "{mutating:#?}");
        assert!(
            calls
                .iter()
                .filter(|c| c.path.starts_with(&format!("/{bucket}")))
                .all(|c| c.expected_owner.as_deref() == Some(ACCOUNT)),
            "{calls:#?}"
        );
        assert!(stack.neon.emulator.requests().is_empty());
    }
}

/// Every call on the state bucket the deployer makes carries `ExpectedBucketOwner`, but
/// CreateBucket, which takes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_on_the_state_bucket_names_the_account_that_must_own_it() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read("infra/guide-s3-state.toml"));
    stack.run(&config, &["deploy", "--stage", "dev"]).await.ok();
    stack
        .run(&config, &["remove", "--stage", "dev", "--yes"])
        .await
        .ok();
    // A stage never deployed: `remove` leaves no object behind (not even the empty state
    // it creates to tell a missing state from one S3 hides).
    let never = stack
        .run(&config, &["remove", "--stage", "never", "--yes"])
        .await
        .ok();
    assert!(
        never.stdout.contains("has nothing deployed"),
        "{}",
        never.stdout
    );
    let calls = stack.aws.calls();
    assert!(stack.state_object("never", "state.json").await.is_none());
    assert!(stack.state_object("dev", "state.json").await.is_none());
    assert!(stack.state_object("dev", "base.json").await.is_none());
    let on_bucket: Vec<_> = calls
        .into_iter()
        .filter(|c| c.path.starts_with(&format!("/{STATE_BUCKET}")))
        .collect();
    assert!(on_bucket.len() > 10, "{on_bucket:#?}");
    let create_bucket = |c: &harness::aws::AwsCall| {
        c.method == "PUT"
            && c.path.trim_end_matches('/') == format!("/{STATE_BUCKET}")
            && c.query.is_empty()
    };
    let without: Vec<_> = on_bucket
        .iter()
        .filter(|c| !create_bucket(c) && c.expected_owner.as_deref() != Some(ACCOUNT))
        .collect();
    assert!(without.is_empty(), "{without:#?}");
}

/// A team's central bucket in another region than the app: S3 answers the app region's
/// client with 301 and `x-amz-bucket-region` (the Rust SDK does not follow it), and the
/// deployer uses a client for the bucket's region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_bucket_in_another_region_is_used_through_its_region() {
    let stack = DeployStack::start(|_| {}).await;
    stack
        .s3
        .create_bucket()
        .bucket("central-state")
        .send()
        .await
        .unwrap();
    stack
        .aws
        .model()
        .s3
        .regions
        .insert("central-state".to_owned(), "eu-central-1".to_owned());
    stack.aws.clear();
    let (_dir, config) = temp_config(fixtures::read("infra/guide-s3-state.toml").with(
        "prefix = \"team\"",
        "bucket = \"central-state\"\nprefix = \"team\"",
    ));
    stack.run(&config, &["deploy", "--stage", "dev"]).await.ok();
    stack.assert_no_changes(&config, "dev").await;
    let in_its_region = aws_sdk_s3::Client::from_conf(
        stack
            .s3
            .config()
            .to_builder()
            .region(aws_sdk_s3::config::Region::new("eu-central-1"))
            .build(),
    );
    in_its_region
        .head_object()
        .bucket("central-state")
        .key("team/aws-hono/dev/state.json")
        .send()
        .await
        .expect("the state is in the central bucket");
    let writes: Vec<_> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/central-state/") && c.method == "PUT")
        .collect();
    assert!(!writes.is_empty());
    assert!(
        writes.iter().all(|c| c
            .authorization
            .as_deref()
            .is_some_and(|a| a.contains("/eu-central-1/s3/aws4_request"))),
        "{writes:#?}"
    );
}

/// Right after a bucket's versioning is first enabled, S3 may answer 404 to reads of the
/// objects written since (modelled for 12 s, from the bucket's creation in the first deploy). A second deploy inside that window
/// finds the stage's state anyway (its create of the state answers 412, so it reads again)
/// and plans "No changes." instead of making every resource a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_hidden_by_a_new_buckets_versioning_lag_is_read_again_not_deployed_over() {
    let stack = DeployStack::start(|_| {}).await;
    stack.aws.model().s3.versioning_lag = std::time::Duration::from_secs(12);
    let (_dir, config) = temp_config(fixtures::read("infra/guide-s3-state.toml"));
    stack.run(&config, &["deploy", "--stage", "dev"]).await.ok();
    let hidden = stack
        .s3
        .get_object()
        .bucket(STATE_BUCKET)
        .key("team/aws-hono/dev/state.json")
        .send()
        .await;
    stack.assert_no_changes(&config, "dev").await;
    assert_eq!(stack.projects_named("my-sst-project").await.len(), 1);
    assert!(
        hidden.is_err(),
        "the state was readable right after the first deploy: it outlasted the modelled lag, and this test shows nothing"
    );
}

/// Replies lost after S3 applied the write (the SDK sends it again, and the retry meets
/// the write itself, 412): the lock's create and the state's writes are recognised as this
/// run's, so the deploy neither reports itself as the lock's holder nor a race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_reply_was_lost_is_known_as_this_runs_own() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read("infra/guide-s3-state.toml"));
    stack.run(&config, &["deploy", "--stage", "dev"]).await.ok();
    stack.aws.model().s3.lose_reply_to = ["lock.json", "state.json"].map(str::to_owned).to_vec();
    let (_dir2, changed) = temp_config(fixtures::read("infra/guide-s3-state.toml").with(
        "history_retention_seconds = 21600",
        "history_retention_seconds = 7200",
    ));
    let run = stack
        .run(&changed, &["deploy", "--stage", "dev"])
        .await
        .ok();
    assert!(run.stdout.contains("Updated"), "{}", run.stdout);
    assert!(
        stack.aws.model().s3.lose_reply_to.is_empty(),
        "a reply the model was to lose was never sent"
    );
    stack.assert_no_changes(&changed, "dev").await;
    assert!(stack.state_object("dev", "lock.json").await.is_none());
}

/// A base stage deployed before base.json existed has none, and the preview's CI role may
/// not read its state: the preview is told to have the base deployed once, which writes it
/// (even a deploy that changes nothing), and then deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_stage_without_base_json_is_deployed_once_to_write_it() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read("infra/guide-preview-s3.toml"));
    stack
        .run(&config, &["deploy", "--stage", "prod"])
        .await
        .ok();
    stack
        .s3
        .delete_object()
        .bucket(STATE_BUCKET)
        .key("team/aws-hono/prod/base.json")
        .send()
        .await
        .unwrap();
    stack.aws.model().s3.policy = Some(ci_policy("preview-permissions.json"));
    let refused = stack.run(&config, &["deploy", "--stage", "pr-8"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("hint: deploy stage `prod` once with this deployer"),
        "{}",
        refused.stderr
    );
    stack.aws.model().s3.policy = Some(ci_policy("prod-permissions.json"));
    stack.assert_no_changes(&config, "prod").await;
    stack.aws.model().s3.policy = Some(ci_policy("preview-permissions.json"));
    stack
        .run(&config, &["deploy", "--stage", "pr-8"])
        .await
        .ok();
}
