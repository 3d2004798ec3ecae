//! Integration tests against real parts: PostgreSQL clusters started by the harness, the
//! api binary, a Lambda Runtime API emulator, and `cargo lambda watch`.

mod api_edge;
mod api_lambda;
mod api_load;
mod api_pooler;
mod api_process;
mod api_routes;
mod api_tls;
mod deployer_e2e;
mod deployer_errors;
mod deployer_function_settings;
mod deployer_function_url;
mod deployer_input;
mod deployer_lifecycle;
mod deployer_migrations;
mod deployer_package;
mod deployer_preview;
mod deployer_real_aws;
mod deployer_releases;
mod deployer_resilience;
mod deployer_s3_real;
mod deployer_shared_state;
mod dev_watch;
mod neon_behaviour;
mod neon_conformance;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use api::config::{DATABASE_URL_VAR, database_target};
use api::db::Database;
use api::{AppState, app};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The api's router for a connection string, as `main` builds it.
fn router_for(database_url: Option<&str>) -> Router {
    api::tls::install_default_provider();
    let url = database_url.map(str::to_owned);
    let target = database_target(&move |k: &str| {
        if k == DATABASE_URL_VAR {
            url.clone()
        } else {
            None
        }
    });
    let db = Database::new(target, Duration::from_secs(5), 2);
    app(AppState { db: Arc::new(db) })
}

/// One in-process request: status, content type and body.
async fn call(router: &Router, method: &str, path: &str) -> (StatusCode, String, String) {
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// The `version` field of a `/version` body.
fn version_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["version"].as_str().unwrap_or_default().to_owned()
}
