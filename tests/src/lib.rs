//! The integration-test harness: real services started and stopped by the tests.
//!
//! - [`pg`]: throwaway PostgreSQL clusters (TLS with a test CA, SCRAM passwords over TCP);
//! - [`certs`]: the test CAs and server certificates;
//! - [`process`]: the project's binaries run as child processes, with captured output;
//! - [`runtime_api`]: a Lambda Runtime API emulator that hands out recorded events;
//! - [`neon`]: the Neon API emulator over a throwaway cluster, with a spec-checking client;
//! - [`aws`]: moto in server mode and a proxy that records the calls made to it.

pub mod aws;
pub mod aws_model;
pub mod certs;
pub mod deploy;
pub mod neon;
pub mod paths;
pub mod pg;
pub mod process;
pub mod runtime_api;
