//! Logging: JSON lines on Lambda (CloudWatch parses them), compact text locally; `RUST_LOG`
//! chooses what is logged (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(json: bool) {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new("info"),
            std::env::var("RUST_LOG").ok().map(|v| (v, e)),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .init();
    } else {
        builder
            .compact()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    if let Some((value, e)) = bad_filter
        && !value.is_empty()
    {
        tracing::warn!(error = %e, "`RUST_LOG` is not a valid filter; logging at info");
    }
}
