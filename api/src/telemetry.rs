//! Logging: JSON lines on Lambda (CloudWatch parses them), compact text locally; `RUST_LOG`
//! chooses what is logged (default `info`), as `target=level` directives.
//!
//! `Targets` rather than `EnvFilter`: it reads the same `RUST_LOG=info,api=debug` syntax
//! without span and field filters, and keeps the regex engine out of the Lambda binary.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(json: bool) {
    let default = || Targets::new().with_default(Level::INFO);
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => match value.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(e) => (default(), Some(e)),
        },
        _ => (default(), None),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(
                fmt::layer()
                    .compact()
                    .with_target(false)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .init();
    }
    if let Some(e) = bad_filter {
        tracing::warn!(error = %e, "`RUST_LOG` is not a valid filter; logging at info");
    }
}
