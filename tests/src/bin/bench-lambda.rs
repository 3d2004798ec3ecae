//! Benchmark driver (bench/run): a function binary under the Lambda Runtime API emulator.
//! Measures exec to the first `/version` response, then the mean warm invocation, and
//! prints one JSON line.
//!
//! usage: bench-lambda <function binary> <database url> <runs> <warm invocations>

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::process::{Spawned, clean_command};
use harness::runtime_api::{Outcome, RuntimeApi};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bin, db, runs, warm] = args.as_slice() else {
        eprintln!("usage: bench-lambda <function binary> <database url> <runs> <warm invocations>");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().expect("runs is a number");
    let warm: usize = warm.parse().expect("warm invocations is a number");
    let event = harness::fixtures::event("function-url-get-version.json");

    let mut first = Vec::new();
    let mut warm_means = Vec::new();
    for _ in 0..runs {
        let runtime = RuntimeApi::start().await;
        let mut env: BTreeMap<String, String> = runtime
            .function_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.insert("DATABASE_URL".into(), db.clone());
        env.insert("RUST_LOG".into(), "warn".into());
        // The event is queued before exec, as Lambda has it waiting when the runtime polls.
        let answer = runtime.submit(event.clone()).await;
        let started = Instant::now();
        let process = Spawned::start(clean_command(std::path::Path::new(bin), &env));
        match tokio::time::timeout(Duration::from_secs(30), answer).await {
            Ok(Ok(Outcome::Response(r))) if r["statusCode"] == 200 => {}
            other => panic!("first invocation failed: {other:?}\n{}", process.output()),
        }
        first.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        for _ in 0..warm {
            match runtime.invoke(event.clone(), Duration::from_secs(30)).await {
                Outcome::Response(r) if r["statusCode"] == 200 => {}
                other => panic!("warm invocation failed: {other:?}"),
            }
        }
        warm_means.push(started.elapsed().as_secs_f64() * 1000.0 / warm.max(1) as f64);
        drop(process);
    }
    println!(
        "{}",
        serde_json::json!({ "first_ms": first, "warm_ms": warm_means })
    );
}
