//! An emulator of the part of the Neon API v2 that the deployer uses, backed by a real
//! PostgreSQL server: roles and databases are really created, and the connection URIs it
//! returns really connect.
//!
//! It follows Neon's rules where clients notice them: bearer API keys, request bodies checked
//! against the official OpenAPI document, operations that stay `running` for a while and
//! lock the project (423) until they finish, 404/409 as Neon answers them, a plan limit on
//! `history_retention_seconds`. For tests it injects faults (random at a seeded rate, or
//! scripted) and keeps a log of every request.
//!
//! As on Neon, every branch has its own PostgreSQL server (started on demand, a copy of the
//! parent's for a new branch), so roles and databases have exactly the requested names.
//! Quirks of the emulation: every endpoint's host is `localhost` and each branch's server
//! has its own port (Neon's URIs name an endpoint host on port 5432); a pooled URI is the
//! direct one.

mod backend;
pub mod faults;
mod handlers;
mod pooler;
mod proxy;
pub mod spec;
mod state;
pub mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use backend::{BackendError, TlsPem};
use faults::{Faults, RandomFaults, ScriptedFault};
use spec::{Spec, SpecError};

/// The API's base path, as in Neon's `servers` entry.
pub const BASE_PATH: &str = "/api/v2";

/// How to run an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    /// Certificate and key every branch's server serves TLS with (none: no TLS).
    pub tls: Option<TlsPem>,
    /// Where branch servers keep their files (default: the system's temporary folder).
    pub data_dir: Option<PathBuf>,
    /// The API key clients must send as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// How long every operation stays `running`.
    pub operation_delay: Duration,
    /// Per action (`create_timeline`, `start_compute`...), instead of `operation_delay`:
    /// Neon's project creation takes seconds, other operations about one.
    pub operation_delays: BTreeMap<String, Duration>,
    /// The plan's limit on `history_retention_seconds` (Neon's Free plan: 6 hours).
    pub max_history_retention_seconds: i64,
    pub random_faults: RandomFaults,
    pub scripted_faults: Vec<ScriptedFault>,
    /// Operations that go wrong, each once, the first operation of its action taking it.
    pub operation_faults: Vec<OperationFault>,
    /// The API key is a personal key of an account in an organization, as every new Neon
    /// account is: listing or creating projects without `org_id` answers 400.
    pub require_org_id: bool,
    /// Another key of the organization, a Member's: it may do all the owner's key does but
    /// delete projects (Neon's organization roles: only Admins delete projects), which
    /// answers 403.
    pub member_api_key: Option<String>,
    /// The account is outside Neon's Early Access programme, where the spec puts branch
    /// `expires_at`: a branch create or update that sets it answers 400.
    pub no_early_access: bool,
    /// The next project lists that find matching projects leave them out and name them in
    /// `unavailable_project_ids`, as Neon does when it cannot describe them in time.
    pub incomplete_project_lists: u32,
    /// Run Neon's pooler for every branch: PgBouncer (this binary, e.g. Debian's
    /// `/usr/sbin/pgbouncer`) in transaction mode behind Neon's proxy, which pooled URIs
    /// (`pooled=true`) then go through. None: a pooled URI is the direct one. TLS only.
    pub pooler: Option<PathBuf>,
    /// Also append each logged request to this file as a JSON line.
    pub request_log: Option<PathBuf>,
    pub spec_path: PathBuf,
    /// Seed for IDs and passwords (default: from the clock).
    pub seed: Option<u64>,
}

impl EmulatorConfig {
    /// Defaults for a loopback emulator without TLS.
    pub fn new(api_key: impl Into<String>) -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            data_dir: None,
            api_key: api_key.into(),
            operation_delay: Duration::from_millis(0),
            operation_delays: BTreeMap::new(),
            max_history_retention_seconds: 21_600,
            random_faults: RandomFaults::default(),
            scripted_faults: Vec::new(),
            require_org_id: false,
            member_api_key: None,
            no_early_access: false,
            incomplete_project_lists: 0,
            pooler: None,
            operation_faults: Vec::new(),
            request_log: None,
            spec_path: spec::default_spec_path(),
            seed: None,
        }
    }
}

/// An operation that goes wrong: `retried`, it reports `error` (with `failures_count` and
/// `retry_at`) while Neon retries it, then finishes; otherwise it ends `failed` with
/// `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationFault {
    /// The operation's action, e.g. `create_branch`, `apply_config`.
    pub action: String,
    pub retried: bool,
    pub message: String,
}

/// One request as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub method: String,
    /// Relative to `/api/v2`.
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Whether the call asks for a change (anything but GET).
    pub mutating: bool,
    /// Whether the emulator injected this answer as a fault.
    pub fault: bool,
    /// The request's JSON body, for tests of what a change sends (only changed fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot prepare PostgreSQL for the branches")]
    Backend(#[from] BackendError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the request log `{path}`")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct Ctx {
    pub config: EmulatorConfig,
    pub spec: Arc<Spec>,
    pub state: tokio::sync::Mutex<state::State>,
    pub clusters: backend::Clusters,
    pub rng: Mutex<util::Rng>,
    pub operation_faults: Mutex<Vec<OperationFault>>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<LoggedRequest>>,
    log_file: Option<Mutex<std::fs::File>>,
}

/// A running emulator; it stops when dropped.
pub struct Emulator {
    pub addr: SocketAddr,
    ctx: Arc<Ctx>,
    server: tokio::task::JoinHandle<()>,
    reaper: tokio::task::JoinHandle<()>,
}

/// How often the background job looks for expired branches.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// Neon's background job: deletes branches whose `expires_at` has passed, with their
/// endpoints ("Deletion is performed by a background job and may not occur exactly at the
/// specified time", `expires_at` in Neon's spec).
async fn reap(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let now = time::OffsetDateTime::now_utc();
        let mut gone = Vec::new();
        {
            let mut st = ctx.state.lock().await;
            for p in st.projects.values_mut() {
                let expired: Vec<String> = p
                    .branches
                    .values()
                    .filter(|b| {
                        !b.reap_later
                            && b.expires_at.as_deref().is_some_and(|at| {
                                time::OffsetDateTime::parse(
                                    at,
                                    &time::format_description::well_known::Rfc3339,
                                )
                                .is_ok_and(|t| t <= now)
                            })
                    })
                    .map(|b| b.id.clone())
                    .collect();
                for id in expired {
                    if let Some(b) = p.branches.remove(&id) {
                        p.endpoints.retain(|_, e| e.branch_id != id);
                        gone.push(b.cluster);
                    }
                }
            }
        }
        for cluster in gone {
            cluster.shut_down().await;
        }
    }
}

impl Emulator {
    /// Connects to PostgreSQL, loads the spec and starts serving.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, StartError> {
        let spec = Spec::load(&config.spec_path)?;
        let mut rng = config
            .seed
            .map_or_else(util::Rng::from_clock, util::Rng::new);
        let clusters = backend::Clusters::prepare(
            config.data_dir.clone(),
            config.tls.clone(),
            rng.password(),
            config.pooler.clone(),
        )
        .await?;
        let log_file = match &config.request_log {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| StartError::Log {
                        path: path.clone(),
                        source,
                    })?,
            )),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let incomplete_lists = config.incomplete_project_lists;
        let ctx = Arc::new(Ctx {
            rng: Mutex::new(rng),
            faults: Mutex::new(Faults::new(
                config.random_faults.clone(),
                config.scripted_faults.clone(),
            )),
            operation_faults: Mutex::new(config.operation_faults.clone()),
            config,
            spec,
            state: tokio::sync::Mutex::new(state::State {
                projects: BTreeMap::new(),
                order: Vec::new(),
                next_database_id: 1,
                incomplete_lists,
            }),
            clusters,
            log: Mutex::new(Vec::new()),
            log_file,
        });
        let app = router(ctx.clone());
        let reaper = tokio::spawn(reap(ctx.clone()));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Emulator {
            addr,
            ctx,
            server,
            reaper,
        })
    }

    /// Makes a branch expire now, as if its `expires_at` had passed. `deleted`: waits until
    /// the background job deleted it; otherwise the job leaves it for now, as Neon's may
    /// for a while (expired, still listed). False if there is no such branch.
    pub async fn expire_branch(&self, project_id: &str, branch_id: &str, deleted: bool) -> bool {
        {
            let mut st = self.ctx.state.lock().await;
            let Some(b) = st
                .projects
                .get_mut(project_id)
                .and_then(|p| p.branches.get_mut(branch_id))
            else {
                return false;
            };
            b.expires_at = Some(util::rfc3339(
                time::OffsetDateTime::now_utc().unix_timestamp() - 1,
            ));
            b.reap_later = !deleted;
        }
        if !deleted {
            return true;
        }
        loop {
            tokio::time::sleep(REAP_EVERY).await;
            let st = self.ctx.state.lock().await;
            if st
                .projects
                .get(project_id)
                .is_none_or(|p| !p.branches.contains_key(branch_id))
            {
                return true;
            }
        }
    }

    /// `http://127.0.0.1:<port>/api/v2`
    pub fn base_url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.addr)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.ctx.log.lock().unwrap().clone()
    }

    /// The superuser's URI of a branch's server, to look inside it.
    pub async fn superuser_uri(&self, project_id: &str, branch_id: &str) -> Option<String> {
        let st = self.ctx.state.lock().await;
        let branch = st.projects.get(project_id)?.branches.get(branch_id)?;
        Some(branch.cluster.superuser_uri())
    }

    /// Stops serving, then stops every branch's server and deletes its files.
    /// The clients that logged in through a branch's pooler (`database/user`), oldest
    /// first; none without [`EmulatorConfig::pooler`].
    pub async fn pooler_logins(&self, project_id: &str, branch_id: &str) -> Vec<String> {
        let st = self.ctx.state.lock().await;
        st.projects
            .get(project_id)
            .and_then(|p| p.branches.get(branch_id))
            .map(|b| b.cluster.pooler_logins())
            .unwrap_or_default()
    }

    pub async fn shut_down(self) {
        self.server.abort();
        self.reaper.abort();
        let projects = std::mem::take(&mut self.ctx.state.lock().await.projects);
        for (_, project) in projects {
            for (_, branch) in project.branches {
                branch.cluster.shut_down().await;
            }
        }
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        self.ctx.log.lock().unwrap().clear();
    }

    /// Fails the next matching calls.
    pub fn script_fault(&self, fault: ScriptedFault) {
        self.ctx.faults.lock().unwrap().script(fault);
    }

    /// Replaces the random fault settings (rate 0 turns them off).
    pub fn set_random_faults(&self, random: RandomFaults) {
        self.ctx.faults.lock().unwrap().set_random(random);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        self.reaper.abort();
    }
}

fn router(ctx: Arc<Ctx>) -> Router {
    let api = handlers::routes().layer(axum::middleware::from_fn_with_state(ctx.clone(), gate));
    Router::new()
        .nest(BASE_PATH, api)
        .route(
            "/_emulator/requests",
            get(control_requests).delete(control_clear),
        )
        .route("/_emulator/faults", axum::routing::post(control_fault))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .with_state(ctx)
}

/// Neon's error body.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "code": "", "message": message.into() })),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

fn fault_message(status: u16) -> &'static str {
    match status {
        429 => "rate limit exceeded",
        423 => {
            "project already has running conflicting operations, scheduling of new ones is prohibited"
        }
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        _ => "injected fault",
    }
}

/// Runs a request to completion even if its client goes away, as Neon's control plane
/// does: a change half-made (a database created in PostgreSQL, not yet recorded) would
/// otherwise be left behind by a client killed mid-request.
async fn detached(next: Next, req: Request) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"),
    }
}

/// Authentication, fault injection and the request log, around every API call.
async fn gate(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let logged_body = serde_json::from_slice(&bytes).ok();
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mutating = method != "GET" && method != "HEAD";

    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let member = authorized.is_some() && authorized == ctx.config.member_api_key;
    let authorized = authorized.as_deref() == Some(ctx.config.api_key.as_str()) || member;
    let deletes_project = method == "DELETE" && {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        parts.len() >= 2 && parts[parts.len() - 2] == "projects"
    };
    let mut fault = false;
    let response = if !authorized {
        error(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <API key>`",
        )
    } else if member && deletes_project {
        error(
            StatusCode::FORBIDDEN,
            "permission denied: your role in the organization does not allow deleting projects",
        )
    } else {
        let decided = ctx.faults.lock().unwrap().decide(&method, &path, mutating);
        match decided {
            Some(f) => {
                fault = true;
                if f.after_apply {
                    let _ = detached(next, req).await;
                }
                let status =
                    StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                error(status, fault_message(f.status))
            }
            None => detached(next, req).await,
        }
    };

    let entry = LoggedRequest {
        method,
        path,
        query,
        status: response.status().as_u16(),
        mutating,
        fault,
        body: logged_body,
    };
    if let Some(file) = &ctx.log_file
        && let Ok(line) = serde_json::to_string(&entry)
    {
        let _ = writeln!(file.lock().unwrap(), "{line}");
    }
    ctx.log.lock().unwrap().push(entry);
    response
}

async fn control_requests(State(ctx): State<Arc<Ctx>>) -> axum::Json<Vec<LoggedRequest>> {
    axum::Json(ctx.log.lock().unwrap().clone())
}

async fn control_clear(State(ctx): State<Arc<Ctx>>) -> StatusCode {
    ctx.log.lock().unwrap().clear();
    StatusCode::NO_CONTENT
}

async fn control_fault(
    State(ctx): State<Arc<Ctx>>,
    axum::Json(fault): axum::Json<ScriptedFault>,
) -> StatusCode {
    ctx.faults.lock().unwrap().script(fault);
    StatusCode::NO_CONTENT
}
