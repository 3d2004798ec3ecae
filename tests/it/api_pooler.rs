//! Scale-out: the api behind a transaction-mode pooler (PgBouncer, as Neon's `-pooler`
//! host) serves 200 client connections over 5 server connections without an error, and
//! straight to a PostgreSQL that runs out of connections it answers 503 at once, keeps
//! serving `/`, and recovers by itself when connections free up.
//!
//! Five api processes of 40 connections each stand for Lambda instances scaling out.

use std::time::Duration;

use harness::load;
use harness::pg::{PgCluster, PgOptions};
use harness::pgbouncer::{PgBouncer, PoolerOptions};
use harness::process::ApiServer;

const PASSWORD: &str = "pooler-pw";
const INSTANCES: usize = 5;
const CONNECTIONS_EACH: &str = "40";
const CONNECT_TIMEOUT_MS: u64 = 2000;

/// A cluster that takes 50 connections (47 for non-superusers), as a small compute does.
async fn small_database() -> PgCluster {
    let pg = PgCluster::start_with(PgOptions {
        tls: true,
        max_connections: 50,
    });
    pg.create_app_db("app", PASSWORD, "appdb").await;
    pg
}

fn instances(url: &str) -> Vec<ApiServer> {
    let timeout = CONNECT_TIMEOUT_MS.to_string();
    (0..INSTANCES)
        .map(|_| {
            ApiServer::start(&[
                ("DATABASE_URL", url),
                ("DB_POOL_SIZE", CONNECTIONS_EACH),
                ("DB_CONNECT_TIMEOUT_MS", &timeout),
            ])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_transaction_pooler_200_connections_get_every_answer() {
    let pg = small_database().await;
    // Five server connections, each closed a second after it was opened once released:
    // consecutive transactions of one client land on different server connections.
    let bouncer = PgBouncer::start(&pg, &["app"], PoolerOptions::default()).await;
    let apis = instances(&bouncer.url("app", PASSWORD, "appdb"));
    let targets: Vec<String> = apis.iter().map(|a| a.url("/version")).collect();

    let outcomes = load::run(&targets, 10_000, 64).await;
    let failures = load::not_versions(&outcomes);
    assert!(
        failures.is_empty(),
        "{} of {} failed, first: {:?}\napi log:\n{}\npgbouncer log:\n{}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(3)],
        apis[0].logs(),
        bouncer.log()
    );
    for api in &apis {
        assert!(!api.logs().contains("ERROR"), "{}", api.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_version_answers_503_at_once_and_recovers() {
    let pg = small_database().await;
    let url = pg.url(
        "app",
        PASSWORD,
        "appdb",
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca_path().display()),
    );
    let mut apis = instances(&url);
    // Every instance's /version, and its / beside it.
    let mut targets: Vec<String> = apis.iter().map(|a| a.url("/version")).collect();
    targets.extend(apis.iter().map(|a| a.url("/")));

    let outcomes = load::run(&targets, 4_000, 64).await;
    let (version, root): (Vec<_>, Vec<_>) = outcomes.iter().partition(|o| o.target < INSTANCES);
    let refused: Vec<_> = version.iter().filter(|o| o.status == Ok(503)).collect();
    assert!(
        !refused.is_empty(),
        "200 connections to a server that takes 47: some must be refused"
    );
    for o in &version {
        assert!(
            o.status == Ok(200) || o.status == Ok(503),
            "only answers or 503: {o:?}"
        );
    }
    for o in &refused {
        assert_eq!(o.body, r#"{"error":"database unavailable"}"#);
        assert!(
            o.elapsed < Duration::from_millis(CONNECT_TIMEOUT_MS),
            "a refused connection answers at once, not after a hang: {o:?}"
        );
    }
    for o in &root {
        assert_eq!(
            (o.status.clone(), o.body.as_str()),
            (Ok(200), "Hello Hono!"),
            "`/` keeps serving"
        );
    }
    for api in &mut apis {
        assert!(
            api.process.wait_exit(Duration::ZERO).is_none(),
            "no instance exits"
        );
    }
    // The log names the SQLSTATE and what to do.
    let logs: String = apis.iter().map(ApiServer::logs).collect();
    assert!(logs.contains("53300"), "{logs}");
    assert!(logs.contains("connection_uri_pooler"), "{logs}");
    assert!(!logs.contains(PASSWORD));

    // The spike ends and instances are retired, as Lambda does: the one left gets
    // connections for all its slots, with no restart.
    let survivor = apis.remove(0);
    for api in &apis {
        api.process.signal("TERM");
    }
    for api in &mut apis {
        assert!(api.process.wait_exit(Duration::from_secs(10)).is_some());
    }
    let again = load::run(&[survivor.url("/version")], 200, 8).await;
    let failed: Vec<_> = again.iter().filter(|o| o.status != Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed after the spike: {:?}\n{}",
        failed.len(),
        failed.first(),
        survivor.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_at_its_client_limit_gets_503_and_a_log_that_says_so() {
    let pg = small_database().await;
    let bouncer = PgBouncer::start(
        &pg,
        &["app"],
        PoolerOptions {
            max_client_conn: 10,
            ..PoolerOptions::default()
        },
    )
    .await;
    let timeout = CONNECT_TIMEOUT_MS.to_string();
    let url = bouncer.url("app", PASSWORD, "appdb");
    let api = ApiServer::start(&[
        ("DATABASE_URL", url.as_str()),
        ("DB_POOL_SIZE", "20"),
        ("DB_CONNECT_TIMEOUT_MS", &timeout),
    ]);
    let outcomes = load::run(&[api.url("/version"), api.url("/")], 400, 16).await;
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|o| o.target == 0 && o.status == Ok(503))
        .collect();
    assert!(!refused.is_empty(), "20 clients, a limit of 10");
    for o in &refused {
        assert_eq!(o.body, r#"{"error":"database unavailable"}"#);
        assert!(
            o.elapsed < Duration::from_millis(CONNECT_TIMEOUT_MS),
            "{o:?}"
        );
    }
    assert!(
        outcomes
            .iter()
            .filter(|o| o.target == 1)
            .all(|o| o.status == Ok(200)),
        "`/` keeps serving"
    );
    // The log names the SQLSTATE and says the pooler refused, not the database.
    let logs = api.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("database unavailable"))
        .unwrap_or_else(|| panic!("no log of the 503:\n{logs}"));
    assert!(line.contains("sqlstate"), "{line}");
    assert!(
        line.contains("the connection pooler refused the client"),
        "{line}"
    );
}
