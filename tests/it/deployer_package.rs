//! The function's code as the deployer packages it: the architecture of the binary checked
//! against infra.toml before any call, Lambda's 50 MB direct-upload limit (larger code goes
//! through the S3 state bucket), and a reproducible zip,
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

/// An x86_64 ELF header, then `mib` MiB that deflate cannot shrink.
fn incompressible_binary(mib: usize) -> Vec<u8> {
    let mut binary =
        std::fs::read(lambda_artifacts().join("api/bootstrap")).unwrap()[..64].to_vec();
    let mut noise = vec![0u8; mib * 1024 * 1024];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for b in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    binary.write_all(&noise).unwrap();
    binary
}

/// With local state there is no bucket to upload through: code over Lambda's direct limit
/// is refused before any call, saying how to deploy it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_over_lambdas_upload_limit_is_refused_with_a_hint() {
    let stack = DeployStack::start(|_| {}).await;
    let artifacts = artifact_dir(&incompressible_binary(60));
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
    assert!(
        stderr.contains("hint: keep the state in S3 ([state] backend = \"s3\")"),
        "{stderr}"
    );
    assert!(stack.aws.calls().is_empty());
}

/// With S3 state, code over Lambda's direct limit (60 MB zipped) goes through the state
/// bucket, as Lambda allows up to 250 MB unzipped: uploaded once, fetched by Lambda from
/// the function's region, deleted after, and not uploaded again when unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_over_the_direct_limit_goes_through_the_state_bucket() {
    let stack = DeployStack::start(|_| {}).await;
    let artifacts = artifact_dir(&incompressible_binary(60));
    // The padded binary does not run: no release check.
    let (_dir, config) = temp_config(
        fixtures::read("infra/guide-s3-state.toml")
            .with("url = true\n", "url = true\nsmoke = false\n"),
    );
    let deploy = || {
        let mut cmd = stack.command(&config, &["deploy", "--stage", "big"]);
        cmd.env("DEPLOYER_ARTIFACT_DIR", artifacts.path());
        cmd
    };
    let out = deploy().output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = stack.aws.calls();
    let uploads: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "PUT" && c.path.contains("/team/aws-hono/big/code/MyApi-"))
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    let create = calls
        .iter()
        .find(|c| c.method == "POST" && c.path.ends_with("/functions"))
        .expect("CreateFunction");
    assert!(
        create
            .body
            .as_deref()
            .is_some_and(|b| b.contains("\"S3Bucket\"")),
        "the function's code was not fetched from S3: {create:#?}"
    );
    let conf = stack
        .lambda
        .get_function_configuration()
        .function_name("aws-hono-big-MyApi")
        .send()
        .await
        .unwrap();
    assert!(conf.code_size() > 50 * 1024 * 1024, "{conf:?}");
    let left = stack
        .s3
        .list_objects_v2()
        .bucket(harness::deploy::STATE_BUCKET)
        .prefix("team/aws-hono/big/code/")
        .send()
        .await
        .unwrap();
    assert!(
        left.contents().is_empty(),
        "uploaded code left behind: {left:?}"
    );

    stack.aws.clear();
    let again = deploy().output().await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("No changes."));
    assert!(
        stack.aws.calls().iter().all(|c| !c.path.contains("/code/")),
        "unchanged code was uploaded again"
    );
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
        [
            "PUT /2015-03-31/functions/aws-hono-zip-MyApi/code",
            "POST /2015-03-31/functions/aws-hono-zip-MyApi/invocations",
            "POST /2015-03-31/functions/aws-hono-zip-MyApi/versions",
            "PUT /2015-03-31/functions/aws-hono-zip-MyApi/aliases/live",
        ]
    );
    assert!(
        stack.neon.emulator.requests().is_empty(),
        "a code-only deploy called Neon: {:?}",
        stack.neon.emulator.requests()
    );
}
