//! `/version` over each libpq `sslmode`, against a server whose certificate a test CA signed.

use axum::http::StatusCode;
use harness::certs::TestCa;
use harness::pg::{PgCluster, PgOptions};

use crate::{call, router_for, version_of};

const ROLE: &str = "app";
const PASSWORD: &str = "tls-test-pw";
const DB: &str = "appdb";

async fn tls_cluster() -> PgCluster {
    let pg = PgCluster::start();
    pg.create_app_db(ROLE, PASSWORD, DB).await;
    pg
}

async fn version_status(pg: &PgCluster, params: &str) -> (StatusCode, String) {
    version_status_url(&pg.url(ROLE, PASSWORD, DB, params)).await
}

async fn version_status_url(url: &str) -> (StatusCode, String) {
    let router = router_for(Some(url));
    let (status, _, body) = call(&router, "GET", "/version").await;
    (status, body)
}

#[tokio::test]
async fn disable_require_and_verify_full_with_the_ca_connect() {
    let pg = tls_cluster().await;
    let ca = pg.ca_path().display().to_string();
    for params in [
        "sslmode=disable".to_owned(),
        // No root given: encrypted, certificate not checked (as psql does).
        "sslmode=require".to_owned(),
        "sslmode=prefer".to_owned(),
        "sslmode=allow".to_owned(),
        format!("sslmode=verify-ca&sslrootcert={ca}"),
        format!("sslmode=verify-full&sslrootcert={ca}"),
        // Neon's connection strings ask for SCRAM channel binding.
        format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require"),
        "sslmode=require&channel_binding=require".to_owned(),
        // `options` reaches the server.
        "sslmode=require&options=-c%20application_name%3Dfrom-options".to_owned(),
    ] {
        let (status, body) = version_status(&pg, &params).await;
        assert_eq!(status, StatusCode::OK, "{params}: {body}");
        assert!(
            version_of(&body).starts_with("PostgreSQL "),
            "{params}: {body}"
        );
    }
}

#[tokio::test]
async fn verification_fails_with_a_wrong_ca_or_the_public_roots() {
    let pg = tls_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong_ca = dir.path().join("other-ca.crt");
    std::fs::write(&wrong_ca, TestCa::new("some other CA").cert_pem()).unwrap();
    let wrong = wrong_ca.display();
    for params in [
        format!("sslmode=verify-full&sslrootcert={wrong}"),
        format!("sslmode=verify-ca&sslrootcert={wrong}"),
        // libpq: with a root given, require verifies the chain too.
        format!("sslmode=require&sslrootcert={wrong}"),
        "sslmode=verify-full&sslrootcert=system".to_owned(),
    ] {
        let (status, body) = version_status(&pg, &params).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{params}: {body}");
        assert_eq!(body, r#"{"error":"database unavailable"}"#, "{params}");
    }
}

#[tokio::test]
async fn verify_ca_ignores_the_host_name_and_verify_full_does_not() {
    let pg = tls_cluster().await;
    let ca = pg.ca_path().display().to_string();
    // Connect to 127.0.0.1 but present a name the certificate does not carry.
    let url = |mode: &str| {
        format!(
            "host=db.wrong.example hostaddr=127.0.0.1 port={} user={ROLE} password={PASSWORD} dbname={DB} sslmode={mode} sslrootcert='{ca}'",
            pg.port()
        )
    };
    let (status, body) = version_status_url(&url("verify-ca")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = version_status_url(&url("verify-full")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn verifying_without_a_root_is_a_configuration_error() {
    let pg = tls_cluster().await;
    let (status, body) = version_status(&pg, "sslmode=verify-full").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "database not configured");
    assert!(
        v["hint"].as_str().unwrap().contains("sslrootcert=system"),
        "{body}"
    );
}

#[tokio::test]
async fn require_refuses_a_server_without_tls_and_prefer_falls_back() {
    let pg = PgCluster::start_with(PgOptions {
        tls: false,
        ..Default::default()
    });
    pg.create_app_db(ROLE, PASSWORD, DB).await;
    let (status, _) = version_status(&pg, "sslmode=require").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = version_status(&pg, "sslmode=prefer").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
