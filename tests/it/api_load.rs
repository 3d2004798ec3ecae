//! Many concurrent clients on the local server: every request answered, none failed.

use harness::load;
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

    let outcomes = load::run(&[target], REQUESTS, CONCURRENCY).await;
    let failures = load::not_versions(&outcomes);
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(outcomes.len(), REQUESTS);
    let logs = api.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
}
