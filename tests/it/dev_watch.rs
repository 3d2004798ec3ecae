//! README's first command end to end: `scripts/dev` (`deployer dev --local`) creates a local
//! PostgreSQL with the roles and databases of infra.toml, writes the links to the env file
//! that cargo-lambda.toml names, and `cargo lambda watch` serves the function with them.
//! It runs in a copy of the workspace so it never touches the developer's `.deployer/`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::paths::{target_profile_dir, workspace_root};
use harness::pg::free_port;
use harness::process::Spawned;

/// These tests compile the api (and scripts/dev the deployer) for a copy of the workspace,
/// and may wait for cargo's lock while another test builds the Lambda zip in release mode.
const BUILD_WAIT: Duration = Duration::from_secs(900);

/// A fresh clone: the workspace without build output, git data or local state (but with
/// the committed `.deployer/dev.env`).
fn clone_workspace(to: &Path) {
    let from = workspace_root();
    copy_workspace(&from, to);
    std::fs::create_dir(to.join(".deployer")).unwrap();
    std::fs::copy(from.join(".deployer/dev.env"), to.join(".deployer/dev.env")).unwrap();
}

fn copy_workspace(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".git", "target", ".deployer", "bench"]
            .iter()
            .any(|n| name == *n)
        {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            std::fs::create_dir(&dst).unwrap();
            copy_workspace(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[tokio::test]
async fn scripts_dev_serves_version_under_cargo_lambda_watch() {
    let copy = tempfile::Builder::new()
        .prefix("dev-watch-")
        .tempdir()
        .unwrap();
    // The postgres account (used when the tests run as root) must be able to enter it.
    std::fs::set_permissions(copy.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    clone_workspace(copy.path());
    let (pg_port, port) = (free_port(), free_port());

    let mut cmd = Command::new(copy.path().join("scripts/dev"));
    cmd.current_dir(copy.path())
        .env("PORT", port.to_string())
        .env("DEV_PG_PORT", pg_port.to_string())
        // Reuse this build's compiled dependencies.
        .env(
            "CARGO_TARGET_DIR",
            target_profile_dir().parent().expect("target/"),
        )
        .env_remove("DATABASE_URL")
        .env_remove("LINK_NeonDB")
        .env_remove("NEON_API_KEY")
        .env_remove("NEON_ORG_ID");
    let mut dev = Spawned::start(cmd);
    dev.wait_for(BUILD_WAIT, |out| {
        out.contains("starting Runtime server").then_some(())
    });

    // The function compiles when watch starts; the first request waits for it.
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(BUILD_WAIT)
        .build()
        .unwrap();
    let started = Instant::now();
    let body = loop {
        let r = client.get(format!("{base}/version")).send().await;
        match r {
            Ok(r) if r.status() == 200 => break r.text().await.unwrap(),
            other => {
                assert!(
                    started.elapsed() < BUILD_WAIT,
                    "no 200 from /version: {other:?}\n{}",
                    dev.output()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert!(body.contains(r#""version":"PostgreSQL "#), "{body}");
    let root = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.text().await.unwrap(), "Hello Hono!");
    let prefixed = client
        .get(format!("{base}/lambda-url/api/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(prefixed.status(), 200);

    for secret in [".deployer/dev/watch.env", ".deployer/dev/env/LINK_NeonDB"] {
        let mode = std::fs::metadata(copy.path().join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret} holds a password");
    }
    let committed = std::fs::read_to_string(copy.path().join(".deployer/dev.env")).unwrap();
    assert_eq!(
        committed,
        std::fs::read_to_string(workspace_root().join(".deployer/dev.env")).unwrap(),
        "the committed env file was rewritten"
    );
    let env_file = copy.path().join(".deployer/dev/watch.env");
    let passwords: std::collections::BTreeMap<String, String> = serde_json::from_str(
        &std::fs::read_to_string(copy.path().join(".deployer/dev/passwords.json")).unwrap(),
    )
    .unwrap();
    let password = &passwords["neondb_owner"];
    assert!(password.len() >= 16);
    assert!(
        !dev.output().contains(password.as_str()),
        "password printed"
    );
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env.contains("LINK_NeonDB='{\"connection_string\":\"postgresql://neondb_owner:"),
        "{env}"
    );

    dev.signal("INT");
    let exit = dev.wait_exit(Duration::from_secs(30));
    assert!(
        exit.is_some(),
        "scripts/dev did not stop on Ctrl-C:\n{}",
        dev.output()
    );
    assert!(
        dev.output().contains("stopping PostgreSQL"),
        "{}",
        dev.output()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "PostgreSQL still running after scripts/dev stopped"
    );
}

#[tokio::test]
async fn on_a_fresh_clone_cargo_lambda_watch_starts_and_version_says_what_to_run() {
    let copy = tempfile::Builder::new()
        .prefix("fresh-watch-")
        .tempdir()
        .unwrap();
    clone_workspace(copy.path());
    let port = free_port();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(copy.path())
        .args([
            "lambda",
            "watch",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .env(
            "CARGO_TARGET_DIR",
            target_profile_dir().parent().expect("target/"),
        )
        .env_remove("DATABASE_URL")
        .env_remove("LINK_NeonDB");
    let mut watch = Spawned::start(cmd);
    watch.wait_for(BUILD_WAIT, |out| {
        out.contains("starting Runtime server").then_some(())
    });
    let client = reqwest::Client::builder()
        .timeout(BUILD_WAIT)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let version = client.get(format!("{base}/version")).send().await.unwrap();
    assert_eq!(version.status(), 503, "{}", watch.output());
    let body = version.text().await.unwrap();
    assert!(
        body.contains("database not configured") && body.contains("scripts/dev"),
        "{body}"
    );
    let root = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.text().await.unwrap(), "Hello Hono!");
    assert!(
        watch.output().contains("LINK_NeonDB_FILE"),
        "the log names what is missing:\n{}",
        watch.output()
    );
}
