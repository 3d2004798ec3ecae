//! HTTP load: a fixed number of GETs spread over a few targets by a fixed number of
//! concurrent clients (closed loop), with every answer kept for the test to judge.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One request's outcome: its target, status (or transport error) and body, and how long
/// it took.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: usize,
    pub status: Result<u16, String>,
    pub body: String,
    pub elapsed: Duration,
}

/// The outcomes that are not a 200 with PostgreSQL's version in the body.
pub fn not_versions(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes
        .iter()
        .filter(|o| o.status != Ok(200) || !o.body.contains("PostgreSQL"))
        .collect()
}

/// Sends `total` GETs, `concurrency` at a time; request `i` goes to `targets[i % len]`.
pub async fn run(targets: &[String], total: usize, concurrency: usize) -> Vec<Outcome> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("HTTP client");
    let targets = Arc::new(targets.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, targets, next) = (client.clone(), targets.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return outcomes;
                }
                let target = i % targets.len();
                let started = Instant::now();
                let (status, body) = match client.get(&targets[target]).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (Ok(status), r.text().await.unwrap_or_default())
                    }
                    Err(e) => (Err(e.to_string()), String::new()),
                };
                outcomes.push(Outcome {
                    target,
                    status,
                    body,
                    elapsed: started.elapsed(),
                });
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for w in workers {
        all.extend(w.await.expect("load worker"));
    }
    all
}
