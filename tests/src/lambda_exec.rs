//! Lambda's execution side, which moto lacks (it needs Docker): `Invoke` runs the real
//! `bootstrap` from the zip the deployer uploaded, under the harness's Runtime API
//! emulator, with the environment the function (or the version the qualifier names) has
//! in moto; an instance stays warm between invocations and a new one starts cold after the
//! code or configuration changes. What the function prints goes to its log group as Lambda
//! writes it (a stream per instance, `START`/`END`/`REPORT` lines around each request).
//! Deleted versions are hidden rather than deleted in moto, which would reuse their
//! numbers. Function URLs are `lambda_urls`.
//!
//! Lambda's documented answers: Invoke (API Reference, "Invoke": 200 with
//! `X-Amz-Executed-Version`, and `X-Amz-Function-Error: Unhandled` with the error as the
//! payload), and logs ("Lambda function logs").

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::runtime_api::{Outcome, RuntimeApi};

pub use crate::lambda_urls::url_host;

/// What an instance runs: a function's version with its code and configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InstanceKey {
    function: String,
    version: String,
    code_sha256: String,
    environment: String,
}

/// A running instance of a function: its process under its own Runtime API.
struct Instance {
    _dir: tempfile::TempDir,
    runtime: RuntimeApi,
    child: tokio::process::Child,
    log: tokio::sync::mpsc::UnboundedSender<String>,
    /// Init has not been reported yet (the first REPORT line carries `Init Duration`).
    started: Option<Instant>,
}

/// The version and settings the qualifier resolves to, as moto describes them.
#[derive(Debug, Clone)]
struct Resolved {
    version: String,
    code_sha256: String,
    environment: HashMap<String, String>,
    timeout: Duration,
    memory: i64,
}

/// What a function URL invokes: the function, and the qualifier it was made for.
pub(crate) type UrlTarget = (String, Option<String>);

/// What one invocation ended with.
pub(crate) enum Ended {
    Response(Value),
    Error(Value),
}

/// Lambda's execution side, shared by the proxy's handlers.
#[derive(Clone)]
pub struct Executor {
    moto: String,
    http: reqwest::Client,
    /// Each zip uploaded, by the `CodeSha256` moto gave it.
    code: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Function URL hostnames: (function, qualifier).
    pub(crate) urls: Arc<Mutex<HashMap<String, UrlTarget>>>,
    instances: Arc<tokio::sync::Mutex<HashMap<InstanceKey, Instance>>>,
    /// The URLs and policies of aliases, which moto does not keep apart.
    pub(crate) aliases: Arc<Mutex<crate::aws_aliases::Aliases>>,
    /// The version each function-URL request ran, oldest first.
    pub(crate) served: Arc<Mutex<Vec<String>>>,
    /// How long each function-URL request took to answer, oldest first.
    pub(crate) url_times: Arc<Mutex<Vec<Duration>>>,
    /// Versions deleted: kept in moto, hidden from its answers. moto numbers a new version
    /// by how many it holds (`len(versions) + 1`), so a real delete would make it reuse a
    /// number; Lambda never reuses version numbers.
    deleted_versions: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    /// While on, every function URL answers 403, as when an SCP denies its invocation.
    pub(crate) deny_urls: Arc<std::sync::atomic::AtomicBool>,
    /// Variables every instance gets besides the function's own (the "system" CA that
    /// stands for the roots Lambda's image has).
    extra_env: Arc<Mutex<Vec<(String, String)>>>,
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Executor {
    pub fn new(moto: &str) -> Executor {
        Executor {
            moto: moto.to_owned(),
            http: reqwest::Client::new(),
            code: Default::default(),
            urls: Default::default(),
            instances: Default::default(),
            aliases: Default::default(),
            served: Default::default(),
            url_times: Default::default(),
            deleted_versions: Default::default(),
            deny_urls: Default::default(),
            extra_env: Arc::new(Mutex::new(vec![(
                "SSL_CERT_FILE".to_owned(),
                crate::neon::emulator_ca().file.display().to_string(),
            )])),
        }
    }

    /// Remembers the zip of a successful CreateFunction or UpdateFunctionCode under the
    /// `CodeSha256` of moto's answer: the request's `ZipFile`, or the object its
    /// `S3Bucket`/`S3Key` name (code over the direct-upload limit).
    pub async fn remember_code(&self, request: &Value, answer: &[u8]) {
        use base64::Engine;
        let answer: Value = serde_json::from_slice(answer).unwrap_or_default();
        let Some(sha) = answer["CodeSha256"].as_str() else {
            return;
        };
        let code = if request["Code"].is_object() {
            &request["Code"]
        } else {
            request
        };
        let zip = match (
            code["ZipFile"].as_str(),
            code["S3Bucket"].as_str(),
            code["S3Key"].as_str(),
        ) {
            (Some(zip), _, _) => base64::engine::general_purpose::STANDARD.decode(zip).ok(),
            (None, Some(bucket), Some(key)) => {
                let got = self
                    .http
                    .get(format!("{}/{bucket}/{key}", self.moto))
                    .header(
                        "authorization",
                        "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
                    )
                    .send()
                    .await;
                match got {
                    Ok(r) if r.status().is_success() => r.bytes().await.ok().map(|b| b.to_vec()),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(zip) = zip {
            self.code.lock().unwrap().insert(sha.to_owned(), zip);
        }
    }

    /// DeleteFunction of one version (`?Qualifier=<n>`): hidden from then on, not deleted in
    /// moto (see `deleted_versions`). `None` for any other call.
    pub async fn delete_version(&self, function: &str, query: &str) -> Option<Response> {
        let version = query
            .split('&')
            .find_map(|p| p.strip_prefix("Qualifier="))?
            .to_owned();
        if !version.bytes().all(|b| b.is_ascii_digit()) || version.is_empty() {
            return None;
        }
        let key = (function.to_owned(), version.clone());
        let known = !self.deleted_versions.lock().unwrap().contains(&key)
            && self
                .moto_get(
                    &format!("/2015-03-31/functions/{function}/configuration?Qualifier={version}"),
                    None,
                )
                .await
                .is_ok();
        if !known {
            return Some(crate::aws_answers::lambda_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                &format!(
                    "Function not found: arn:aws:lambda:us-east-1:123456789012:function:{function}:{version}"
                ),
            ));
        }
        self.deleted_versions.lock().unwrap().insert(key);
        Some(StatusCode::NO_CONTENT.into_response())
    }

    /// Whether `function`'s version `qualifier` was deleted.
    pub fn is_deleted(&self, function: &str, qualifier: &str) -> bool {
        self.deleted_versions
            .lock()
            .unwrap()
            .contains(&(function.to_owned(), qualifier.to_owned()))
    }

    /// moto's ListVersionsByFunction answer without the deleted versions.
    pub fn hide_deleted(&self, function: &str, body: &[u8]) -> Option<Vec<u8>> {
        let mut answer: Value = serde_json::from_slice(body).ok()?;
        let deleted = self.deleted_versions.lock().unwrap().clone();
        answer["Versions"].as_array_mut()?.retain(|v| {
            let version = v["Version"].as_str().unwrap_or_default().to_owned();
            !deleted.contains(&(function.to_owned(), version))
        });
        serde_json::to_vec(&answer).ok()
    }

    /// Forgets everything of `function`, its aliases' URLs and policies too (deleted).
    pub fn forget_function(&self, function: &str) {
        self.deleted_versions
            .lock()
            .unwrap()
            .retain(|(f, _)| f != function);
        self.urls.lock().unwrap().retain(|_, (f, _)| f != function);
        self.aliases.lock().unwrap().forget(function);
    }

    pub(crate) async fn moto_get(
        &self,
        path: &str,
        auth: Option<&str>,
    ) -> Result<Value, (u16, Value)> {
        // moto tells the service (and region) from the credential scope of the signature.
        let auth = auth.unwrap_or(
            "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0",
        );
        let req = self
            .http
            .get(format!("{}{path}", self.moto))
            .header("authorization", auth);
        let resp = req
            .send()
            .await
            .map_err(|e| (502, json!({"Message": e.to_string()})))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or_default();
        if status >= 300 {
            return Err((status, body));
        }
        Ok(body)
    }

    async fn resolve(
        &self,
        function: &str,
        qualifier: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Resolved, (u16, Value)> {
        let q = qualifier
            .map(|q| format!("?Qualifier={q}"))
            .unwrap_or_default();
        let c = self
            .moto_get(
                &format!("/2015-03-31/functions/{function}/configuration{q}"),
                auth,
            )
            .await?;
        let environment = c["Environment"]["Variables"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Resolved {
            version: c["Version"].as_str().unwrap_or("$LATEST").to_owned(),
            code_sha256: c["CodeSha256"].as_str().unwrap_or_default().to_owned(),
            environment,
            timeout: Duration::from_secs(c["Timeout"].as_u64().unwrap_or(3)),
            memory: c["MemorySize"].as_i64().unwrap_or(128),
        })
    }

    /// Starts an instance of `function` at `r`: unzips its code, and runs `bootstrap` with
    /// the function's environment and Lambda's own variables.
    async fn start(&self, function: &str, r: &Resolved) -> Result<Instance, String> {
        let zip = self
            .code
            .lock()
            .unwrap()
            .get(&r.code_sha256)
            .cloned()
            .ok_or_else(|| format!("no code with CodeSha256 {} was uploaded", r.code_sha256))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let zip_path = dir.path().join("code.zip");
        std::fs::write(&zip_path, zip).map_err(|e| e.to_string())?;
        let task = dir.path().join("task");
        let unzip = tokio::process::Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&zip_path)
            .arg(&task)
            .status()
            .await
            .map_err(|e| e.to_string())?;
        if !unzip.success() {
            return Err("the code is not a zip".into());
        }
        let bootstrap = task.join("bootstrap");
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("the zip has no bootstrap: {e}"))?;
        let runtime = RuntimeApi::start().await;
        let today = time::OffsetDateTime::now_utc();
        let stream = format!(
            "{}/{:02}/{:02}/[{}]{:016x}{:016x}",
            today.year(),
            u8::from(today.month()),
            today.day(),
            r.version,
            crate::pg::rand_u64(),
            crate::pg::rand_u64()
        );
        let group = format!("/aws/lambda/{function}");
        let mut cmd = tokio::process::Command::new(&bootstrap);
        cmd.current_dir(&task)
            .env_clear()
            .envs(&r.environment)
            .envs(self.extra_env.lock().unwrap().iter().cloned())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", runtime.endpoint())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", &r.version)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", r.memory.to_string())
            .env("AWS_LAMBDA_LOG_GROUP_NAME", &group)
            .env("AWS_LAMBDA_LOG_STREAM_NAME", &stream)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("LAMBDA_TASK_ROOT", &task)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let (log, lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(out).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = log.send(line);
                }
            });
        }
        tokio::spawn(write_logs(self.moto.clone(), group, stream, lines));
        Ok(Instance {
            _dir: dir,
            runtime,
            child,
            log,
            started: Some(Instant::now()),
        })
    }

    /// Invokes `function` (at `qualifier`) with `event`, as Lambda's Invoke does: the
    /// version it ran, and how it ended.
    pub(crate) async fn invoke_event(
        &self,
        function: &str,
        qualifier: Option<&str>,
        event: Value,
        auth: Option<&str>,
    ) -> Result<(String, Ended), (u16, Value)> {
        let r = self.resolve(function, qualifier, auth).await?;
        let key = InstanceKey {
            function: function.to_owned(),
            version: r.version.clone(),
            code_sha256: r.code_sha256.clone(),
            environment: serde_json::to_string(
                &r.environment
                    .iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default(),
        };
        let mut instances = self.instances.lock().await;
        // A change of code or configuration retires the instances of the old one.
        instances.retain(|k, _| k.function != function || k.version != r.version || *k == key);
        let alive = match instances.get_mut(&key) {
            Some(i) => matches!(i.child.try_wait(), Ok(None)),
            None => false,
        };
        if !alive {
            instances.remove(&key);
            let started = self.start(function, &r).await.map_err(|e| {
                (500, json!({"Type": "Service", "Message": format!("the harness could not start the function: {e}")}))
            })?;
            instances.insert(key.clone(), started);
        }
        let instance = instances.get_mut(&key).expect("just started");
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            crate::pg::rand_u64() as u32,
            crate::pg::rand_u64() & 0xffff_ffff_ffff
        );
        let _ = instance
            .log
            .send(format!("START RequestId: {id} Version: {}", r.version));
        let began = Instant::now();
        let rx = instance.runtime.submit_as(id.clone(), event).await;
        let ended = tokio::select! {
            answer = tokio::time::timeout(r.timeout, rx) => match answer {
                Ok(Ok(Outcome::Response(v))) => Some(Ended::Response(v)),
                Ok(Ok(Outcome::Error(v))) => Some(Ended::Error(v)),
                Ok(Err(_)) => None,
                Err(_) => Some(Ended::Error(json!({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": format!("RequestId: {id} Error: Task timed out after {:.2} seconds", r.timeout.as_secs_f64()),
                }))),
            },
            status = instance.child.wait() => Some(Ended::Error(json!({
                "errorType": "Runtime.ExitError",
                "errorMessage": format!(
                    "RequestId: {id} Error: Runtime exited with error: {}",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
                ),
            }))),
        };
        let ended = ended.unwrap_or_else(|| Ended::Error(json!({"errorType": "Runtime.Unknown", "errorMessage": "the invocation was dropped"})));
        // Let the function's last lines reach the log before END.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let took = began.elapsed().as_secs_f64() * 1000.0;
        let init = instance
            .started
            .take()
            .map(|s| {
                format!(
                    "\tInit Duration: {:.2} ms",
                    (s.elapsed().as_secs_f64() * 1000.0 - took).max(0.0)
                )
            })
            .unwrap_or_default();
        let _ = instance.log.send(format!("END RequestId: {id}"));
        let _ = instance.log.send(format!(
            "REPORT RequestId: {id}\tDuration: {took:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: 20 MB{init}",
            took.ceil() as i64,
            r.memory
        ));
        let dead = matches!(ended, Ended::Error(ref e) if e["errorType"] == "Runtime.ExitError" || e["errorType"] == "Sandbox.Timedout");
        if dead {
            instances.remove(&key);
        }
        Ok((r.version, ended))
    }

    /// Lambda's `Invoke` (`POST /2015-03-31/functions/{f}/invocations`).
    pub async fn invoke(
        &self,
        function: &str,
        qualifier: Option<&str>,
        body: &[u8],
        auth: Option<&str>,
    ) -> Response {
        let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match self.invoke_event(function, qualifier, event, auth).await {
            Ok((version, ended)) => {
                let (payload, error) = match ended {
                    Ended::Response(v) => (v, false),
                    Ended::Error(v) => (v, true),
                };
                let mut out = (
                    StatusCode::OK,
                    serde_json::to_vec(&payload).unwrap_or_default(),
                )
                    .into_response();
                let h = out.headers_mut();
                h.insert(
                    "content-type",
                    "application/json".parse().expect("a header"),
                );
                if let Ok(v) = version.parse() {
                    h.insert("x-amz-executed-version", v);
                }
                if error {
                    h.insert(
                        "x-amz-function-error",
                        "Unhandled".parse().expect("a header"),
                    );
                }
                out
            }
            Err((status, body)) => moto_error(status, &body),
        }
    }

    /// Stops every instance (as Lambda recycles them).
    pub async fn stop_all(&self) {
        self.instances.lock().await.clear();
    }
}

/// moto's error, passed on with its status.
pub(crate) fn moto_error(status: u16, body: &Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response();
    if let Some(t) = body["Type"].as_str().or(body["__type"].as_str())
        && let Ok(v) = t.parse()
    {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

/// Writes an instance's lines to its log stream in moto, as Lambda does, one event each.
async fn write_logs(
    moto: String,
    group: String,
    stream: String,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let http = reqwest::Client::new();
    let call = |target: &'static str, body: Value| {
        http.post(&moto)
            .header("x-amz-target", format!("Logs_20140328.{target}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/logs/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
    };
    // Lambda makes the group when the function has none (the deployer makes it first).
    let _ = call("CreateLogGroup", json!({"logGroupName": group})).await;
    let _ = call(
        "CreateLogStream",
        json!({"logGroupName": group, "logStreamName": stream}),
    )
    .await;
    while let Some(line) = lines.recv().await {
        let mut events = vec![json!({"timestamp": unix_ms(), "message": line})];
        while let Ok(more) = lines.try_recv() {
            events.push(json!({"timestamp": unix_ms(), "message": more}));
        }
        let _ = call(
            "PutLogEvents",
            json!({"logGroupName": group, "logStreamName": stream, "logEvents": events}),
        )
        .await;
    }
}
