//! The api binary as a user runs it locally: a real socket, real logs, real signals.

use std::time::{Duration, Instant};

use harness::pg::{PgCluster, PgOptions};
use harness::process::ApiServer;
use reqwest::StatusCode;

use crate::version_of;

const PASSWORD: &str = "Sup3r-Secret-Pw";

async fn get(url: &str) -> (StatusCode, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn serves_root_and_version_on_a_socket_and_stops_on_sigterm() {
    let pg = PgCluster::start();
    pg.create_app_db("app", PASSWORD, "appdb").await;
    let url = pg.url("app", PASSWORD, "appdb", "sslmode=require");
    let mut api = ApiServer::start(&[("DATABASE_URL", &url)]);

    let (status, body) = get(&api.url("/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Hello Hono!"));
    let (status, body) = get(&api.url("/version")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(version_of(&body).starts_with("PostgreSQL "));

    api.process.signal("TERM");
    let exit = api.process.wait_exit(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?}\n{}",
        api.logs()
    );
    assert!(!api.logs().contains(PASSWORD));
}

#[tokio::test]
async fn link_variable_is_preferred_over_database_url() {
    let pg = PgCluster::start();
    pg.create_app_db("app", PASSWORD, "appdb").await;
    let link = serde_json::json!({
        "connection_string": pg.url("app", PASSWORD, "appdb", "sslmode=require")
    })
    .to_string();
    // DATABASE_URL points nowhere: only the link can make /version work.
    let api = ApiServer::start(&[
        ("LINK_NeonDB", &link),
        ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
    ]);
    let (status, body) = get(&api.url("/version")).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", api.logs());
}

#[tokio::test]
async fn a_stopped_database_gives_503_in_bounded_time_and_recovers_without_restart() {
    let mut pg = PgCluster::start();
    pg.create_app_db("app", PASSWORD, "appdb").await;
    let url = pg.url("app", PASSWORD, "appdb", "sslmode=require");
    let api = ApiServer::start(&[("DATABASE_URL", &url), ("DB_CONNECT_TIMEOUT_MS", "2000")]);
    assert_eq!(get(&api.url("/version")).await.0, StatusCode::OK);

    pg.stop();
    let started = Instant::now();
    let (status, body) = get(&api.url("/version")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, r#"{"error":"database unavailable"}"#);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(&api.url("/")).await.0, StatusCode::OK);

    pg.restart();
    let (status, body) = get(&api.url("/version")).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", api.logs());
    assert!(!api.logs().contains(PASSWORD));
}

#[tokio::test]
async fn an_unresponsive_database_gives_503_within_the_connect_timeout() {
    // A listener that accepts connections and never answers: a hung proxy or firewall.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/appdb?sslmode=disable");
    let api = ApiServer::start(&[("DATABASE_URL", &url), ("DB_CONNECT_TIMEOUT_MS", "1000")]);
    let started = Instant::now();
    let (status, _) = get(&api.url("/version")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(api.logs().contains("timed out after 1s"), "{}", api.logs());
    drop(silent);
}

#[tokio::test]
async fn no_configuration_gives_503_and_a_log_naming_both_variables() {
    let api = ApiServer::start(&[]);
    let (status, body) = get(&api.url("/version")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("database not configured"), "{body}");
    assert!(body.contains("hint"), "{body}");
    let logs = api.logs();
    assert!(
        logs.contains("`LINK_NeonDB`") && logs.contains("`DATABASE_URL`"),
        "{logs}"
    );
    assert_eq!(get(&api.url("/")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn malformed_settings_give_503_and_never_log_the_password() {
    let cases = [
        (
            "DATABASE_URL",
            format!("postgres://app:{PASSWORD}@localhost:notaport/appdb"),
            "port",
        ),
        (
            "DATABASE_URL",
            format!("postgres://app:{PASSWORD}@localhost/appdb?sslmode=always"),
            "sslmode",
        ),
        (
            "DATABASE_URL",
            format!("host=localhost password='{PASSWORD}"),
            "unterminated quote",
        ),
        (
            "LINK_NeonDB",
            format!(r#"{{"connection_string":"postgres://app:{PASSWORD}@h/db""#),
            "not valid JSON",
        ),
        (
            "LINK_NeonDB",
            format!(r#""postgres://app:{PASSWORD}@h/db""#),
            "connection_string",
        ),
    ];
    for (var, value, expected) in cases {
        let api = ApiServer::start(&[(var, &value)]);
        let (status, body) = get(&api.url("/version")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{var}={value}");
        assert!(!body.contains(PASSWORD));
        let logs = api.logs();
        assert!(
            logs.contains(var) && logs.contains(expected),
            "{var}: {logs}"
        );
        assert!(
            !logs.contains(PASSWORD),
            "password leaked for {var}:\n{logs}"
        );
    }
}

#[tokio::test]
async fn a_wrong_ca_gives_503_and_a_log_that_says_why() {
    let pg = PgCluster::start();
    pg.create_app_db("app", PASSWORD, "appdb").await;
    let dir = tempfile::tempdir().unwrap();
    let wrong_ca = dir.path().join("wrong-ca.crt");
    std::fs::write(&wrong_ca, harness::certs::TestCa::new("wrong").cert_pem()).unwrap();
    let url = pg.url(
        "app",
        PASSWORD,
        "appdb",
        &format!("sslmode=verify-full&sslrootcert={}", wrong_ca.display()),
    );
    let api = ApiServer::start(&[("DATABASE_URL", &url)]);
    let (status, _) = get(&api.url("/version")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let logs = api.logs();
    assert!(logs.contains("invalid peer certificate"), "{logs}");
    assert!(!logs.contains(PASSWORD));
}

#[tokio::test]
async fn a_wrong_password_is_logged_without_the_password() {
    let pg = PgCluster::start_with(PgOptions {
        tls: false,
        ..Default::default()
    });
    pg.create_app_db("app", PASSWORD, "appdb").await;
    let url = pg.url("app", "Not-The-Password", "appdb", "sslmode=disable");
    let api = ApiServer::start(&[("DATABASE_URL", &url)]);
    assert_eq!(
        get(&api.url("/version")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let logs = api.logs();
    assert!(logs.contains("password authentication failed"), "{logs}");
    assert!(!logs.contains("Not-The-Password"));
}
