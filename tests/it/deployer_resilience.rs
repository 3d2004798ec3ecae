//! The deployer when things go wrong: Neon failing one call in five (some after applying
//! the change) and locking projects with 423; the deployer killed at every point of a fresh
//! deploy; two deploys racing for one stage. Each time: no duplicate, no orphan.

use std::time::Duration;

use deployer::resources::{branch, project};
use harness::aws::Timings;
use harness::deploy::{DeployStack, temp_config};
use harness::fixtures::{self, GUIDE_FULL, GUIDE_HONO};
use harness::paths::fixture;
use neon_emulator::OperationFault;
use neon_emulator::faults::{RandomFaults, ScriptedFault};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const PROJECT: &str = "my-application-project";

async fn count(stack: &DeployStack, path: &str, args: &[&str], key: &str) -> usize {
    let answer = stack
        .neon
        .client
        .call("GET", path, args, "limit=400", None)
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body[key].as_array().map_or(0, Vec::len)
}

/// The stage's Neon resources exist exactly once each, as recorded in its state.
async fn assert_exactly_once(stack: &DeployStack, stage: &str) {
    let state = stack.state_json(stage);
    let project: project::Ids = stack.recorded_ids(stage, "MyAppProject");
    let branch: branch::Ids = stack.recorded_ids(stage, "DevBranch");
    let (pid, dev) = (project.project_id.0.as_str(), branch.branch_id.0.as_str());
    assert_eq!(
        count(stack, "/projects/{project_id}/branches", &[pid], "branches").await,
        2,
        "main + feature branch"
    );
    assert_eq!(
        count(
            stack,
            "/projects/{project_id}/endpoints",
            &[pid],
            "endpoints"
        )
        .await,
        2,
        "default + DevEndpoint"
    );
    let b = "/projects/{project_id}/branches/{branch_id}";
    assert_eq!(
        count(stack, &format!("{b}/roles"), &[pid, dev], "roles").await,
        2,
        "neondb_owner + application_user"
    );
    assert_eq!(
        count(stack, &format!("{b}/databases"), &[pid, dev], "databases").await,
        2,
        "neondb + service_database"
    );
    assert!(
        state["pending"].as_object().is_none_or(|p| p.is_empty()),
        "{state:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_succeeds_through_injected_faults_without_duplicates() {
    let stack = DeployStack::start(|c| {
        c.operation_delay = Duration::from_millis(100);
        c.random_faults = RandomFaults {
            rate: 0.2,
            seed: 2026,
            statuses: vec![429, 500, 503],
            applied_share: 0.5,
        };
        for path in [
            "/projects",
            "/projects/*/branches",
            "/projects/*/endpoints",
            "/projects/*/branches/*/roles",
            "/projects/*/branches/*/databases",
        ] {
            c.scripted_faults.push(ScriptedFault {
                method: "POST".into(),
                path: path.into(),
                status: 423,
                count: 2,
                after_apply: false,
            });
        }
    })
    .await;
    let config = fixture(GUIDE_FULL);
    let run = stack
        .run(&config, &["deploy", "--stage", "faulty"])
        .await
        .ok();
    assert_eq!(run.stdout.matches("Created").count(), 5, "{}", run.stdout);
    let faults = stack
        .neon
        .emulator
        .requests()
        .iter()
        .filter(|r| r.fault)
        .count();
    assert!(faults >= 10, "only {faults} faults were injected");
    stack
        .neon
        .emulator
        .set_random_faults(RandomFaults::default());
    assert_eq!(stack.projects_named(PROJECT).await.len(), 1);
    assert_exactly_once(&stack, "faulty").await;
    stack.assert_no_changes(&config, "faulty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_killed_at_any_step_converges_on_the_next_run() {
    let stack = DeployStack::start(|c| c.operation_delay = Duration::from_millis(120)).await;
    let config = fixture(GUIDE_FULL);
    // Kill right after step k is reported, and in the middle of step k+1.
    let mut stages = Vec::new();
    for k in 0..5 {
        for mid_step in [false, true] {
            let stage = format!("kill{k}{}", if mid_step { "m" } else { "" });
            let mut child = stack
                .command(&config, &["deploy", "--stage", &stage])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = 0;
            while seen < k {
                match lines.next_line().await.unwrap() {
                    Some(l) if l.starts_with("Created") => seen += 1,
                    Some(_) => {}
                    None => panic!("deploy ended before step {k}"),
                }
            }
            if mid_step || k == 0 {
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            child.start_kill().unwrap(); // SIGKILL
            let _ = child.wait().await;
            // The lock survives a SIGKILL, as it should: the next run says so.
            let locked = stack.run(&config, &["deploy", "--stage", &stage]).await;
            if locked.code != 0 {
                assert_eq!(locked.code, 1, "{}", locked.all());
                assert!(locked.stderr.contains("is locked by"), "{}", locked.stderr);
                assert!(
                    locked
                        .stderr
                        .contains(&format!("deployer unlock --stage {stage}")),
                    "{}",
                    locked.stderr
                );
                stack
                    .run(&config, &["unlock", "--stage", &stage])
                    .await
                    .ok();
                stack
                    .run(&config, &["deploy", "--stage", &stage])
                    .await
                    .ok();
            }
            assert_exactly_once(&stack, &stage).await;
            stages.push(stage);
        }
    }
    assert_eq!(
        stack.projects_named(PROJECT).await.len(),
        stages.len(),
        "an orphaned or duplicated project"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deploys_of_one_stage_one_wins_the_other_is_told_who_holds_the_lock() {
    let stack = DeployStack::start(|c| c.operation_delay = Duration::from_millis(500)).await;
    let config = fixture(GUIDE_FULL);
    let (a, b) = tokio::join!(
        stack.run(&config, &["deploy", "--stage", "race"]),
        stack.run(&config, &["deploy", "--stage", "race"])
    );
    let (winner, loser) = if a.code == 0 { (a, b) } else { (b, a) };
    assert_eq!(winner.code, 0, "{}", winner.all());
    assert_eq!(loser.code, 1, "{}", loser.all());
    assert!(
        loser
            .stderr
            .contains("stage `race` is locked by `deployer deploy` (pid"),
        "{}",
        loser.stderr
    );
    assert!(!loser.stdout.contains("Created"));
    assert_exactly_once(&stack, "race").await;
    let state: Value = stack.state_json("race");
    assert_eq!(state["stage"], "race");
    stack.assert_no_changes(&config, "race").await;
}

/// Neon retries an operation in `error` on its own: the deploy waits it out. An operation
/// that ends `failed` fails its step with Neon's message and the operation's ID, and the
/// steps already running finish and are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_neon_retries_are_waited_for_and_failed_ones_are_reported() {
    let stack = DeployStack::start(|c| {
        c.operation_delay = Duration::from_millis(800);
        c.operation_faults = vec![
            OperationFault {
                action: "create_branch".into(),
                retried: true,
                message: "pageserver is unavailable, retrying".into(),
            },
            OperationFault {
                action: "start_compute".into(),
                retried: false,
                message: "compute failed to start: out of capacity in the region".into(),
            },
        ];
    })
    .await;
    let config = fixture(GUIDE_FULL);
    let run = stack.run(&config, &["deploy", "--stage", "ops"]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    // The project's own start_compute failed: its step reports Neon's words and the ID.
    assert!(
        run.stderr
            .contains("compute failed to start: out of capacity in the region"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("ended `failed`"), "{}", run.stderr);
    let op_id = run
        .stderr
        .split("start_compute` (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(op_id.len(), 36, "no operation ID in:\n{}", run.stderr);

    // Next run: the operation that Neon retried (create_branch) and everything else finish.
    let again = stack.run(&config, &["deploy", "--stage", "ops"]).await;
    assert_eq!(again.code, 0, "{}", again.all());
    let state = stack.state_json("ops");
    for name in [
        "MyAppProject",
        "DevBranch",
        "DevEndpoint",
        "AppUser",
        "ServiceDb",
    ] {
        assert!(
            state["resources"][name].is_object(),
            "{name} missing: {state}"
        );
    }
}

/// With concurrency, the Neon project, the IAM role and the function's creation overlap.
/// A deploy killed at any moment of that overlap converges on the next run: one project
/// per stage, the function holding that project's URI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_killed_while_neon_and_aws_steps_overlap_converges_on_the_next_run() {
    let stack = DeployStack::start(|c| c.operation_delay = Duration::from_millis(1500)).await;
    stack.aws.set_timings(Timings {
        latency: Duration::from_millis(20),
        pending: Duration::from_secs(1),
        in_progress: Duration::from_secs(1),
        iam_propagation: Duration::from_secs(2),
        ..Timings::default()
    });
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    let kills_ms = [150, 600, 1200, 1800, 2600, 3400];
    for ms in kills_ms {
        let stage = format!("overlap{ms}");
        let mut child = stack
            .command(&config, &["deploy", "--stage", &stage])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        child.start_kill().unwrap(); // SIGKILL
        let _ = child.wait().await;
        let mut next = stack.run(&config, &["deploy", "--stage", &stage]).await;
        if next.code != 0 && next.stderr.contains("is locked by") {
            stack
                .run(&config, &["unlock", "--stage", &stage])
                .await
                .ok();
            next = stack.run(&config, &["deploy", "--stage", &stage]).await;
        }
        assert_eq!(next.code, 0, "after a kill at {ms} ms:\n{}", next.all());

        let state = stack.state_json(&stage);
        let link: Value = serde_json::from_str(
            &stack
                .lambda
                .get_function_configuration()
                .function_name(format!("aws-hono-{stage}-MyApi"))
                .send()
                .await
                .unwrap()
                .environment()
                .and_then(|e| e.variables())
                .and_then(|v| v.get("LINK_NeonDB").cloned())
                .unwrap(),
        )
        .unwrap();
        assert!(
            link["connection_string"]
                .as_str()
                .is_some_and(|u| u.starts_with("postgres")),
            "{link}"
        );
        assert_eq!(
            link["connection_string"],
            state["resources"]["MyAppProject"]["outputs"]["connection_uri"],
            "the function does not hold its project's URI (kill at {ms} ms)"
        );
    }
    let listed = stack.projects_named("my-sst-project").await;
    assert_eq!(
        listed.len(),
        kills_ms.len(),
        "an orphaned or duplicated project: {listed:#?}"
    );
}

/// A project list that names `unavailable_project_ids` (Neon knows they exist but could
/// not describe them in time) is incomplete: after a create whose reply was lost (the
/// project made, a 500 answered), the lists that look for it withhold it three times, and
/// the deployer asks again instead of creating a second project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_project_list_is_asked_again_not_taken_as_absent() {
    let stack = DeployStack::start(|c| {
        c.scripted_faults
            .push("POST /projects 500 applied".parse().unwrap());
        c.incomplete_project_lists = 3;
    })
    .await;
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    stack
        .run(&config, &["deploy", "--stage", "unavailable"])
        .await
        .ok();
    let listed = stack.neon.emulator.requests();
    let lists = listed
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/projects"))
        .count();
    assert!(
        lists >= 4,
        "the incomplete lists were not asked again: {lists}"
    );
    assert_eq!(
        stack.projects_named("my-sst-project").await.len(),
        1,
        "a second project was created"
    );
}

/// An organization member's key may not delete projects (only admins may): `remove` says
/// so, with what to do, instead of a bare 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_key_that_may_not_delete_the_project_gets_a_hint_that_says_so() {
    const MEMBER_KEY: &str = "member-neon-api-key";
    let stack = DeployStack::start(|c| c.member_api_key = Some(MEMBER_KEY.into())).await;
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    stack
        .run(&config, &["deploy", "--stage", "member"])
        .await
        .ok();
    let out = stack
        .command(&config, &["remove", "--stage", "member", "--yes"])
        .env("NEON_API_KEY", MEMBER_KEY)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(
        stderr.contains("hint: only an organization admin may delete a Neon project"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(MEMBER_KEY),
        "the key was printed: {stderr}"
    );
    assert_eq!(stack.projects_named("my-sst-project").await.len(), 1);
}

/// An account outside Neon's Early Access programme is refused `expires_at` (the spec marks
/// it so): a preview stage with `expires_in` fails with an error that names it and what to
/// do, and leaves no branch behind; without `expires_in` it deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_expiry_refused_outside_early_access_names_expires_in() {
    let stack = DeployStack::start(|c| c.no_early_access = true).await;
    let (_dir, config) = temp_config(fixtures::read("infra/guide-preview.toml"));
    stack
        .run(&config, &["deploy", "--stage", "prod"])
        .await
        .ok();
    let refused = stack.run(&config, &["deploy", "--stage", "pr-5"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    for text in [
        "Neon refused the branch's expiry (`expires_at`, an Early Access field of Neon's API)",
        "remove `expires_in`",
        "the branch was not made",
    ] {
        assert!(refused.stderr.contains(text), "{text}: {}", refused.stderr);
    }
    let project = &stack.projects_named("my-sst-project").await[0];
    let branches: deployer::neon::models::BranchesResponse = stack
        .neon
        .client
        .call(
            "GET",
            "/projects/{project_id}/branches",
            &[&project.id.0],
            "",
            None,
        )
        .await
        .typed();
    assert!(
        branches.branches.iter().all(|b| !b.name.contains("pr-5")),
        "{:?}",
        branches.branches
    );
    let (_dir2, no_expiry) =
        temp_config(fixtures::read("infra/guide-preview.toml").with("expires_in = \"3d\"\n", ""));
    stack
        .run(&no_expiry, &["deploy", "--stage", "pr-5"])
        .await
        .ok();
}
