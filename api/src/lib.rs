//! The api: `GET /` and `GET /version` over Postgres, on AWS Lambda or locally.
//!
//! `main` wires these together; tests build the same router with [`routes::app`].

pub mod config;
pub mod db;
pub mod error;
pub mod routes;
pub mod server;
pub mod telemetry;

// Connection strings and TLS live in the shared `pgconn` crate; re-exported so the api
// keeps one path for them.
pub use pgconn::{conninfo, tls};

pub use routes::{AppState, app};
