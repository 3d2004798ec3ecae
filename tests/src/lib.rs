//! The integration-test harness: real services started and stopped by the tests.
//!
//! - [`pg`]: throwaway PostgreSQL clusters (TLS with a test CA, SCRAM passwords over TCP);
//! - [`certs`]: the test CAs and server certificates;
//! - [`process`]: the project's binaries run as child processes, with captured output;
//! - [`runtime_api`]: a Lambda Runtime API emulator that hands out recorded events;
//! - [`pgbouncer`]: PgBouncer in transaction mode (Neon's pooler) in front of a cluster;
//! - [`load`]: concurrent HTTP load whose every answer the test judges;
//! - [`neon`]: the Neon API emulator (a server per branch), with a spec-checking client;
//! - [`aws`]: moto in server mode and a proxy that records the calls made to it;
//! - [`aws_model`], [`s3_model`]: what the proxy adds of AWS's documented behaviour, and
//!   [`aws_answers`] AWS's answers as it writes them; [`lambda_exec`] Lambda's execution
//!   side (Invoke runs the uploaded `bootstrap`; logs), [`lambda_urls`] function URLs by
//!   hostname;
//! - [`deploy`]: one test's whole stack (Neon emulator, moto, a state folder), the deployer
//!   run against it, and typed reads of what it recorded and made;
//! - [`fixtures`]: the fixture files, edited only where the text to replace is there;
//! - [`sqlx_migrator`]: sqlx's own migrator, run on what the deployer migrated.

pub mod aws;
pub mod aws_aliases;
pub mod aws_answers;
pub mod aws_model;
pub mod certs;
pub mod deploy;
pub mod edge;
pub mod fixtures;
pub mod lambda_exec;
pub mod lambda_urls;
pub mod load;
pub mod neon;
pub mod paths;
pub mod pg;
pub mod pgbouncer;
pub mod process;
pub mod runtime_api;
pub mod s3_model;
pub mod sqlx_migrator;
