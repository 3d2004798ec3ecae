//! A minimal emulator of the AWS Lambda Runtime API (`/2018-06-01/runtime/...`): a function
//! process polls `invocation/next`, gets the events handed to [`RuntimeApi::invoke`], and
//! posts its answers to `invocation/{id}/response` (or `/error`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

type Pending = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

#[derive(Clone)]
struct Shared {
    events: Arc<Mutex<mpsc::Receiver<(String, Value)>>>,
    pending: Pending,
    init_error: Arc<std::sync::Mutex<Option<Value>>>,
}

/// The emulator, listening on a loopback port until dropped.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::Sender<(String, Value)>,
    pending: Pending,
    init_error: Arc<std::sync::Mutex<Option<Value>>>,
    next_id: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Starts the emulator on a free loopback port.
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::channel(16);
        let shared = Shared {
            events: Arc::new(Mutex::new(rx)),
            pending: Default::default(),
            init_error: Default::default(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime API");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RuntimeApi {
            addr,
            events: tx,
            pending: shared.pending,
            init_error: shared.init_error,
            next_id: AtomicU64::new(1),
            server,
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The environment Lambda gives a function, pointing at this emulator.
    pub fn function_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.endpoint()),
            ("AWS_LAMBDA_FUNCTION_NAME", "api".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/api".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Queues `event` for the function's next poll; the receiver gets its answer.
    pub async fn submit(&self, event: Value) -> oneshot::Receiver<Outcome> {
        let id = format!(
            "00000000-0000-4000-8000-{:012}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        self.submit_as(id, event).await
    }

    /// [`RuntimeApi::submit`] with the request ID `id` (what Lambda's log lines name).
    pub async fn submit_as(&self, id: String, event: Value) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), tx);
        self.events
            .send((id, event))
            .await
            .expect("emulator running");
        rx
    }

    /// Hands `event` to the function and waits up to `timeout` for its answer.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Outcome {
        let rx = self.submit(event).await;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => panic!("the emulator dropped the invocation"),
            Err(_) => panic!(
                "the function did not answer within {timeout:?} (init error: {:?})",
                self.init_error.lock().unwrap()
            ),
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Shared>) -> impl IntoResponse {
    let Some((id, event)) = shared.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), Vec::new());
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(30);
    let mut headers = HeaderMap::new();
    let pairs = [
        ("lambda-runtime-aws-request-id", id),
        (
            "lambda-runtime-deadline-ms",
            deadline.as_millis().to_string(),
        ),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:api".into(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        ),
        ("content-type", "application/json".into()),
    ];
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from_str(&value).expect("header value"));
    }
    (
        StatusCode::OK,
        headers,
        serde_json::to_vec(&event).expect("event serialises"),
    )
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.pending.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_or_string(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn respond(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    settle(&shared, &id, Outcome::Response(json_or_string(&body)))
}

async fn fail(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    settle(&shared, &id, Outcome::Error(json_or_string(&body)))
}

async fn init_error(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(json_or_string(&body));
    StatusCode::ACCEPTED
}
