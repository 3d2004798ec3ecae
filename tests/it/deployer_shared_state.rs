//! State shared in S3 (`[state] backend = "s3"`): two working copies never both hold a
//! stage, a dead holder's lock is taken over after its lease, `unlock` refuses a live
//! lease, and a holder that lost its lock (paused past its lease, then unlocked by force)
//! writes nothing. The default bucket is made as a state bucket should be.

use std::time::{Duration, Instant};

use aws_sdk_s3::types::BucketVersioningStatus;
use harness::deploy::{DeployStack, Run, temp_config};
use harness::fixtures::{self, GUIDE_HONO};
use serde_json::Value;

/// moto's account and the fixture's region.
const BUCKET: &str = harness::deploy::STATE_BUCKET;
const RACES: usize = 100;

fn guide_s3() -> fixtures::Text {
    fixtures::read("infra/guide-s3-state.toml")
}

fn key(stage: &str, object: &str) -> String {
    format!("team/aws-hono/{stage}/{object}")
}

async fn object(stack: &DeployStack, key: &str) -> Option<(Value, String)> {
    let (stage, object) = key
        .strip_prefix("team/aws-hono/")
        .and_then(|k| k.split_once('/'))
        .expect("a key of the fixtures' prefix");
    stack.state_object(stage, object).await
}

async fn functions_named(stack: &DeployStack, name: &str) -> usize {
    let listed = stack.lambda.list_functions().send().await.unwrap();
    listed
        .functions()
        .iter()
        .filter(|f| f.function_name() == Some(name))
        .count()
}

/// A deploy of `stage` with a lease of `lease_seconds`, its output captured, once it holds
/// the lock and has written its state.
async fn holder_started(
    stack: &DeployStack,
    config: &std::path::Path,
    stage: &str,
    lease_seconds: &str,
) -> tokio::process::Child {
    let mut holder = stack.command(config, &["deploy", "--stage", stage]);
    holder
        .env("DEPLOYER_LOCK_LEASE_SECONDS", lease_seconds)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let holder = holder.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while object(stack, &key(stage, "state.json")).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the holder never wrote its state"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder
}

/// Sends `sig` (STOP, CONT) to the process.
fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-s", sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(sent, "kill -s {sig} {pid}");
}

fn lost_to_the_lock(run: &Run) -> bool {
    run.code == 1 && run.stderr.contains("is locked by `deployer deploy` by ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_working_copies_racing_on_one_stage_never_both_hold_it() {
    let stack = DeployStack::start(|_| {}).await;
    // Two clones of the repository: nothing shared but the bucket.
    let (_a_dir, a) = temp_config(guide_s3());
    let (_b_dir, b) = temp_config(guide_s3());
    let args = ["deploy", "--stage", "shared"];
    let mut contended = 0;
    for round in 0..RACES {
        let (ra, rb) = tokio::join!(stack.run(&a, &args), stack.run(&b, &args));
        for run in [&ra, &rb] {
            assert!(
                run.code == 0 || lost_to_the_lock(run),
                "round {round}: neither a win nor a lost race (exit {}):\n{}",
                run.code,
                run.stderr
            );
        }
        assert!(ra.code == 0 || rb.code == 0, "round {round}: nobody won");
        if ra.code != 0 || rb.code != 0 {
            contended += 1;
        }
    }
    assert!(contended > 0, "the runs never met: the race proved nothing");
    assert_eq!(stack.projects_named("my-sst-project").await.len(), 1);
    assert_eq!(functions_named(&stack, "aws-hono-shared-MyApi").await, 1);
    let (state, _) = object(&stack, &key("shared", "state.json"))
        .await
        .expect("the state is in the bucket");
    assert!(state["serial"].as_u64().unwrap() > 0);
    assert!(
        object(&stack, &key("shared", "lock.json")).await.is_none(),
        "every winner released the lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_is_taken_over_after_its_lease_and_the_stage_converges() {
    let stack = DeployStack::start(|c| c.operation_delay = Duration::from_millis(1500)).await;
    let (_dir, config) = temp_config(guide_s3());
    let args = ["deploy", "--stage", "killed"];
    let mut first = stack.command(&config, &args);
    first.env("DEPLOYER_LOCK_LEASE_SECONDS", "3");
    let mut first = first.spawn().unwrap();
    // Killed once it holds the lock and has started recording its work.
    let deadline = Instant::now() + Duration::from_secs(30);
    while object(&stack, &key("killed", "state.json")).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the first run never wrote its state"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let killed_at = Instant::now();
    assert!(object(&stack, &key("killed", "lock.json")).await.is_some());

    // Within the lease the lock still stands.
    let early = stack.run(&config, &args).await;
    if killed_at.elapsed() < Duration::from_secs(2) {
        assert_eq!(early.code, 1, "{}", early.stderr);
        assert!(early.stderr.contains("is locked by"), "{}", early.stderr);
    }
    // After it, the next run, from another machine's clone, takes over (no unlock),
    // resumes and converges.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(killed_at.elapsed())).await;
    let (_elsewhere_dir, elsewhere) = temp_config(guide_s3());
    let resumed = stack.run(&elsewhere, &args).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed
            .stderr
            .contains("Took over the lock of stage `killed`"),
        "{}",
        resumed.stderr
    );
    assert_eq!(stack.projects_named("my-sst-project").await.len(), 1);
    assert_eq!(functions_named(&stack, "aws-hono-killed-MyApi").await, 1);
    let again = stack.run(&config, &args).await.ok();
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);

    // The default bucket was made as a state bucket: versioned, private, encrypted, and
    // old versions beyond the last 100 expire.
    let versioning = stack
        .s3
        .get_bucket_versioning()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let block = stack
        .s3
        .get_public_access_block()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let encryption = stack
        .s3
        .get_bucket_encryption()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let rule = &encryption
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let lifecycle = stack
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let rule = &lifecycle.rules()[0];
    assert_eq!(rule.status().as_str(), "Enabled");
    assert!(rule.noncurrent_version_expiration().is_some(), "{rule:?}");
    // moto keeps only NoncurrentDays of the rule; what was sent says how many are kept.
    let sent = stack
        .aws
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT" && c.query == "lifecycle")
        .and_then(|c| c.body)
        .expect("the deployer set a lifecycle rule");
    assert!(
        sent.contains("<NewerNoncurrentVersions>100</NewerNoncurrentVersions>"),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_refuses_a_live_lease_and_a_holder_unlocked_by_force_writes_nothing() {
    let stack = DeployStack::start(|c| c.operation_delay = Duration::from_millis(1500)).await;
    let (_dir, config) = temp_config(guide_s3());
    let args = ["deploy", "--stage", "paused"];
    let holder = holder_started(&stack, &config, "paused", "30").await;
    signal(&holder, "STOP");
    // A request it sent just before it stopped still lands: let it, so what follows is
    // about the paused holder, not about that race.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A live lease: unlock says who holds it and refuses without --force.
    let refused = stack.run(&config, &["unlock", "--stage", "paused"]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("is locked by `deployer deploy` by "),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    let forced = stack
        .run(&config, &["unlock", "--stage", "paused", "--force"])
        .await;
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(
        forced.stdout.contains("Unlocked stage `paused`"),
        "{}",
        forced.stdout
    );

    // Another run takes the stage and finishes it.
    let other = stack.run(&config, &args).await;
    assert_eq!(other.code, 0, "{}", other.stderr);
    let (after_other, etag) = object(&stack, &key("paused", "state.json")).await.unwrap();

    // The paused holder wakes up: its next write is refused, and it says so.
    signal(&holder, "CONT");
    let out = holder.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the fenced holder must fail:\n{stderr}"
    );
    assert!(
        stderr.contains("another run wrote the state of stage `paused`")
            || stderr.contains("lost the lock of stage `paused`"),
        "{stderr}"
    );
    let (now, etag_now) = object(&stack, &key("paused", "state.json")).await.unwrap();
    assert_eq!(etag_now, etag, "the fenced holder overwrote the state");
    assert_eq!(now, after_other);
    // The stage is the other run's: its project is the one recorded. (A create the paused
    // holder had already begun past its last fenced write may still land: that is why
    // unlock refuses a live lease without --force.)
    let recorded = now["resources"]["MyAppProject"]["ids"]["project_id"]
        .as_str()
        .expect("the project is recorded")
        .to_owned();
    let project = stack
        .neon
        .client
        .call("GET", "/projects/{project_id}", &[&recorded], "", None)
        .await;
    assert_eq!(project.status, 200);
    let last = stack.run(&config, &args).await.ok();
    assert!(last.stdout.contains("No changes."), "{}", last.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_is_taken_over_and_changes_nothing_when_it_wakes() {
    let stack = DeployStack::start(|c| c.operation_delay = Duration::from_millis(1500)).await;
    let (_dir, config) = temp_config(guide_s3());
    let args = ["deploy", "--stage", "sleepy"];
    let holder = holder_started(&stack, &config, "sleepy", "3").await;
    signal(&holder, "STOP");
    // Past its 3-second lease, another run takes the stage over without `unlock`.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let other = stack.run(&config, &args).await;
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert!(
        other
            .stderr
            .contains("Took over the lock of stage `sleepy`"),
        "{}",
        other.stderr
    );
    let (_, etag) = object(&stack, &key("sleepy", "state.json")).await.unwrap();

    signal(&holder, "CONT");
    let out = holder.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the stale holder must fail:\n{stderr}"
    );
    assert!(stderr.contains("lock"), "{stderr}");
    let (_, etag_now) = object(&stack, &key("sleepy", "state.json")).await.unwrap();
    assert_eq!(etag_now, etag, "the stale holder wrote the state");
    assert_eq!(stack.projects_named("my-sst-project").await.len(), 1);
    assert_eq!(functions_named(&stack, "aws-hono-sleepy-MyApi").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_migrates_to_s3_and_back_and_list_pull_push_rm_work_on_it() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    fn with<'a>(cmd: &[&'a str]) -> Vec<&'a str> {
        cmd.iter().copied().chain(["--stage", "mig"]).collect()
    }
    stack.run(&config, &with(&["deploy"])).await.ok();
    let local = stack.state_json("mig");
    let names = |s: &Value| -> Vec<String> {
        s["resources"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };

    // infra.toml now names the bucket; migrate moves the stage there.
    std::fs::write(&config, guide_s3().as_str()).unwrap();
    let moved = stack
        .run(&config, &with(&["state", "migrate", "--to", "s3"]))
        .await
        .ok();
    assert!(
        moved.stdout.contains("Moved the state of stage `mig`"),
        "{}",
        moved.stdout
    );
    assert!(!stack.state_file("mig").exists(), "the local copy is gone");
    let (in_s3, _) = object(&stack, &key("mig", "state.json")).await.unwrap();
    assert_eq!(names(&in_s3), names(&local));
    let again = stack.run(&config, &with(&["deploy"])).await.ok();
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);

    let listed = stack.run(&config, &["state", "list"]).await.ok();
    assert!(
        listed.stdout.contains("mig") && listed.stdout.contains("MyApi"),
        "{}",
        listed.stdout
    );

    // pull, then push the copy back (fenced, serial grows); an older copy is refused.
    let copy = config.with_file_name("mig.json");
    let copy_arg = copy.display().to_string();
    stack
        .run(&config, &with(&["state", "pull", "--out", &copy_arg]))
        .await
        .ok();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pulled: Value = serde_json::from_str(&std::fs::read_to_string(&copy).unwrap()).unwrap();
    stack
        .run(&config, &with(&["state", "push", &copy_arg]))
        .await
        .ok();
    let (after_push, _) = object(&stack, &key("mig", "state.json")).await.unwrap();
    assert!(after_push["serial"].as_u64() > pulled["serial"].as_u64());
    let stale = stack
        .run(&config, &with(&["state", "push", &copy_arg]))
        .await;
    assert_eq!(stale.code, 2, "{}", stale.stderr);
    assert!(
        stale.stderr.contains("older than the stage's state"),
        "{}",
        stale.stderr
    );

    // rm forgets one resource (asking first); the next deploy makes it again.
    let unasked = stack.run(&config, &with(&["state", "rm", "NeonDB"])).await;
    assert_eq!(unasked.code, 2, "{}", unasked.stderr);
    stack
        .run(&config, &with(&["state", "rm", "NeonDB", "--yes"]))
        .await
        .ok();
    let (forgot, _) = object(&stack, &key("mig", "state.json")).await.unwrap();
    assert!(!names(&forgot).contains(&"NeonDB".to_owned()));
    let recreated = stack.run(&config, &with(&["deploy"])).await.ok();
    assert!(
        recreated.stdout.contains("Created   NeonDB"),
        "{}",
        recreated.stdout
    );

    // And back to .deployer/.
    stack
        .run(&config, &with(&["state", "migrate", "--to", "local"]))
        .await
        .ok();
    assert!(object(&stack, &key("mig", "state.json")).await.is_none());
    assert_eq!(names(&stack.state_json("mig")), names(&local));
}

/// Changes made outside the deployer: `refresh` shows them (and `--json`), forgets what was
/// deleted, and the next deploy puts everything back, saying what it created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_shows_drift_made_outside_and_deploy_repairs_it() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read("infra/drift.toml"));
    let stage = ["--stage", "drift"];
    let with =
        |cmd: &str| -> Vec<String> { cmd.split(' ').chain(stage).map(str::to_owned).collect() };
    let run = |cmd: &str| {
        let args = with(cmd);
        let stack = &stack;
        let config = config.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stack.run(&config, &args).await
        }
    };
    run("deploy").await.ok();
    let clean = run("refresh").await.ok();
    assert!(clean.stdout.contains("No drift"), "{}", clean.stdout);

    // Memory changed in the console; a role deleted through the Neon API.
    let function = "drift-drift-MyApi";
    stack
        .lambda
        .update_function_configuration()
        .function_name(function)
        .memory_size(256)
        .send()
        .await
        .unwrap();
    let state = stack.state_json("drift");
    let ids = &state["resources"]["Reporter"]["ids"];
    let deleted = stack
        .neon
        .client
        .call(
            "DELETE",
            "/projects/{project_id}/branches/{branch_id}/roles/{role_name}",
            &[
                ids["project_id"].as_str().unwrap(),
                ids["branch_id"].as_str().unwrap(),
                "reporter",
            ],
            "",
            None,
        )
        .await;
    assert_eq!(deleted.status, 200, "{:#}", deleted.body);

    let json = run("refresh --json").await.ok();
    let drift: Value = serde_json::from_str(&json.stdout).unwrap();
    let by_name = |n: &str| {
        drift
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["resource"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no drift for {n}: {drift:#}"))
    };
    assert_eq!(by_name("Reporter")["deleted"], true);
    assert!(
        by_name("MyApi")["changes"][0]
            .as_str()
            .unwrap()
            .contains("memory: 128 (recorded) -> 256 (live)"),
        "{drift:#}"
    );
    assert_eq!(drift.as_array().unwrap().len(), 2, "{drift:#}");

    let repaired = run("deploy").await.ok();
    assert!(
        repaired.stdout.contains("Created   Reporter"),
        "{}",
        repaired.stdout
    );
    assert!(
        repaired.stdout.contains("Updated   MyApi"),
        "{}",
        repaired.stdout
    );
    let conf = stack
        .lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .unwrap();
    assert_eq!(conf.memory_size(), Some(128));
    let after = run("refresh").await.ok();
    assert!(after.stdout.contains("No drift"), "{}", after.stdout);
}

/// Commands that only read make no bucket: before the first deploy there is no state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_commands_leave_the_account_untouched_before_the_first_deploy() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(guide_s3());
    let diff = stack.run(&config, &["diff", "--stage", "fresh"]).await.ok();
    assert!(diff.stdout.contains("create"), "{}", diff.stdout);
    let listed = stack.run(&config, &["state", "list"]).await.ok();
    assert!(listed.stdout.contains("No stage"), "{}", listed.stdout);
    let outputs = stack.run(&config, &["outputs", "--stage", "fresh"]).await;
    assert_eq!(outputs.code, 2, "{}", outputs.stderr);
    let unlocked = stack
        .run(&config, &["unlock", "--stage", "fresh"])
        .await
        .ok();
    assert!(
        unlocked.stdout.contains("was not locked"),
        "{}",
        unlocked.stdout
    );
    let mutating: Vec<String> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .map(|c| format!("{} {}?{}", c.method, c.path, c.query))
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");
    assert!(
        stack.s3.head_bucket().bucket(BUCKET).send().await.is_err(),
        "no bucket was made"
    );
}
