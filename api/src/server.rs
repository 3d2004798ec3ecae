//! The two ways the binary serves the router: under the Lambda runtime, or as a local
//! HTTP server with graceful shutdown.

use std::future::Future;
use std::io;

use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on an already-bound listener until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Runs under the Lambda runtime (function URL events, payload format 2.0) until the
/// runtime stops. Call only when `AWS_LAMBDA_RUNTIME_API` is set: `lambda_http` panics
/// without it.
///
/// `run_concurrent` serves `AWS_LAMBDA_MAX_CONCURRENCY` invocations at once where Lambda
/// sets it (Managed Instances; `cargo lambda watch` sets it too) and one at a time
/// otherwise, as `run` does. It needs a response that is `Sync`, which axum's streaming
/// body is not, so each response is converted to lambda_http's (the conversion `run`
/// makes anyway: text or base64 by content type).
pub async fn run_lambda(app: Router) -> Result<(), lambda_http::Error> {
    use lambda_http::tower::ServiceExt;
    let handler = lambda_http::tower::service_fn(move |request: lambda_http::Request| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await?;
            Ok::<_, std::convert::Infallible>(
                lambda_http::IntoResponse::into_response(response).await,
            )
        }
    });
    lambda_http::run_concurrent(handler).await
}
