//! The Neon API v2: one JSON helper that authenticates, retries what is safe to retry and
//! waits for the operations a change starts, and one method per call the deployer makes.
//!
//! Neon quirks handled here: a project with a running operation answers 423 to every change
//! (so each change waits for its operations before the next one); 429 carries Retry-After;
//! a 5xx on a POST may still have created the resource, so creates are not blindly retried:
//! callers look for what they meant to create first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Neon's public API.
pub const DEFAULT_API_HOST: &str = "https://console.neon.tech/api/v2";
const MAX_ATTEMPTS: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum NeonError {
    #[error("Neon answered {status} to {method} {path}: {message}")]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach the Neon API ({method} {path})")]
    Transport {
        method: String,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Neon operation `{action}` ({id}) ended `{status}`")]
    Operation {
        id: String,
        action: String,
        status: String,
    },
    #[error("Neon operation `{0}` did not finish within 10 minutes")]
    OperationTimeout(String),
}

impl NeonError {
    pub fn status(&self) -> Option<u16> {
        match self {
            NeonError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request may or may not have been carried out (5xx or no answer).
    pub fn uncertain(&self) -> bool {
        match self {
            NeonError::Api { status, .. } => *status >= 500,
            NeonError::Transport { .. } => true,
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// What the user should do, for errors retrying cannot fix.
    pub fn hint(&self) -> Option<&'static str> {
        match self.status() {
            Some(401) => Some("check NEON_API_KEY (environment or .env): Neon did not accept it"),
            Some(403) => Some("the API key has no access to this project or organisation"),
            _ => None,
        }
    }
}

pub struct Neon {
    http: reqwest::Client,
    base: String,
    key: String,
    calls: AtomicU64,
    mutating_calls: AtomicU64,
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

impl Neon {
    pub fn new(base: &str, key: &str) -> Self {
        Neon {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .user_agent(concat!("deployer/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            calls: AtomicU64::new(0),
            mutating_calls: AtomicU64::new(0),
        }
    }

    /// (all calls, mutating calls) made so far.
    pub fn call_counts(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.mutating_calls.load(Ordering::Relaxed),
        )
    }

    /// One call with retries: 423, 429 and 5xx and lost connections are retried with backoff,
    /// except a POST that may have been carried out (5xx, no answer), which is returned.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NeonError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.calls.fetch_add(1, Ordering::Relaxed);
            if method != Method::GET {
                self.mutating_calls.fetch_add(1, Ordering::Relaxed);
            }
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .header("accept", "application/json");
            if let Some(body) = body {
                req = req.json(body);
            }
            let (status, retry_after, text) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    (status, retry_after, resp.text().await.unwrap_or_default())
                }
                Err(source) => {
                    let error = NeonError::Transport {
                        method: method.to_string(),
                        path: path.to_owned(),
                        source,
                    };
                    if method == Method::POST || attempt >= MAX_ATTEMPTS {
                        return Err(error);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            if status.is_success() {
                return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            let error = NeonError::Api {
                method: method.to_string(),
                path: path.to_owned(),
                status: status.as_u16(),
                message,
            };
            let retry = match status {
                StatusCode::LOCKED | StatusCode::TOO_MANY_REQUESTS => true,
                s if s.is_server_error() => method != Method::POST,
                _ => false,
            };
            if !retry || attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            let wait = match retry_after {
                Some(secs) if status == StatusCode::TOO_MANY_REQUESTS => {
                    Duration::from_secs(secs.min(60))
                }
                _ => backoff(attempt),
            };
            tracing::debug!(%status, ?wait, path, "retrying Neon call");
            tokio::time::sleep(wait).await;
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, NeonError> {
        self.request(Method::GET, path, None).await
    }

    /// A change: the call, then every operation it started, until finished.
    pub async fn change(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NeonError> {
        let answer = self.request(method, path, body).await?;
        self.wait_for(&answer).await?;
        Ok(answer)
    }

    /// Polls the operations listed in an answer until each has finished.
    pub async fn wait_for(&self, answer: &Value) -> Result<(), NeonError> {
        let Some(ops) = answer["operations"].as_array() else {
            return Ok(());
        };
        for op in ops {
            let (Some(project), Some(id)) = (op["project_id"].as_str(), op["id"].as_str()) else {
                continue;
            };
            let action = op["action"].as_str().unwrap_or("operation").to_owned();
            let mut status = op["status"].as_str().unwrap_or("running").to_owned();
            let started = std::time::Instant::now();
            let mut delay = Duration::from_millis(50);
            loop {
                match status.as_str() {
                    "finished" | "skipped" => break,
                    "failed" | "error" | "cancelled" => {
                        return Err(NeonError::Operation {
                            id: id.to_owned(),
                            action,
                            status,
                        });
                    }
                    _ => {}
                }
                if started.elapsed() > Duration::from_secs(600) {
                    return Err(NeonError::OperationTimeout(action));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                let current = self
                    .get(&format!("/projects/{project}/operations/{id}"))
                    .await?;
                status = current["operation"]["status"]
                    .as_str()
                    .unwrap_or("running")
                    .to_owned();
            }
        }
        Ok(())
    }

    // ---- projects -----------------------------------------------------------------------

    pub async fn create_project(&self, project: Value) -> Result<Value, NeonError> {
        self.change(
            Method::POST,
            "/projects",
            Some(&json!({ "project": project })),
        )
        .await
    }

    /// Projects whose name contains `name` (Neon searches by substring).
    pub async fn find_projects(&self, name: &str) -> Result<Vec<Value>, NeonError> {
        let query: String = url_encode(name);
        let answer = self
            .get(&format!("/projects?search={query}&limit=400"))
            .await?;
        Ok(answer["projects"].as_array().cloned().unwrap_or_default())
    }

    pub async fn get_project(&self, id: &str) -> Result<Value, NeonError> {
        Ok(self.get(&format!("/projects/{id}")).await?["project"].take())
    }

    pub async fn update_project(&self, id: &str, patch: Value) -> Result<(), NeonError> {
        self.change(
            Method::PATCH,
            &format!("/projects/{id}"),
            Some(&json!({ "project": patch })),
        )
        .await
        .map(drop)
    }

    /// Deletes a project; one already gone counts as deleted.
    pub async fn delete_project(&self, id: &str) -> Result<(), NeonError> {
        ignore_not_found(
            self.request(Method::DELETE, &format!("/projects/{id}"), None)
                .await,
        )
    }

    // ---- branches -----------------------------------------------------------------------

    pub async fn list_branches(&self, project: &str) -> Result<Vec<Value>, NeonError> {
        let answer = self.get(&format!("/projects/{project}/branches")).await?;
        Ok(answer["branches"].as_array().cloned().unwrap_or_default())
    }

    pub async fn get_branch(&self, project: &str, id: &str) -> Result<Value, NeonError> {
        Ok(self
            .get(&format!("/projects/{project}/branches/{id}"))
            .await?["branch"]
            .take())
    }

    pub async fn create_branch(&self, project: &str, branch: Value) -> Result<Value, NeonError> {
        self.change(
            Method::POST,
            &format!("/projects/{project}/branches"),
            Some(&json!({ "branch": branch })),
        )
        .await
    }

    pub async fn update_branch(
        &self,
        project: &str,
        id: &str,
        patch: Value,
    ) -> Result<(), NeonError> {
        self.change(
            Method::PATCH,
            &format!("/projects/{project}/branches/{id}"),
            Some(&json!({ "branch": patch })),
        )
        .await
        .map(drop)
    }

    pub async fn delete_branch(&self, project: &str, id: &str) -> Result<(), NeonError> {
        let path = format!("/projects/{project}/branches/{id}");
        self.delete(&path).await
    }

    // ---- endpoints ----------------------------------------------------------------------

    pub async fn list_endpoints(&self, project: &str) -> Result<Vec<Value>, NeonError> {
        let answer = self.get(&format!("/projects/{project}/endpoints")).await?;
        Ok(answer["endpoints"].as_array().cloned().unwrap_or_default())
    }

    pub async fn get_endpoint(&self, project: &str, id: &str) -> Result<Value, NeonError> {
        Ok(self
            .get(&format!("/projects/{project}/endpoints/{id}"))
            .await?["endpoint"]
            .take())
    }

    pub async fn create_endpoint(
        &self,
        project: &str,
        endpoint: Value,
    ) -> Result<Value, NeonError> {
        self.change(
            Method::POST,
            &format!("/projects/{project}/endpoints"),
            Some(&json!({ "endpoint": endpoint })),
        )
        .await
    }

    pub async fn delete_endpoint(&self, project: &str, id: &str) -> Result<(), NeonError> {
        let path = format!("/projects/{project}/endpoints/{id}");
        self.delete(&path).await
    }

    // ---- roles and databases --------------------------------------------------------------

    fn branch_path(project: &str, branch: &str) -> String {
        format!("/projects/{project}/branches/{branch}")
    }

    pub async fn get_role(
        &self,
        project: &str,
        branch: &str,
        name: &str,
    ) -> Result<Value, NeonError> {
        let path = format!(
            "{}/roles/{}",
            Self::branch_path(project, branch),
            url_encode(name)
        );
        Ok(self.get(&path).await?["role"].take())
    }

    pub async fn create_role(
        &self,
        project: &str,
        branch: &str,
        name: &str,
    ) -> Result<Value, NeonError> {
        let path = format!("{}/roles", Self::branch_path(project, branch));
        Ok(self
            .change(
                Method::POST,
                &path,
                Some(&json!({ "role": { "name": name } })),
            )
            .await?["role"]
            .take())
    }

    pub async fn reveal_password(
        &self,
        project: &str,
        branch: &str,
        name: &str,
    ) -> Result<String, NeonError> {
        let path = format!(
            "{}/roles/{}/reveal_password",
            Self::branch_path(project, branch),
            url_encode(name)
        );
        Ok(self.get(&path).await?["password"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub async fn delete_role(
        &self,
        project: &str,
        branch: &str,
        name: &str,
    ) -> Result<(), NeonError> {
        let path = format!(
            "{}/roles/{}",
            Self::branch_path(project, branch),
            url_encode(name)
        );
        self.delete(&path).await
    }

    pub async fn list_databases(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<Vec<Value>, NeonError> {
        let answer = self
            .get(&format!("{}/databases", Self::branch_path(project, branch)))
            .await?;
        Ok(answer["databases"].as_array().cloned().unwrap_or_default())
    }

    pub async fn get_database(
        &self,
        project: &str,
        branch: &str,
        name: &str,
    ) -> Result<Value, NeonError> {
        let path = format!(
            "{}/databases/{}",
            Self::branch_path(project, branch),
            url_encode(name)
        );
        Ok(self.get(&path).await?["database"].take())
    }

    pub async fn create_database(
        &self,
        project: &str,
        branch: &str,
        name: &str,
        owner: &str,
    ) -> Result<Value, NeonError> {
        let path = format!("{}/databases", Self::branch_path(project, branch));
        let body = json!({ "database": { "name": name, "owner_name": owner } });
        Ok(self.change(Method::POST, &path, Some(&body)).await?["database"].take())
    }

    pub async fn update_database(
        &self,
        project: &str,
        branch: &str,
        name: &str,
        patch: Value,
    ) -> Result<(), NeonError> {
        let path = format!(
            "{}/databases/{}",
            Self::branch_path(project, branch),
            url_encode(name)
        );
        self.change(Method::PATCH, &path, Some(&json!({ "database": patch })))
            .await
            .map(drop)
    }

    pub async fn delete_database(
        &self,
        project: &str,
        branch: &str,
        name: &str,
    ) -> Result<(), NeonError> {
        let path = format!(
            "{}/databases/{}",
            Self::branch_path(project, branch),
            url_encode(name)
        );
        self.delete(&path).await
    }

    /// The connection URI for a role and database through the branch's read-write endpoint.
    pub async fn connection_uri(
        &self,
        project: &str,
        branch: &str,
        database: &str,
        role: &str,
        pooled: bool,
    ) -> Result<String, NeonError> {
        let path = format!(
            "/projects/{project}/connection_uri?branch_id={branch}&database_name={}&role_name={}&pooled={pooled}",
            url_encode(database),
            url_encode(role)
        );
        Ok(self.get(&path).await?["uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

impl Neon {
    /// Deletes what `path` names and waits for the operations; already gone counts as deleted.
    async fn delete(&self, path: &str) -> Result<(), NeonError> {
        match self.request(Method::DELETE, path, None).await {
            Ok(answer) => self.wait_for(&answer).await,
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn ignore_not_found(r: Result<Value, NeonError>) -> Result<(), NeonError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Percent-encodes a path segment or query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
