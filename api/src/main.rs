//! The `api` binary: a Lambda function when `AWS_LAMBDA_RUNTIME_API` is set (Lambda itself,
//! `cargo lambda watch`), otherwise a local HTTP server on `HOST`:`PORT`.

use std::process::ExitCode;
use std::sync::Arc;

use api::config::Settings;
use api::db::Database;
use api::error::Chain;
use api::{AppState, app, server, telemetry, tls};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::from_env(|k| std::env::var(k).ok());
    telemetry::init(settings.lambda);
    tls::install_default_provider();
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    if let Err(e) = &settings.database {
        // Keep serving: `/` works, and `/version` answers 503 with the same hint.
        tracing::error!(error = %Chain(e), hint = e.hint(), "database not configured; /version will answer 503");
    }

    let db = Arc::new(Database::new(
        settings.database,
        settings.connect_timeout,
        settings.pool_size,
    ));
    // Connect while the runtime starts polling for the first event.
    tokio::spawn({
        let db = db.clone();
        async move { db.warm_up().await }
    });
    let app = app(AppState { db });

    if settings.lambda {
        return match server::run_lambda(app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "lambda runtime stopped");
                ExitCode::FAILURE
            }
        };
    }

    let addr = match settings.listen {
        Ok(addr) => addr,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, hint = "set PORT to a free port, or PORT=0 for any", "cannot listen on {addr}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => tracing::info!("listening on http://{bound}"),
        Err(e) => tracing::warn!(error = %e, "listening, but cannot tell on which address"),
    }
    match server::serve(listener, app, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server stopped");
            ExitCode::FAILURE
        }
    }
}
