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
