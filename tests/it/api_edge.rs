//! The api's connection through a Neon-like edge (TLS terminated in front of PostgreSQL):
//! `sslnegotiation=direct` starts TLS at once with ALPN `postgresql` and saves the
//! `SSLRequest` round trip, landing the cold path on the floor: TCP, TLS, SCRAM's three
//! exchanges, the query. Round trips are counted at the edge, so nothing here is timed.

use axum::http::StatusCode;
use harness::certs::TestCa;
use harness::edge::{Edge, EdgeConfig};
use harness::pg::PgCluster;

use crate::{call, router_for, version_of};

/// TCP 1 + TLS 1 + start-up with SCRAM-SHA-256 3 + the query 1.
const FLOOR: u32 = 6;

/// The round trips of the api's first connection, after its first `/version`.
async fn first_connection(pg: &PgCluster, negotiation: &str) -> harness::edge::ConnStats {
    let cert = TestCa::new("edge test CA").server_cert(&["localhost"]);
    let edge = Edge::start(EdgeConfig {
        upstream: ([127, 0, 0, 1], pg.port()).into(),
        one_way: std::time::Duration::ZERO,
        tls: Some((cert.cert_pem, cert.key_pem)),
    })
    .await;
    let url = format!(
        "postgresql://app:edge-pw@localhost:{}/appdb?sslmode=require{negotiation}",
        edge.addr.port()
    );
    let router = router_for(Some(&url));
    let (status, _, body) = call(&router, "GET", "/version").await;
    assert_eq!(status, StatusCode::OK, "{negotiation}: {body}");
    assert!(version_of(&body).starts_with("PostgreSQL "), "{body}");
    let connections = edge.connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    connections[0].clone()
}

#[tokio::test]
async fn direct_tls_saves_the_ssl_request_and_reaches_the_floor() {
    let pg = PgCluster::start();
    pg.create_app_db("app", "edge-pw", "appdb").await;

    let direct = first_connection(&pg, "&sslnegotiation=direct").await;
    assert!(direct.direct_tls, "{direct:?}");
    assert_eq!(
        direct.alpn.as_deref(),
        Some("postgresql"),
        "PostgreSQL 17 needs it"
    );
    assert_eq!(direct.round_trips, FLOOR, "{direct:?}");

    let classic = first_connection(&pg, "").await;
    assert!(!classic.direct_tls, "{classic:?}");
    assert_eq!(classic.round_trips, FLOOR + 1, "{classic:?}");
}

/// On Lambda the api connects while the runtime initialises, before the first event: by
/// the time an invocation arrives, TCP, TLS and SCRAM are done, and the invocation waits
/// for one round trip only, the query.
#[tokio::test]
async fn on_lambda_the_connection_is_made_during_init_not_on_the_first_event() {
    use harness::paths::workspace_bin;
    use harness::process::{Spawned, clean_command};
    use harness::runtime_api::{Outcome, RuntimeApi};

    let pg = PgCluster::start();
    pg.create_app_db("app", "edge-pw", "appdb").await;
    let cert = TestCa::new("edge test CA").server_cert(&["localhost"]);
    let edge = Edge::start(EdgeConfig {
        upstream: ([127, 0, 0, 1], pg.port()).into(),
        one_way: std::time::Duration::from_millis(2),
        tls: Some((cert.cert_pem, cert.key_pem)),
    })
    .await;
    let runtime = RuntimeApi::start().await;
    let mut env: std::collections::BTreeMap<String, String> = runtime
        .function_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert(
        "DATABASE_URL".into(),
        format!(
            "postgresql://app:edge-pw@localhost:{}/appdb?sslmode=require&sslnegotiation=direct",
            edge.addr.port()
        ),
    );
    let function = Spawned::start(clean_command(&workspace_bin("api"), &env));

    // No event yet: the connection is made all the same, start-up included.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let before = loop {
        let c = edge.connections();
        if c.first().is_some_and(|c| c.round_trips == FLOOR - 1) {
            break c[0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection during init: {c:?}\n{}",
            function.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Settled: nothing more happens on it until an event comes.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(edge.connections()[0], before);

    let event = harness::fixtures::event("function-url-get-version.json");
    match runtime
        .invoke(event, std::time::Duration::from_secs(20))
        .await
    {
        Outcome::Response(v) => assert_eq!(v["statusCode"], 200, "{v}"),
        Outcome::Error(e) => panic!("{e}"),
    }
    let after = edge.connections();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        after[0].round_trips, FLOOR,
        "the invocation waited for the query only"
    );
}

/// Against PostgreSQL's own TLS (PostgreSQL 15, OpenSSL 3.0), the classic path takes one
/// round trip more than its floor, and the packets say whose it is: the server answers the
/// first ClientHello with a HelloRetryRequest for secp256r1 (0x0017). PostgreSQL before 18
/// sets its key exchange to `ssl_ecdh_curve`, default `prime256v1`, only, while the client
/// (rustls, as browsers do) sends shares for X25519MLKEM768 and X25519. Neon's proxy, which
/// terminates TLS for every Neon endpoint, takes X25519 (the edge above stands in for it):
/// the round trip exists against a bare PostgreSQL server only.
#[tokio::test]
async fn against_postgresql_15s_own_tls_the_extra_round_trip_is_its_hello_retry_for_p256() {
    let pg = PgCluster::start();
    pg.create_app_db("app", "edge-pw", "appdb").await;
    let relay = Edge::start(EdgeConfig {
        upstream: ([127, 0, 0, 1], pg.port()).into(),
        one_way: std::time::Duration::ZERO,
        tls: None,
    })
    .await;
    let url = format!(
        "postgresql://app:edge-pw@localhost:{}/appdb?sslmode=require",
        relay.addr.port()
    );
    let router = router_for(Some(&url));
    let (status, _, body) = call(&router, "GET", "/version").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = &relay.connections()[0];
    assert_eq!(connection.hello_retry_group, Some(0x0017), "{connection:?}");
    assert_eq!(connection.round_trips, FLOOR + 2, "{connection:?}");
}
