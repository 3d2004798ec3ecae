//! The HTTP surface: the same routes as the guide's Hono app.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::db::Database;
use crate::error::ApiError;

/// What every handler shares: built once at start-up.
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Database>,
}

/// The api's router, ready for `axum::serve`, `lambda_http::run` or `oneshot` in tests.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/version", get(version))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn hello() -> &'static str {
    "Hello Hono!"
}

#[derive(Serialize)]
struct Version {
    version: String,
}

async fn version(State(state): State<AppState>) -> Result<Json<Version>, ApiError> {
    let version = state.db.version().await?;
    Ok(Json(Version { version }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
