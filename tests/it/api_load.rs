//! Many concurrent clients on the local server: every request answered, none failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use harness::pg::{PgCluster, PgOptions};
use harness::process::ApiServer;

const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_version_requests_at_64_concurrent_connections_all_succeed() {
    let pg = PgCluster::start_with(PgOptions {
        tls: false,
        ..Default::default()
    });
    pg.create_app_db("app", "load-pw", "appdb").await;
    let url = pg.url("app", "load-pw", "appdb", "sslmode=disable");
    let api = ApiServer::start(&[("DATABASE_URL", &url)]);
    let target = api.url("/version");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let remaining = Arc::new(AtomicUsize::new(REQUESTS));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, target, remaining) = (client.clone(), target.clone(), remaining.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut done = 0;
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                match client.get(&target).send().await {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) if body.contains("PostgreSQL") => done += 1,
                        other => failures.push(format!("bad body: {other:?}")),
                    },
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (done, failures)
        }));
    }
    let mut ok = 0;
    let mut failures = Vec::new();
    for w in workers {
        let (done, f) = w.await.unwrap();
        ok += done;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(ok, REQUESTS);
    let logs = api.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
}
