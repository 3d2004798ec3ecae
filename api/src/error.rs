//! How failures reach clients and logs: generic JSON bodies for clients, the full cause
//! chain for the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;

/// An error a handler returns; its response never contains an internal error's text.
#[derive(Debug)]
pub enum ApiError {
    NotFound,
    MethodNotAllowed,
    Database(DbError),
}

#[derive(Serialize)]
struct Body {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, hint) = match &self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found", None),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None)
            }
            ApiError::Database(DbError::NotConfigured(cause)) => {
                tracing::error!(error = %Chain(cause.as_ref()), hint = cause.hint(), "database not configured");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database not configured",
                    Some(cause.hint()),
                )
            }
            ApiError::Database(e) => {
                tracing::error!(
                    error = %Chain(e),
                    sqlstate = e.sqlstate(),
                    hint = e.hint(),
                    "database unavailable"
                );
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database unavailable",
                    None,
                )
            }
        };
        (status, Json(Body { error, hint })).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Database(e)
    }
}

pub use pgconn::Chain;
