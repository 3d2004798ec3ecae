//! Benchmark driver (bench/run): the deployer against moto and the Neon emulator. Times a
//! fresh deploy and a no-op redeploy of the guide's api, counting remote calls, and prints
//! one JSON line.
//!
//! usage: bench-deploy <runs>

use std::time::Instant;

use harness::deploy::DeployStack;
use harness::paths::fixture;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let stack = DeployStack::start(|_| {}).await;
    let config = fixture("infra/guide-aws-hono.toml");
    let mut results = Vec::new();
    for i in 0..runs {
        let stage = format!("bench{i}");
        let mut one = serde_json::Map::new();
        for kind in ["fresh", "noop"] {
            stack.neon.emulator.clear_requests();
            stack.aws.clear();
            let started = Instant::now();
            let run = stack.run(&config, &["deploy", "--stage", &stage]).await;
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(run.code, 0, "deploy failed:\n{}", run.all());
            let neon = stack.neon.emulator.requests();
            let aws = stack.aws.calls();
            one.insert(
                kind.into(),
                serde_json::json!({
                    "seconds": seconds,
                    "neon_calls": neon.len(),
                    "neon_mutating": neon.iter().filter(|r| r.mutating).count(),
                    "aws_calls": aws.len(),
                    "aws_mutating": aws.iter().filter(|c| c.mutating()).count(),
                }),
            );
        }
        results.push(serde_json::Value::Object(one));
    }
    println!("{}", serde_json::Value::Array(results));
}
