//! Bad input to the deployer: every malformed infra.toml under tests/fixtures/infra/bad/ is
//! rejected with its expected message (each file lists them as `# expect:` lines), exit
//! code 2, and no request to Neon or AWS.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use harness::paths::{fixture, workspace_bin};

/// A loopback port that counts the connections made to it.
fn probe() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (format!("http://{addr}"), count)
}

fn deployer(config: &Path, args: &[&str], neon: &str, aws: &str) -> (i32, String, String) {
    deployer_with(config, args, neon, aws, &[])
}

fn deployer_with(
    config: &Path,
    args: &[&str],
    neon: &str,
    aws: &str,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(workspace_bin("deployer"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NEON_API_KEY", "probe-key")
        .env("NEON_API_HOST", format!("{neon}/api/v2"))
        .env("AWS_ENDPOINT_URL", aws)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("DEPLOYER_STATE_DIR", state.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_infra_files_are_rejected_before_any_request() {
    let (neon, neon_hits) = probe();
    let (aws, aws_hits) = probe();
    let mut files: Vec<_> = std::fs::read_dir(fixture("infra/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "only {} fixtures", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} lists no `# expect:` line",
            file.display()
        );
        for command in [
            &["deploy", "--stage", "test"][..],
            &["diff", "--stage", "test"],
        ] {
            let (code, stdout, stderr) = deployer(file, command, &neon, &aws);
            let name = file.file_name().unwrap().to_string_lossy();
            let missing: Vec<&&str> = expects.iter().filter(|e| !stderr.contains(**e)).collect();
            if code != 2
                || !missing.is_empty()
                || !stderr.starts_with("error: ")
                || !stdout.is_empty()
            {
                failures.push(format!(
                    "{name} ({}): exit {code}, missing {missing:?}\n{stderr}",
                    command[0]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        neon_hits.load(Ordering::SeqCst),
        0,
        "bad input reached Neon"
    );
    assert_eq!(aws_hits.load(Ordering::SeqCst), 0, "bad input reached AWS");
}

#[test]
fn bad_stage_names_and_missing_keys_are_bad_input() {
    let (neon, neon_hits) = probe();
    let (aws, _) = probe();
    let config = fixture("infra/guide-aws-hono.toml");
    let (code, _, stderr) = deployer(&config, &["deploy", "--stage", "Prod!"], &neon, &aws);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`Prod!` is not a valid stage name"),
        "{stderr}"
    );
    // The guide's file needs NEON_ORG_ID.
    let (code, _, stderr) = deployer(&config, &["deploy", "--stage", "dev"], &neon, &aws);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("environment variable `NEON_ORG_ID` is not set"),
        "{stderr}"
    );
    let (code, _, stderr) = deployer(&config, &["frobnicate"], &neon, &aws);
    assert_eq!(code, 2);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    assert_eq!(neon_hits.load(Ordering::SeqCst), 0);
}

/// A function linked to a direct Neon connection string gets a one-line note naming the
/// pooled output and how to silence it; the pooled link, or `pooler_hint = false`, none.
#[test]
fn diff_notes_a_direct_neon_link_until_the_pooler_is_linked_or_the_note_silenced() {
    let (neon, _) = probe();
    let (aws, _) = probe();
    let notes = |fixture_name: &str| {
        let (code, stdout, stderr) = deployer_with(
            &fixture(fixture_name),
            &["diff", "--stage", "dev"],
            &neon,
            &aws,
            &[("NEON_ORG_ID", "org-test")],
        );
        assert_eq!(code, 0, "{stderr}");
        stdout
            .lines()
            .filter(|l| l.starts_with("note: "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let direct = notes("infra/guide-aws-hono.toml");
    assert_eq!(direct.len(), 1, "{direct:?}");
    assert!(
        direct[0].contains("MyApi links NeonDB.connection_string")
            && direct[0].contains("${MyAppProject.connection_uri_pooler}")
            && direct[0].contains("pooler_hint = false in [link.NeonDB]"),
        "{}",
        direct[0]
    );
    assert!(notes("infra/guide-pooled.toml").is_empty());
    assert!(notes("infra/guide-direct-on-purpose.toml").is_empty());
}

/// A region from the environment is known only once the AWS configuration is read: one
/// without function URLs is refused then, still before any call to AWS or Neon.
#[test]
fn a_function_url_in_a_region_without_them_is_refused_before_any_call() {
    let (neon, neon_hits) = probe();
    let (aws, aws_hits) = probe();
    let config = fixture("infra/no-region-url.toml");
    let (code, stdout, stderr) = deployer_with(
        &config,
        &["deploy", "--stage", "test"],
        &neon,
        &aws,
        &[("AWS_REGION", "me-central-1")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("function URLs are not offered in me-central-1")
            && stderr.contains("[function.MyApi] has url = true")
            && stderr.contains("hint: remove `url = true`"),
        "{stderr}"
    );
    assert_eq!(neon_hits.load(Ordering::SeqCst), 0);
    assert_eq!(aws_hits.load(Ordering::SeqCst), 0);
    // The same file deploys its function where URLs exist (it gets past the check).
    let (_, _, stderr) = deployer_with(
        &config,
        &["deploy", "--stage", "test"],
        &neon,
        &aws,
        &[("AWS_REGION", "eu-west-1")],
    );
    assert!(!stderr.contains("not offered"), "{stderr}");
}
