//! AWS for tests: moto's server on a loopback port, and a proxy in front of it that records
//! the calls (and the mutating ones) a deployer run makes and adds what moto lacks (the
//! [`Model`]: latency, Lambda's states, IAM propagation; S3's in [`crate::s3_model`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::aws_answers::{iam_error, lambda_error};
use crate::aws_model::LambdaCall;
pub use crate::aws_model::{Model, Timings};
use crate::pg::free_port;
use crate::process::{Spawned, clean_command};

/// moto in server mode, with AWS's managed IAM policies loaded.
pub struct Moto {
    _process: Spawned,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let moto = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join("moto_server")).find(|p| p.is_file()))
            .unwrap_or_else(|| panic!("moto_server not found on PATH; install it with `pip install 'moto[server]'` (scripts/test does this)"));
        let port = free_port();
        let env = BTreeMap::from([
            // Without it, attaching AWSLambdaBasicExecutionRole fails: moto lacks the policy.
            (
                "MOTO_IAM_LOAD_MANAGED_POLICIES".to_owned(),
                "true".to_owned(),
            ),
        ]);
        let mut cmd = clean_command(&moto, &env);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let process = Spawned::start(cmd);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start:\n{}",
                process.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            _process: process,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// One AWS call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct AwsCall {
    pub method: String,
    pub path: String,
    /// The operation, where the protocol names it: IAM's `Action` (query protocol), CloudWatch
    /// Logs' `X-Amz-Target` (JSON protocol). Lambda's REST calls have none.
    pub action: Option<String>,
    /// The SigV4 `Authorization` header (`Credential=<key id>/...`; no secret in it).
    pub authorization: Option<String>,
    /// When the proxy received it (the whole body).
    pub at: Instant,
    /// When moto's answer was passed back (none for answers the proxy made itself).
    pub answered: Option<Instant>,
    /// The request's query string (S3 names its subresources there: `?lifecycle`).
    pub query: String,
    /// The body, when small (configuration documents; not code uploads).
    pub body: Option<String>,
    /// S3's `x-amz-expected-bucket-owner`: the account the caller requires owns the bucket.
    pub expected_owner: Option<String>,
}

impl AwsCall {
    /// Anything but a read: REST GETs and HEADs (Lambda's, S3's) and Get*/List*/Describe*
    /// operations are reads.
    pub fn mutating(&self) -> bool {
        match &self.action {
            Some(a) => {
                !(a.starts_with("Get") || a.starts_with("List") || a.starts_with("Describe"))
            }
            None => self.method != "GET" && self.method != "HEAD",
        }
    }
}

#[derive(Clone)]
struct ProxyState {
    executor: crate::lambda_exec::Executor,
    target: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<AwsCall>>>,
    deny: Arc<AtomicBool>,
    model: Arc<Mutex<Model>>,
}

/// A pass-through proxy to moto that records every call.
pub struct AwsProxy {
    pub endpoint: String,
    executor: crate::lambda_exec::Executor,
    calls: Arc<Mutex<Vec<AwsCall>>>,
    deny: Arc<AtomicBool>,
    model: Arc<Mutex<Model>>,
    server: tokio::task::JoinHandle<()>,
}

impl AwsProxy {
    pub async fn start(target: &str) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let deny = Arc::new(AtomicBool::new(false));
        let model = Arc::new(Mutex::new(Model::default()));
        let executor = crate::lambda_exec::Executor::new(target);
        let state = ProxyState {
            executor: executor.clone(),
            target: target.to_owned(),
            http: reqwest::Client::new(),
            calls: calls.clone(),
            deny: deny.clone(),
            model: model.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AwsProxy {
            endpoint,
            executor,
            calls,
            deny,
            model,
            server,
        }
    }

    pub fn calls(&self) -> Vec<AwsCall> {
        self.calls.lock().unwrap().clone()
    }

    /// The `Authorization` headers of the calls so far.
    pub fn authorizations(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| c.authorization)
            .collect()
    }

    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// While on, every call is answered as AWS answers credentials that lack the permission
    /// (moto does not check permissions): 403 `AccessDenied` in IAM's XML, 403
    /// `AccessDeniedException` in Lambda's JSON, with AWS's wording.
    pub fn deny_all(&self, on: bool) {
        self.deny.store(on, Ordering::SeqCst);
    }

    /// Sets how long the modelled behaviours last (all zero until set).
    pub fn set_timings(&self, timings: Timings) {
        self.model.lock().unwrap().timings = timings;
    }

    /// Lambda's execution side: the instances the proxy runs.
    pub fn executor(&self) -> &crate::lambda_exec::Executor {
        &self.executor
    }

    /// A GET of a function URL as a user makes it (`curl <url><path>`): through the proxy,
    /// which answers for function URLs by their hostname. Status and body.
    pub async fn get_url(&self, url: &str, path: &str) -> (u16, String) {
        let host = crate::lambda_exec::url_host(url).expect("a function URL");
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.endpoint))
            .header("host", host)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("the proxy answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// The model, to put a function in a state (Inactive, a failed update).
    pub fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap()
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(state): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    // A function URL, by its hostname: what `curl https://<id>.lambda-url...` reaches.
    if let Some(host) = parts.headers.get("host").and_then(|h| h.to_str().ok())
        && crate::lambda_exec::Executor::is_url_host(host)
    {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        return state
            .executor
            .serve_url(host, parts.method.as_str(), path, &parts.headers, &body)
            .await;
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let action = form_value(&body, "Action").or_else(|| {
        parts
            .uri
            .query()
            .and_then(|q| form_value(q.as_bytes(), "Action"))
    });
    // JSON-protocol services (CloudWatch Logs) name the operation in `X-Amz-Target`.
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned);
    let index = {
        let mut calls = state.calls.lock().unwrap();
        calls.push(AwsCall {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            action: action.clone().or_else(|| target.clone()),
            authorization: parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            at: Instant::now(),
            answered: None,
            query: parts.uri.query().unwrap_or_default().to_owned(),
            body: (body.len() <= 16 * 1024).then(|| String::from_utf8_lossy(&body).into_owned()),
            expected_owner: parts
                .headers
                .get("x-amz-expected-bucket-owner")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        calls.len() - 1
    };
    if state.deny.load(Ordering::SeqCst) {
        return access_denied(action.as_deref(), parts.uri.path());
    }
    let latency = state.model.lock().unwrap().timings.latency;
    tokio::time::sleep(latency).await;
    let role = form_value(&body, "RoleName");
    let lambda_call = match (&action, &target) {
        (Some(_), _) | (_, Some(_)) => LambdaCall::Unknown,
        (None, None) => LambdaCall::parse(parts.method.as_str(), parts.uri.path()),
    };
    // Versions: Lambda never reuses a number; moto would after a delete.
    let query = parts.uri.query().unwrap_or_default();
    let qualifier = form_value(query.as_bytes(), "Qualifier");
    if let LambdaCall::DeleteFunction(f) = &lambda_call
        && let Some(answer) = state.executor.delete_version(f, query).await
    {
        return answer;
    }
    if let (
        Some(q),
        LambdaCall::GetConfiguration(f) | LambdaCall::GetFunction(f) | LambdaCall::Invoke(f),
    ) = (&qualifier, &lambda_call)
        && state.executor.is_deleted(f, q)
    {
        return lambda_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: arn:aws:lambda:us-east-1:123456789012:function:{f}:{q}"),
        );
    }
    // An alias's URL and policy are Lambda's to keep apart; moto does not.
    if action.is_none()
        && target.is_none()
        && let Some(answer) = state
            .executor
            .alias_call(
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or_default(),
                &body,
            )
            .await
    {
        if let Some(call) = state.calls.lock().unwrap().get_mut(index) {
            call.answered = Some(Instant::now());
        }
        // A reply the model is to lose, once Lambda applied the call.
        if answer.status().is_success()
            && let Some(lost) = state.model.lock().unwrap().lost_lambda_reply(&lambda_call)
        {
            return lost;
        }
        return answer;
    }
    let early = {
        let mut model = state.model.lock().unwrap();
        match &action {
            Some(a) => model.before_iam(a, role.as_deref()),
            None => model.before_lambda(&lambda_call, &body),
        }
    };
    if let Some(answer) = early {
        return answer;
    }
    if let LambdaCall::Invoke(function) = &lambda_call {
        let qualifier = form_value(
            parts.uri.query().unwrap_or_default().as_bytes(),
            "Qualifier",
        );
        let auth = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let answer = state
            .executor
            .invoke(function, qualifier.as_deref(), &body, auth)
            .await;
        if let Some(call) = state.calls.lock().unwrap().get_mut(index) {
            call.answered = Some(Instant::now());
        }
        return answer;
    }
    // The service, as the SigV4 credential scope names it (`.../<region>/s3/aws4_request`).
    let is_s3 = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("/s3/aws4_request"));
    let s3_request = |headers| crate::s3_model::S3Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers,
        body: &body,
    };
    if is_s3
        && let Some(answer) = state
            .model
            .lock()
            .unwrap()
            .s3
            .before(&s3_request(&parts.headers))
    {
        return answer;
    }
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let method = Method::from_bytes(parts.method.as_str().as_bytes()).unwrap_or(Method::GET);
    let resp = state
        .http
        .request(method, format!("{}{path_and_query}", state.target))
        .headers(headers)
        .body(body.clone())
        .send()
        .await;
    match resp {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut bytes = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                let request = || serde_json::from_slice(&body).unwrap_or_default();
                match &lambda_call {
                    LambdaCall::CreateFunction | LambdaCall::UpdateCode(_) => {
                        state.executor.remember_code(&request(), &bytes).await
                    }
                    LambdaCall::CreateUrl(f) => state.executor.remember_url(
                        f,
                        form_value(
                            parts.uri.query().unwrap_or_default().as_bytes(),
                            "Qualifier",
                        ),
                        &bytes,
                    ),
                    LambdaCall::DeleteFunction(f) => state.executor.forget_function(f),
                    LambdaCall::Other { function, .. }
                        if parts.method == "GET" && parts.uri.path().ends_with("/versions") =>
                    {
                        if let Some(hidden) = state.executor.hide_deleted(function, &bytes) {
                            bytes = Bytes::from(hidden);
                        }
                    }
                    LambdaCall::DeletePart(f) if parts.uri.path().ends_with("/url") => {
                        state.executor.forget_urls(f)
                    }
                    _ => {}
                }
            }
            {
                let mut model = state.model.lock().unwrap();
                match &action {
                    Some(a) => model.after_iam(a, role.as_deref(), status),
                    None => {
                        if let Some(rewritten) = model.after_lambda(
                            &lambda_call,
                            parts.uri.path(),
                            &body,
                            status,
                            &bytes,
                        ) {
                            bytes = Bytes::from(rewritten);
                        }
                        if status.is_success()
                            && let Some(lost) = model.lost_lambda_reply(&lambda_call)
                        {
                            return lost;
                        }
                    }
                }
            }
            if is_s3
                && let Some(answer) = state
                    .model
                    .lock()
                    .unwrap()
                    .s3
                    .after(&s3_request(&parts.headers), status)
            {
                return answer;
            }
            if parts.method == "GET" && parts.uri.query() == Some("versioning") {
                bytes = Bytes::from(s3_versioning_as_aws_answers(&bytes));
            }
            if let Some(call) = state.calls.lock().unwrap().get_mut(index) {
                call.answered = Some(Instant::now());
            }
            let mut out = (status, bytes).into_response();
            for (k, v) in &headers {
                if k != "content-length" && k != "transfer-encoding" {
                    out.headers_mut().insert(k.clone(), v.clone());
                }
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// S3's GetBucketVersioning answers `<VersioningConfiguration>` (S3 API Reference,
/// GetBucketVersioning, "Response Syntax"); moto answers `<GetBucketVersioningResponse>`,
/// which the SDK rightly refuses to parse.
fn s3_versioning_as_aws_answers(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace("<GetBucketVersioningResponse", "<VersioningConfiguration")
        .replace(
            "</GetBucketVersioningResponse>",
            "</VersioningConfiguration>",
        )
        .into_bytes()
}

/// AWS's answer to a caller without the permission (IAM: query protocol, XML; Lambda:
/// REST-JSON with `x-amzn-ErrorType`), as documented in each service's API reference.
fn access_denied(iam_action: Option<&str>, path: &str) -> Response {
    const CALLER: &str = "arn:aws:iam::123456789012:user/ci";
    match iam_action {
        Some(action) => iam_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!(
                "User: {CALLER} is not authorized to perform: iam:{action} because no identity-based policy allows the iam:{action} action"
            ),
        ),
        None => lambda_error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            &format!(
                "User: {CALLER} is not authorized to perform: lambda on resource: {path} because no identity-based policy allows the action"
            ),
        ),
    }
}

fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}
