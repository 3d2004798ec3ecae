//! The api: `GET /` and `GET /version` over Postgres, on AWS Lambda or locally.
//!
//! `main` wires these together; tests build the same router with [`routes::app`].

pub mod config;
pub mod conninfo;
pub mod db;
pub mod error;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod tls;

pub use routes::{AppState, app};
