//! What a user reads when a deploy fails: stderr and the exit code of a handful of
//! failures, compared with snapshot files in tests/fixtures/errors/ (`error:`, one
//! `caused by:` per source, at most one `hint:`). Machine-specific parts (the temporary
//! folder, random stage suffixes) are replaced before comparing. `DEPLOYER_BLESS=1`
//! rewrites the snapshots.

use std::path::Path;

use harness::deploy::{DeployStack, Run, temp_config};
use harness::fixtures::{self, GUIDE_HONO};
use harness::paths::fixture;

/// Compares a run with `tests/fixtures/errors/<name>.txt`, the config's folder shown as `<dir>`.
fn assert_snapshot(name: &str, run: &Run, dir: &Path) {
    let stderr = run
        .stderr
        .replace(&dir.display().to_string(), "<dir>")
        .lines()
        // Progress lines and notes are not the error; the snapshot is what follows them.
        .filter(|l| !l.starts_with("Deploying ") && !l.starts_with("note: "))
        .collect::<Vec<_>>()
        .join("\n");
    let got = format!("exit code: {}\n{stderr}\n", run.code);
    let path = fixture(&format!("errors/{name}.txt"));
    if std::env::var_os("DEPLOYER_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (DEPLOYER_BLESS=1 writes it)", path.display()));
    assert_eq!(
        got,
        want,
        "stderr of `{name}` differs from {}",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_read_as_error_caused_by_and_hint() {
    let stack = DeployStack::start(|_| {}).await;

    // Bad input: an unknown key, and an unset variable, each with place and hint.
    let (dir, config) =
        temp_config(fixtures::read(GUIDE_HONO).with("url = true", "url = true\nurls = 2"));
    let run = stack.run(&config, &["deploy", "--stage", "snap"]).await;
    assert_snapshot("unknown-key", &run, dir.path());
    let (dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    let run = stack
        .command(&config, &["deploy", "--stage", "snap"])
        .env_remove("NEON_ORG_ID")
        .output()
        .await
        .unwrap();
    let run = Run {
        code: run.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
    };
    assert_snapshot("unset-env", &run, dir.path());

    // Neon refuses the key.
    let out = stack
        .command(&config, &["deploy", "--stage", "snap"])
        .env("NEON_API_KEY", "not-the-key")
        .output()
        .await
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_snapshot("neon-401", &run, dir.path());

    // AWS refuses the credentials' permissions (the proxy answers as AWS does).
    stack.aws.deny_all(true);
    let run = stack.run(&config, &["deploy", "--stage", "denied"]).await;
    stack.aws.deny_all(false);
    assert_snapshot("aws-access-denied", &run, dir.path());

    // A protected stage refuses to lose data.
    stack
        .run(&config, &["deploy", "--stage", "production"])
        .await
        .ok();
    let (dir, newer) =
        temp_config(fixtures::read(GUIDE_HONO).with("pg_version = 17", "pg_version = 16"));
    let run = stack
        .run(&newer, &["deploy", "--stage", "production"])
        .await;
    assert_snapshot("protection", &run, dir.path());
}

/// An account in an organization (every new Neon account) with a personal API key: Neon
/// refuses to list or create projects without `org_id`. The guide's file names it and
/// deploys; a file without it gets Neon's refusal with a hint that says where the ID is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_account_needs_org_id_and_is_told_so() {
    let stack = DeployStack::start(|c| c.require_org_id = true).await;

    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    stack.run(&config, &["deploy", "--stage", "org"]).await.ok();
    let listed: Vec<_> = stack
        .neon
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/projects")
        .collect();
    assert!(
        !listed.is_empty(),
        "the deploy never looked for its project"
    );
    assert!(
        listed
            .iter()
            .all(|r| r.query.contains("org_id=org-test-123")),
        "{listed:?}"
    );

    let (dir, config) =
        temp_config(fixtures::read(GUIDE_HONO).with("org_id = \"${env.NEON_ORG_ID}\"\n", ""));
    let run = stack.run(&config, &["deploy", "--stage", "snap"]).await;
    assert_snapshot("neon-org-id-required", &run, dir.path());
}
