//! The routes, called in-process as a client sees them.

use axum::http::StatusCode;
use harness::pg::{PgCluster, PgOptions};

use crate::{call, router_for, version_of};

#[tokio::test]
async fn root_answers_hello_hono_as_plain_text() {
    let router = router_for(None);
    let (status, content_type, body) = call(&router, "GET", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert_eq!(body, "Hello Hono!");
}

#[tokio::test]
async fn unknown_path_is_a_json_404_and_wrong_method_a_405() {
    let router = router_for(None);
    let (status, content_type, body) = call(&router, "GET", "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, r#"{"error":"not found"}"#);
    let (status, _, body) = call(&router, "POST", "/version").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body, r#"{"error":"method not allowed"}"#);
}

#[tokio::test]
async fn version_without_a_database_is_503_with_a_hint() {
    let router = router_for(None);
    let (status, content_type, body) = call(&router, "GET", "/version").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "database not configured");
    assert!(
        v["hint"].as_str().unwrap().contains("DATABASE_URL"),
        "{body}"
    );
    // `/` does not depend on the database.
    assert_eq!(call(&router, "GET", "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn version_reports_the_servers_version() {
    let pg = PgCluster::start_with(PgOptions {
        tls: false,
        ..Default::default()
    });
    pg.create_app_db("app", "app-pw", "appdb").await;
    let router = router_for(Some(&pg.url("app", "app-pw", "appdb", "sslmode=disable")));
    let (status, content_type, body) = call(&router, "GET", "/version").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/json");
    let expected: String = pg
        .admin()
        .await
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version_of(&body), expected);
}
