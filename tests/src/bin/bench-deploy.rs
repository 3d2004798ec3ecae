//! Benchmark driver (bench/run): the deployer against moto and the Neon emulator, with the
//! latencies of real clouds injected: Neon's project creation takes 5 s of operations and
//! its other operations 1 s; every AWS call takes 30 ms more, a new function is Pending for
//! 2 s, a new IAM role cannot be assumed for 8 s, an update is InProgress for 2 s.
//!
//! For the guide's two examples it times a fresh deploy (default concurrency, and
//! `--concurrency 1` for comparison), a code-only redeploy and a no-op redeploy, and
//! example 2 with two migrations (the function waits for them) fresh, and a rollback; and
//! computes each one's critical path from the same delays: the longest chain of waits the
//! resources' dependencies impose, which no deployer can beat. One JSON line per run.
//!
//! usage: bench-deploy <runs>

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::aws::Timings;
use harness::deploy::{DeployStack, lambda_artifacts, temp_config};
use harness::fixtures::{GUIDE_FULL, GUIDE_HONO};
use harness::paths::fixture;

const PROJECT_CREATE: Duration = Duration::from_secs(5);
const OTHER_OPERATION: Duration = Duration::from_secs(1);

fn timings() -> Timings {
    Timings {
        latency: Duration::from_millis(30),
        pending: Duration::from_secs(2),
        in_progress: Duration::from_secs(2),
        iam_propagation: Duration::from_secs(8),
        iam_read_lag: Duration::ZERO,
        ..Timings::default()
    }
}

/// The critical paths, in seconds, from the injected delays.
struct Critical {
    /// Example 2: the function needs the project's URI (5 s of operations) and a role Lambda
    /// can assume (three IAM calls, then 8 s); then it is Pending 2 s; then its URL and two
    /// permissions (three calls) and the log group (two calls before the function).
    api_fresh: f64,
    /// Example 2 with migrations: the same, but the function also waits for the migrations,
    /// which wait for the project; their SQL time is measured per run (see `migrations`).
    api_migrations_fresh: f64,
    /// Example 1: project, branch, endpoint, role, database: a chain, each waiting on the
    /// one before (and Neon runs one operation per project at a time).
    full_fresh: f64,
    /// The read that finds the code changed, the upload, its InProgress wait, and the read
    /// that sees it done; without the upload, which is measured per run (see `upload`).
    code_only: f64,
}

/// What a release took of the services, on its critical path, as the proxy saw each call
/// from holding it to its answer: the versions listed, `$LATEST` invoked for the check,
/// the version published, the alias made or moved, and the request to the URL after
/// `live` moved (the harness's Lambda timing it). Work no deployer avoids; the read of
/// the alias overlaps the others and is not counted.
fn release_seconds(stack: &DeployStack) -> f64 {
    let calls: f64 = stack
        .aws
        .calls()
        .iter()
        .filter(|c| {
            c.path.ends_with("/versions")
                || c.path.ends_with("/invocations")
                || (c.method != "GET" && c.path.contains("/aliases"))
        })
        .filter_map(|c| c.answered.map(|a| a.duration_since(c.at).as_secs_f64()))
        .sum();
    let url = stack
        .aws
        .executor()
        .url_times()
        .last()
        .map_or(0.0, |d| d.as_secs_f64());
    calls + url
}

/// How long Lambda (moto behind the latency model) took to take the code-only deploy's
/// upload: from the proxy holding the whole request to the answer, injected latency
/// included. Part of the critical path: no deployer uploads faster than the service takes it.
fn upload_seconds(stack: &DeployStack) -> f64 {
    stack
        .aws
        .calls()
        .iter()
        .find(|c| c.method == "PUT" && c.path.ends_with("/code"))
        .and_then(|c| c.answered.map(|a| a.duration_since(c.at).as_secs_f64()))
        .expect("the code-only deploy uploaded its code")
}

fn critical() -> Critical {
    let t = timings();
    let lat = t.latency.as_secs_f64();
    let neon = PROJECT_CREATE.as_secs_f64();
    let role = 3.0 * lat + t.iam_propagation.as_secs_f64();
    Critical {
        api_fresh: neon.max(role) + lat + t.pending.as_secs_f64() + 3.0 * lat,
        // The SQL time is added per run: `critical_with_migrations`.
        api_migrations_fresh: neon,
        full_fresh: neon + 4.0 * OTHER_OPERATION.as_secs_f64(),
        // The first read, the InProgress wait and the read that sees it over.
        code_only: 2.0 * lat + t.in_progress.as_secs_f64(),
    }
}

/// Example 2's critical path when its function waits for migrations that ran `sql` seconds
/// (the work no deployer avoids): the project, then the migrations, against the role.
fn critical_with_migrations(c: &Critical, sql: f64) -> f64 {
    let t = timings();
    let lat = t.latency.as_secs_f64();
    let role = 3.0 * lat + t.iam_propagation.as_secs_f64();
    (c.api_migrations_fresh + sql).max(role) + lat + t.pending.as_secs_f64() + 3.0 * lat
}

/// A folder for DEPLOYER_ARTIFACT_DIR with this `api/bootstrap`.
fn artifacts(binary: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("api")).expect("mkdir");
    std::fs::write(dir.path().join("api/bootstrap"), binary).expect("write bootstrap");
    dir
}

async fn timed(
    stack: &DeployStack,
    config: &Path,
    args: &[&str],
    artifact_dir: &Path,
) -> serde_json::Value {
    stack.neon.emulator.clear_requests();
    stack.aws.clear();
    stack.aws.executor().clear_url_times();
    let mut cmd = stack.command(config, args);
    cmd.env("DEPLOYER_ARTIFACT_DIR", artifact_dir);
    let started = Instant::now();
    let out = cmd.output().await.expect("run deployer");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "deploy failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let neon = stack.neon.emulator.requests();
    let aws = stack.aws.calls();
    // What the deployer reports for each migration it applied: `Migrated ... (0.1s)`.
    let migrations: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("Migrated"))
        .filter_map(|l| {
            l.rsplit_once('(')?
                .1
                .strip_suffix("s)")?
                .parse::<f64>()
                .ok()
        })
        .fold(0.0, |a, b| a + b);
    // BENCH_TRACE=1: each AWS call's time since the run started, to see where time goes.
    if std::env::var_os("BENCH_TRACE").is_some() {
        for c in &aws {
            eprintln!(
                "{:>7.3} s  {} {} {}",
                c.at.duration_since(started).as_secs_f64(),
                c.method,
                c.path,
                c.action.as_deref().unwrap_or("")
            );
        }
        eprintln!("{seconds:>7.3} s  done: {}", args.join(" "));
    }
    serde_json::json!({
        "seconds": seconds,
        "neon_calls": neon.len(),
        "neon_mutating": neon.iter().filter(|r| r.mutating).count(),
        "aws_calls": aws.len(),
        "aws_mutating": aws.iter().filter(|c| c.mutating()).count(),
        "migrations_seconds": migrations,
        "release_seconds": release_seconds(stack),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let stack = DeployStack::start(|c| {
        c.operation_delay = OTHER_OPERATION;
        c.operation_delays = BTreeMap::from([("create_timeline".to_owned(), PROJECT_CREATE)]);
    })
    .await;
    stack.aws.set_timings(timings());
    let binary = std::fs::read(lambda_artifacts().join("api/bootstrap")).expect("built api");
    let mut changed = binary.clone();
    changed.extend_from_slice(b"\0bench: a different build");
    let (same, other) = (artifacts(&binary), artifacts(&changed));
    let (_api_dir, api) = temp_config(harness::fixtures::read(GUIDE_HONO));
    let full = fixture(GUIDE_FULL);
    let (_migrations_dir, migrating) = harness::fixtures::with_migrations(GUIDE_HONO, "");
    let c = critical();

    let mut results = Vec::new();
    for i in 0..runs {
        let mut one = serde_json::Map::new();
        let stage = format!("bench{i}");
        let serial = format!("serial{i}");
        let (full_stage, full_serial) = (format!("full{i}"), format!("fullserial{i}"));
        let fd = ["deploy", "--stage", full_stage.as_str()];
        let fs = [
            "deploy",
            "--stage",
            full_serial.as_str(),
            "--concurrency",
            "1",
        ];
        let d = ["deploy", "--stage", stage.as_str()];
        let s = ["deploy", "--stage", serial.as_str(), "--concurrency", "1"];
        let fresh = timed(&stack, &api, &d, same.path()).await;
        let fresh_release = fresh["release_seconds"].as_f64().unwrap_or(0.0);
        one.insert("api_fresh".into(), fresh);
        // The zip the deployer uploaded: what "Lambda zip" should measure.
        let uploaded = stack
            .aws
            .model()
            .code(&format!("aws-hono-{stage}-MyApi"))
            .map_or(0, |z| z.len());
        one.insert("zip_bytes".into(), serde_json::json!(uploaded));
        one.insert(
            "api_noop".into(),
            timed(&stack, &api, &d, same.path()).await,
        );
        let code_only = timed(&stack, &api, &d, other.path()).await;
        let code_release = code_only["release_seconds"].as_f64().unwrap_or(0.0);
        one.insert("api_code_only".into(), code_only);
        let upload = upload_seconds(&stack);
        // Back to the first release: one call and its reads.
        let rollback = ["rollback", "--stage", stage.as_str()];
        one.insert(
            "api_rollback".into(),
            timed(&stack, &api, &rollback, same.path()).await,
        );
        one.insert(
            "api_fresh_serial".into(),
            timed(&stack, &api, &s, same.path()).await,
        );
        let m_stage = format!("migrations{i}");
        let md = ["deploy", "--stage", m_stage.as_str()];
        let with_migrations = timed(&stack, &migrating, &md, same.path()).await;
        let sql = with_migrations["migrations_seconds"]
            .as_f64()
            .unwrap_or(0.0);
        let migrations_release = with_migrations["release_seconds"].as_f64().unwrap_or(0.0);
        one.insert("api_migrations_fresh".into(), with_migrations);
        one.insert(
            "full_fresh".into(),
            timed(&stack, &full, &fd, same.path()).await,
        );
        one.insert(
            "full_noop".into(),
            timed(&stack, &full, &fd, same.path()).await,
        );
        one.insert(
            "full_fresh_serial".into(),
            timed(&stack, &full, &fs, same.path()).await,
        );
        one.insert(
            "critical".into(),
            serde_json::json!({
                "api_fresh": c.api_fresh + fresh_release,
                "api_migrations_fresh": critical_with_migrations(&c, sql) + migrations_release,
                "full_fresh": c.full_fresh,
                "code_only": c.code_only + upload + code_release,
                "upload": upload,
            }),
        );
        results.push(serde_json::Value::Object(one));
    }
    println!("{}", serde_json::Value::Array(results));
}
