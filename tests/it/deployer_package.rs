//! The function's code as the deployer packages it: the architecture of the binary checked
//! against infra.toml before any call, Lambda's 50 MB upload limit, and a reproducible zip,
//! so the same binary built again (a fresh checkout, new file times) uploads nothing.

use std::io::Write;

use harness::deploy::{DeployStack, lambda_artifacts, temp_config};
use harness::fixtures::{self, GUIDE_HONO};
use harness::paths::fixture;

fn guide() -> fixtures::Text {
    fixtures::read(GUIDE_HONO)
}

/// A folder for DEPLOYER_ARTIFACT_DIR holding `api/bootstrap` with these bytes.
fn artifact_dir(bootstrap: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("api")).unwrap();
    std::fs::write(dir.path().join("api/bootstrap"), bootstrap).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_for_the_wrong_architecture_is_refused_before_any_call() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(guide());
    let mut cmd = stack.command(&config, &["deploy", "--stage", "arch"]);
    cmd.env(
        "DEPLOYER_ARTIFACT_DIR",
        fixture("artifacts/arm64").display().to_string(),
    );
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is built for arm64, but infra.toml declares architecture = \"x86_64\""),
        "{stderr}"
    );
    assert!(stderr.contains("api/bootstrap"), "names the file: {stderr}");
    assert!(
        stderr.contains("--x86-64"),
        "says how to build it: {stderr}"
    );
    assert!(stack.aws.calls().is_empty(), "{:?}", stack.aws.calls());
    assert!(stack.neon.emulator.requests().iter().all(|r| !r.mutating));
    assert!(!stack.state_file("arch").exists(), "a state was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_over_lambdas_upload_limit_is_refused_with_a_hint() {
    let stack = DeployStack::start(|_| {}).await;
    // An x86_64 ELF header, then 60 MB that deflate cannot shrink.
    let mut binary =
        std::fs::read(lambda_artifacts().join("api/bootstrap")).unwrap()[..64].to_vec();
    let mut noise = vec![0u8; 60 * 1024 * 1024];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for b in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    binary.write_all(&noise).unwrap();
    let artifacts = artifact_dir(&binary);
    let (_dir, config) = temp_config(guide());
    let mut cmd = stack.command(&config, &["deploy", "--stage", "big"]);
    cmd.env("DEPLOYER_ARTIFACT_DIR", artifacts.path());
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Lambda takes at most 52428800 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(stack.aws.calls().is_empty());
}

/// The same binary, copied afresh (new file times, as a fresh CI checkout builds it), gives
/// the same zip: the redeploy uploads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_binary_from_a_fresh_build_uploads_nothing() {
    let stack = DeployStack::start(|_| {}).await;
    let binary = std::fs::read(lambda_artifacts().join("api/bootstrap")).unwrap();
    let (_dir, config) = temp_config(guide());

    let first = artifact_dir(&binary);
    let mut cmd = stack.command(&config, &["deploy", "--stage", "zip"]);
    cmd.env("DEPLOYER_ARTIFACT_DIR", first.path());
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = artifact_dir(&binary);
    stack.aws.clear();
    let mut cmd = stack.command(&config, &["deploy", "--stage", "zip"]);
    cmd.env("DEPLOYER_ARTIFACT_DIR", second.path());
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("No changes."), "{stdout}");
    let mutating: Vec<_> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");

    // A different binary is a code-only change: UpdateFunctionCode and nothing else.
    let mut changed = binary.clone();
    changed.extend_from_slice(b"\0a trailing byte changes the code");
    let third = artifact_dir(&changed);
    stack.aws.clear();
    stack.neon.emulator.clear_requests();
    let mut cmd = stack.command(&config, &["deploy", "--stage", "zip"]);
    cmd.env("DEPLOYER_ARTIFACT_DIR", third.path());
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mutating: Vec<String> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        mutating,
        vec!["PUT /2015-03-31/functions/aws-hono-zip-MyApi/code".to_owned()]
    );
    assert!(
        stack.neon.emulator.requests().is_empty(),
        "a code-only deploy called Neon: {:?}",
        stack.neon.emulator.requests()
    );
}
