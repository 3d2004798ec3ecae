//! Lambda's execution side, which moto lacks (it needs Docker): `Invoke` runs the real
//! `bootstrap` from the zip the deployer uploaded, under the harness's Runtime API
//! emulator, with the environment the function (or the version the qualifier names) has
//! in moto; an instance stays warm between invocations and a new one starts cold after the
//! code or configuration changes. What the function prints goes to its log group as Lambda
//! writes it (a stream per instance, `START`/`END`/`REPORT` lines around each request).
//! And its function URL answers by hostname, as a public URL does: 403
//! `{"Message":"Forbidden"}` unless the function's policy has both statements a public URL
//! needs since October 2025 (`lambda:InvokeFunctionUrl` with `FunctionUrlAuthType NONE`,
//! and `lambda:InvokeFunction` with `InvokedViaFunctionUrl`).
//!
//! Lambda's documented answers: Invoke (API Reference, "Invoke": 200 with
//! `X-Amz-Executed-Version`, and `X-Amz-Function-Error: Unhandled` with the error as the
//! payload), function URLs ("Invoking Lambda function URLs": payload format 2.0 in, the
//! function's `statusCode`/`headers`/`body` out, a JSON value without `statusCode` as a 200
//! `application/json`, a function error as 502), and logs ("Lambda function logs").

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::runtime_api::{Outcome, RuntimeApi};

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
type UrlTarget = (String, Option<String>);

/// What one invocation ended with.
enum Ended {
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
    urls: Arc<Mutex<HashMap<String, UrlTarget>>>,
    instances: Arc<tokio::sync::Mutex<HashMap<InstanceKey, Instance>>>,
    /// The URLs and policies of aliases, which moto does not keep apart.
    aliases: Arc<Mutex<crate::aws_aliases::Aliases>>,
    /// The version each function-URL request ran, oldest first.
    served: Arc<Mutex<Vec<String>>>,
    /// How long each function-URL request took to answer, oldest first.
    url_times: Arc<Mutex<Vec<Duration>>>,
    /// Versions deleted: kept in moto, hidden from its answers. moto numbers a new version
    /// by how many it holds (`len(versions) + 1`), so a real delete would make it reuse a
    /// number; Lambda never reuses version numbers.
    deleted_versions: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    /// While on, every function URL answers 403, as when an SCP denies its invocation.
    deny_urls: Arc<std::sync::atomic::AtomicBool>,
    /// Variables every instance gets besides the function's own (the "system" CA that
    /// stands for the roots Lambda's image has).
    extra_env: Arc<Mutex<Vec<(String, String)>>>,
}

fn unix_ms() -> i64 {
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

    /// Remembers the hostname of a function URL moto created (`FunctionUrl` of its answer).
    pub fn remember_url(&self, function: &str, qualifier: Option<String>, answer: &[u8]) {
        let answer: Value = serde_json::from_slice(answer).unwrap_or_default();
        if let Some(host) = answer["FunctionUrl"].as_str().and_then(url_host) {
            self.urls
                .lock()
                .unwrap()
                .insert(host, (function.to_owned(), qualifier));
        }
    }

    /// Forgets the URL of `function` itself (deleted).
    pub fn forget_urls(&self, function: &str) {
        self.urls
            .lock()
            .unwrap()
            .retain(|_, (f, q)| f != function || q.is_some());
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

    /// Answers a URL or policy call on an alias (`?Qualifier=<alias>`) as Lambda does, or
    /// `None` for any other call (moto answers those).
    pub async fn alias_call(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Option<Response> {
        let qualifier = query
            .split('&')
            .find_map(|p| p.strip_prefix("Qualifier="))
            .map(|q| {
                percent_encoding::percent_decode_str(q)
                    .decode_utf8_lossy()
                    .into_owned()
            })?;
        if !crate::aws_aliases::is_alias(&qualifier) {
            return None;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [_, "functions", function, tail @ ..] = parts.as_slice() else {
            return None;
        };
        if !matches!(tail.first(), Some(&"url") | Some(&"policy")) {
            return None;
        }
        let function = percent_encoding::percent_decode_str(function)
            .decode_utf8_lossy()
            .into_owned();
        if let Err((status, body)) = self
            .moto_get(
                &format!("/2015-03-31/functions/{function}/aliases/{qualifier}"),
                None,
            )
            .await
        {
            return Some(moto_error(status, &body));
        }
        let answer = self.aliases.lock().unwrap().answer(
            method,
            &function,
            &qualifier,
            tail,
            body,
            || {
                format!(
                    "{:016x}{:016x}",
                    crate::pg::rand_u64(),
                    crate::pg::rand_u64()
                )
            },
        )?;
        let target = (function.clone(), Some(qualifier.clone()));
        if method == "POST" && tail == ["url"] && answer.status() == StatusCode::CREATED {
            let parts = self.aliases.lock().unwrap().get(&function, &qualifier);
            if let Some((url, ..)) = parts.and_then(|p| p.url)
                && let Some(host) = url_host(&url)
            {
                self.urls.lock().unwrap().insert(host, target);
            }
        } else if method == "DELETE" && tail == ["url"] {
            self.urls.lock().unwrap().retain(|_, t| *t != target);
        }
        Some(answer)
    }

    /// Whether `host` is a function URL's (`<id>.lambda-url.<region>.on.aws`).
    pub fn is_url_host(host: &str) -> bool {
        host.contains(".lambda-url.") && host.ends_with(".on.aws")
    }

    async fn moto_get(&self, path: &str, auth: Option<&str>) -> Result<Value, (u16, Value)> {
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
    async fn invoke_event(
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

    /// A request to a function URL (its hostname in `Host`).
    pub async fn serve_url(
        &self,
        host: &str,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response {
        let forbidden = || {
            let mut r = (StatusCode::FORBIDDEN, r#"{"Message":"Forbidden"}"#).into_response();
            r.headers_mut().insert(
                "content-type",
                "application/json".parse().expect("a header"),
            );
            r.headers_mut().insert(
                "x-amzn-errortype",
                "AccessDeniedException".parse().expect("a header"),
            );
            r
        };
        let Some((function, qualifier)) = self.urls.lock().unwrap().get(host).cloned() else {
            // No such URL: AWS's edge answers 403 for an unknown hostname too.
            return forbidden();
        };
        let (public, policy) = match &qualifier {
            // An alias's URL and statements are its own.
            Some(alias) => {
                let parts = self
                    .aliases
                    .lock()
                    .unwrap()
                    .get(&function, alias)
                    .unwrap_or_default();
                let public = parts.url.as_ref().is_some_and(|u| u.1 == "NONE");
                (public, json!({ "Statement": parts.statements }))
            }
            None => {
                let url_config = self
                    .moto_get(&format!("/2021-10-31/functions/{function}/url"), None)
                    .await;
                let public = url_config.is_ok_and(|c| c["AuthType"] == "NONE");
                // moto keeps the conditions as the request's fields; AWS writes conditions.
                let policy = self
                    .moto_get(&format!("/2015-03-31/functions/{function}/policy"), None)
                    .await
                    .ok()
                    .and_then(|p| {
                        crate::aws_answers::policy_as_aws_writes_it(&serde_json::to_vec(&p).ok()?)
                    })
                    .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
                    .and_then(|p| serde_json::from_str::<Value>(p["Policy"].as_str()?).ok())
                    .unwrap_or_default();
                (public, policy)
            }
        };
        if !public
            || !has_public_url_statements(&policy)
            || self.deny_urls.load(std::sync::atomic::Ordering::SeqCst)
        {
            return forbidden();
        }
        let asked = Instant::now();
        let event = url_event(host, method, path_and_query, headers, body);
        match self
            .invoke_event(&function, qualifier.as_deref(), event, None)
            .await
        {
            Ok((version, Ended::Response(v))) => {
                self.served.lock().unwrap().push(version);
                self.url_times.lock().unwrap().push(asked.elapsed());
                url_response(v)
            }
            Ok((_, Ended::Error(_))) | Err(_) => {
                let mut r = (
                    StatusCode::BAD_GATEWAY,
                    r#"{"Message":"Internal Server Error"}"#,
                )
                    .into_response();
                r.headers_mut().insert(
                    "content-type",
                    "application/json".parse().expect("a header"),
                );
                r
            }
        }
    }

    /// The version each function-URL request ran, oldest first.
    pub fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }

    /// Forgets the times [`Executor::url_times`] returns.
    pub fn clear_url_times(&self) {
        self.url_times.lock().unwrap().clear();
    }

    /// How long each function-URL request took to answer, oldest first.
    pub fn url_times(&self) -> Vec<Duration> {
        self.url_times.lock().unwrap().clone()
    }

    /// Makes every function URL answer 403 (an organisation's policy denying invocation),
    /// or lifts that.
    pub fn deny_urls(&self, on: bool) {
        self.deny_urls
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops every instance (as Lambda recycles them).
    pub async fn stop_all(&self) {
        self.instances.lock().await.clear();
    }
}

/// A function URL's hostname, from the URL.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', ':']).next()?.to_owned())
}

/// Both statements a public function URL needs (Lambda's "Control access to function URLs",
/// as changed in October 2025).
fn has_public_url_statements(policy: &Value) -> bool {
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    let everyone = |s: &Value| s["Principal"] == "*" || s["Principal"]["AWS"] == "*";
    let allows = |s: &Value, action: &str| {
        s["Effect"] == "Allow"
            && everyone(s)
            && (s["Action"] == action
                || s["Action"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == action)))
    };
    let url = statements.iter().any(|s| {
        allows(s, "lambda:InvokeFunctionUrl")
            && s["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"] == "NONE"
    });
    let via_url = statements.iter().any(|s| {
        allows(s, "lambda:InvokeFunction")
            && (s["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] == "true"
                || s["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] == true)
    });
    url && via_url
}

/// The function URL event (payload format 2.0) for one HTTP request.
fn url_event(
    host: &str,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Value {
    use base64::Engine;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut hs = serde_json::Map::new();
    for (k, v) in headers {
        let v = v.to_str().unwrap_or_default();
        let entry = hs
            .entry(k.as_str().to_ascii_lowercase())
            .or_insert(json!(""));
        let joined = match entry.as_str() {
            Some("") | None => v.to_owned(),
            Some(old) => format!("{old},{v}"),
        };
        *entry = json!(joined);
    }
    hs.insert("host".into(), json!(host));
    let mut params = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(k.to_owned(), json!(v));
    }
    let prefix = host.split('.').next().unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hs,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": prefix,
            "domainName": host,
            "domainPrefix": prefix,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": format!("{:016x}", crate::pg::rand_u64()),
            "routeKey": "$default",
            "stage": "$default",
            "time": format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
                now.day(),
                &format!("{:?}", now.month())[..3],
                now.year(),
                now.hour(),
                now.minute(),
                now.second()
            ),
            "timeEpoch": unix_ms(),
        },
        "isBase64Encoded": false,
    });
    if !params.is_empty() {
        event["queryStringParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = json!(text),
            Err(_) => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// The HTTP answer for a function's response to a URL event.
fn url_response(v: Value) -> Response {
    use base64::Engine;
    let Some(status) = v.get("statusCode").and_then(Value::as_u64) else {
        // A value without `statusCode`: 200, the value as JSON.
        let mut r = (StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()).into_response();
        r.headers_mut().insert(
            "content-type",
            "application/json".parse().expect("a header"),
        );
        return r;
    };
    let body = v["body"].as_str().unwrap_or_default();
    let bytes = if v["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut r = (
        StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
        bytes,
    )
        .into_response();
    if let Some(headers) = v["headers"].as_object() {
        for (k, val) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                k.parse::<axum::http::HeaderName>(),
                val.as_str().map(|s| s.parse::<axum::http::HeaderValue>()),
            ) {
                r.headers_mut().insert(name, value);
            }
        }
    }
    for cookie in v["cookies"].as_array().into_iter().flatten() {
        if let Some(Ok(value)) = cookie.as_str().map(|s| s.parse()) {
            r.headers_mut().append("set-cookie", value);
        }
    }
    r
}

/// moto's error, passed on with its status.
fn moto_error(status: u16, body: &Value) -> Response {
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
