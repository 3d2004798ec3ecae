//! The Neon API v2: one JSON helper that authenticates, retries what is safe to retry and
//! waits for the operations a change starts, and one method per call the deployer makes,
//! each returning the typed model of its answer (`models`).
//!
//! Neon quirks handled here: a project with a running operation answers 423 to every change
//! (so each change waits for its operations before the next one); 429 carries Retry-After;
//! a 5xx on a POST may still have created the resource, so creates are not blindly retried:
//! callers look for what they meant to create first (`apply::create_or_adopt`). One
//! concept, long because it has one method per endpoint.

pub mod models;
mod operations;
mod rate;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::retry::{self, Policy, Verdict};
use models::*;

/// Neon's public API.
pub const DEFAULT_API_HOST: &str = "https://console.neon.tech/api/v2";

/// How long one operation may run before the deployer stops waiting.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

/// Path segments and query values: everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum NeonError {
    #[error("Neon answered {status} to {method} {path}: {message}")]
    Api {
        method: Method,
        path: String,
        status: u16,
        message: String,
        /// Seconds, from a 429's or 503's `Retry-After`.
        retry_after: Option<u64>,
    },
    #[error(
        "stopped before {method} {path}: this run no longer surely holds the stage's lock (its lease ran out or another run took it over)"
    )]
    LeaseLost { method: Method, path: String },
    #[error("cannot reach the Neon API ({method} {path})")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Neon's answer to {method} {path} is not what its API documents")]
    Decode {
        method: Method,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("Neon operation `{action}` ({id}) ended `{status}` after {failures} failed attempt(s){}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Operation {
        id: OperationId,
        action: String,
        status: String,
        failures: i64,
        message: Option<String>,
    },
    #[error("Neon operation `{action}` ({id}) did not finish within {} minutes", OPERATION_TIMEOUT.as_secs() / 60)]
    OperationTimeout { id: OperationId, action: String },
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
    pub fn hint(&self) -> Option<String> {
        if let NeonError::Api {
            status: 400,
            message,
            ..
        } = self
            && message.contains("org_id")
        {
            return Some(
                "your Neon account belongs to an organization: set org_id under [neon.project.<Name>] in infra.toml (for example org_id = \"${env.NEON_ORG_ID}\" with NEON_ORG_ID in .env); the ID (org-...) is on the organization's Settings page in the Neon console".to_owned(),
            );
        }
        match self.status() {
            Some(401) => {
                Some("check NEON_API_KEY (environment or .env): Neon did not accept it".to_owned())
            }
            Some(403) => {
                Some("the API key has no access to this project or organisation".to_owned())
            }
            _ => None,
        }
    }

    /// Whether one call is worth repeating: 423 and 429 always; 5xx and lost connections
    /// unless the call was a POST, which may have been carried out (callers look first).
    fn verdict(&self) -> Verdict {
        match self {
            NeonError::Api {
                status: 429,
                retry_after: Some(secs),
                ..
            } => Verdict::RetryAfter(Duration::from_secs(*secs)),
            NeonError::Api {
                status: 503,
                retry_after: Some(secs),
                method,
                ..
            } if method != Method::POST => Verdict::RetryAfter(Duration::from_secs(*secs)),
            NeonError::Api {
                status: 423 | 429, ..
            } => Verdict::Retry,
            NeonError::Api { status, method, .. } if *status >= 500 && method != Method::POST => {
                Verdict::Retry
            }
            NeonError::Transport { method, .. } if method != Method::POST => Verdict::Retry,
            _ => Verdict::Stop,
        }
    }
}

pub struct Neon {
    http: reqwest::Client,
    base: String,
    key: String,
    calls: AtomicU64,
    mutating_calls: AtomicU64,
    rate: rate::RateLimit,
}

impl std::fmt::Debug for Neon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neon").field("base", &self.base).finish()
    }
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
            rate: rate::RateLimit::default(),
        }
    }

    /// (all calls, mutating calls) made so far.
    pub fn call_counts(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.mutating_calls.load(Ordering::Relaxed),
        )
    }

    /// One HTTP exchange, no retry.
    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, NeonError> {
        // A run that may have lost its stage's lock changes nothing more.
        if method != Method::GET && crate::state::lease::check().is_err() {
            return Err(NeonError::LeaseLost {
                method: method.clone(),
                path: path.to_owned(),
            });
        }
        self.rate.acquire().await;
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
        let transport = |source| NeonError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = resp.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or_else(|_| text.chars().take(200).collect());
        Err(NeonError::Api {
            method: method.clone(),
            path: path.to_owned(),
            status: status.as_u16(),
            message,
            retry_after: matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
            .then_some(retry_after)
            .flatten(),
        })
    }

    /// One call with retries ([`NeonError::verdict`]), its answer decoded as `T`.
    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, NeonError> {
        let text = retry::retry(
            Policy::NEON,
            || self.send(&method, path, body),
            NeonError::verdict,
        )
        .await?;
        serde_json::from_str(&text).map_err(|source| NeonError::Decode {
            method,
            path: path.to_owned(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, NeonError> {
        self.request(Method::GET, path, None).await
    }

    /// A change: the call, then every operation it started, until finished.
    async fn change<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, NeonError> {
        let (answer, ops) = self.start_change(method, path, body).await?;
        self.wait_for(&ops.operations).await?;
        Ok(answer)
    }

    /// A change's call, with retries: its answer and the operations it started, not yet
    /// waited for.
    async fn start_change<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(T, Operations), NeonError> {
        let text = retry::retry(
            Policy::NEON,
            || self.send(&method, path, body),
            NeonError::verdict,
        )
        .await?;
        let decode = |source| NeonError::Decode {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let ops: Operations = serde_json::from_str(&text).map_err(decode)?;
        Ok((serde_json::from_str(&text).map_err(decode)?, ops))
    }

    /// Deletes what `path` names and waits for its operations; already gone counts as deleted.
    async fn delete(&self, path: &str) -> Result<(), NeonError> {
        match self.change::<Operations>(Method::DELETE, path, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- projects -----------------------------------------------------------------------

    /// Creates a project and waits for its operations. A project whose operations fail
    /// exists nonetheless: its ID comes back with the error, for the caller to record.
    pub async fn create_project(
        &self,
        project: Value,
    ) -> Result<CreatedProject, (Option<ProjectId>, NeonError)> {
        let body = json!({ "project": project });
        let (created, ops): (CreatedProject, _) = self
            .start_change(Method::POST, "/projects", Some(&body))
            .await
            .map_err(|e| (None, e))?;
        self.wait_for(&ops.operations)
            .await
            .map_err(|e| (Some(created.project.id.clone()), e))?;
        Ok(created)
    }

    /// Projects whose name contains `name` (Neon searches by substring), every page. With
    /// `org_id`, the organization's projects: an account in an organization must name it
    /// (Neon answers 400 "org_id is required" to a personal key otherwise).
    pub async fn find_projects(
        &self,
        name: &str,
        org_id: Option<&str>,
    ) -> Result<Vec<Project>, NeonError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/projects?search={}&limit=400", encode(name));
            if let Some(org) = org_id {
                path.push_str(&format!("&org_id={}", encode(org)));
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode(c)));
            }
            let page: ProjectsResponse = self.get(&path).await?;
            let full = page.projects.len() == 400;
            all.extend(page.projects);
            match page.pagination {
                Some(p) if full && !p.cursor.is_empty() && cursor.as_ref() != Some(&p.cursor) => {
                    cursor = Some(p.cursor)
                }
                _ => return Ok(all),
            }
        }
    }

    pub async fn get_project(&self, id: &ProjectId) -> Result<Project, NeonError> {
        let answer: ProjectResponse = self.get(&format!("/projects/{id}")).await?;
        Ok(answer.project)
    }

    pub async fn update_project(&self, id: &ProjectId, patch: Value) -> Result<(), NeonError> {
        self.change::<Operations>(
            Method::PATCH,
            &format!("/projects/{id}"),
            Some(&json!({ "project": patch })),
        )
        .await
        .map(drop)
    }

    /// Deletes a project; one already gone counts as deleted.
    pub async fn delete_project(&self, id: &ProjectId) -> Result<(), NeonError> {
        self.delete(&format!("/projects/{id}")).await
    }

    // ---- branches -----------------------------------------------------------------------

    pub async fn list_branches(&self, project: &ProjectId) -> Result<Vec<Branch>, NeonError> {
        Ok(self.list_annotated_branches(project).await?.0)
    }

    /// Every branch of the project with its annotation (empty where it has none), through
    /// every page.
    pub async fn list_annotated_branches(
        &self,
        project: &ProjectId,
    ) -> Result<(Vec<Branch>, BTreeMap<String, Annotation>), NeonError> {
        let (mut branches, mut annotations) = (Vec::new(), BTreeMap::new());
        let mut path = format!("/projects/{project}/branches");
        loop {
            let answer: BranchesResponse = self.get(&path).await?;
            let empty = answer.branches.is_empty();
            branches.extend(answer.branches);
            annotations.extend(answer.annotations);
            match answer.pagination.and_then(|p| p.next) {
                Some(next) if !empty => {
                    path = format!("/projects/{project}/branches?cursor={}", encode(&next));
                }
                _ => return Ok((branches, annotations)),
            }
        }
    }

    pub async fn get_branch(
        &self,
        project: &ProjectId,
        id: &BranchId,
    ) -> Result<Branch, NeonError> {
        let answer: BranchResponse = self
            .get(&format!("/projects/{project}/branches/{id}"))
            .await?;
        Ok(answer.branch)
    }

    /// A branch create with every part of Neon's request: `branch`, `endpoints` and
    /// `annotation_value` (`createProjectBranch`).
    pub async fn create_branch(
        &self,
        project: &ProjectId,
        body: &Value,
    ) -> Result<CreatedBranch, NeonError> {
        self.change(
            Method::POST,
            &format!("/projects/{project}/branches"),
            Some(body),
        )
        .await
    }

    pub async fn update_branch(
        &self,
        project: &ProjectId,
        id: &BranchId,
        patch: Value,
    ) -> Result<(), NeonError> {
        self.change::<Operations>(
            Method::PATCH,
            &format!("/projects/{project}/branches/{id}"),
            Some(&json!({ "branch": patch })),
        )
        .await
        .map(drop)
    }

    pub async fn delete_branch(&self, project: &ProjectId, id: &BranchId) -> Result<(), NeonError> {
        self.delete(&format!("/projects/{project}/branches/{id}"))
            .await
    }

    // ---- endpoints ----------------------------------------------------------------------

    pub async fn list_endpoints(&self, project: &ProjectId) -> Result<Vec<Endpoint>, NeonError> {
        let answer: EndpointsResponse = self.get(&format!("/projects/{project}/endpoints")).await?;
        Ok(answer.endpoints)
    }

    pub async fn get_endpoint(
        &self,
        project: &ProjectId,
        id: &EndpointId,
    ) -> Result<Endpoint, NeonError> {
        let answer: EndpointResponse = self
            .get(&format!("/projects/{project}/endpoints/{id}"))
            .await?;
        Ok(answer.endpoint)
    }

    pub async fn create_endpoint(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        kind: &EndpointType,
    ) -> Result<Endpoint, NeonError> {
        let answer: EndpointResponse = self
            .change(
                Method::POST,
                &format!("/projects/{project}/endpoints"),
                Some(&json!({ "endpoint": { "branch_id": branch, "type": kind } })),
            )
            .await?;
        Ok(answer.endpoint)
    }

    pub async fn delete_endpoint(
        &self,
        project: &ProjectId,
        id: &EndpointId,
    ) -> Result<(), NeonError> {
        self.delete(&format!("/projects/{project}/endpoints/{id}"))
            .await
    }

    // ---- roles and databases --------------------------------------------------------------

    fn branch_path(project: &ProjectId, branch: &BranchId) -> String {
        format!("/projects/{project}/branches/{branch}")
    }

    fn role_path(project: &ProjectId, branch: &BranchId, name: &str) -> String {
        format!(
            "{}/roles/{}",
            Self::branch_path(project, branch),
            encode(name)
        )
    }

    fn database_path(project: &ProjectId, branch: &BranchId, name: &str) -> String {
        format!(
            "{}/databases/{}",
            Self::branch_path(project, branch),
            encode(name)
        )
    }

    pub async fn get_role(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<Role, NeonError> {
        let answer: RoleResponse = self.get(&Self::role_path(project, branch, name)).await?;
        Ok(answer.role)
    }

    pub async fn create_role(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<Role, NeonError> {
        let path = format!("{}/roles", Self::branch_path(project, branch));
        let answer: RoleResponse = self
            .change(
                Method::POST,
                &path,
                Some(&json!({ "role": { "name": name } })),
            )
            .await?;
        Ok(answer.role)
    }

    pub async fn reveal_password(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<String, NeonError> {
        let path = format!("{}/reveal_password", Self::role_path(project, branch, name));
        let answer: RolePasswordResponse = self.get(&path).await?;
        Ok(answer.password)
    }

    pub async fn delete_role(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<(), NeonError> {
        self.delete(&Self::role_path(project, branch, name)).await
    }

    pub async fn list_databases(
        &self,
        project: &ProjectId,
        branch: &BranchId,
    ) -> Result<Vec<Database>, NeonError> {
        let answer: DatabasesResponse = self
            .get(&format!("{}/databases", Self::branch_path(project, branch)))
            .await?;
        Ok(answer.databases)
    }

    pub async fn get_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<Database, NeonError> {
        let answer: DatabaseResponse = self
            .get(&Self::database_path(project, branch, name))
            .await?;
        Ok(answer.database)
    }

    pub async fn create_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
        owner: &str,
    ) -> Result<Database, NeonError> {
        let path = format!("{}/databases", Self::branch_path(project, branch));
        let body = json!({ "database": { "name": name, "owner_name": owner } });
        let answer: DatabaseResponse = self.change(Method::POST, &path, Some(&body)).await?;
        Ok(answer.database)
    }

    pub async fn update_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
        patch: Value,
    ) -> Result<(), NeonError> {
        self.change::<Operations>(
            Method::PATCH,
            &Self::database_path(project, branch, name),
            Some(&json!({ "database": patch })),
        )
        .await
        .map(drop)
    }

    pub async fn delete_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<(), NeonError> {
        self.delete(&Self::database_path(project, branch, name))
            .await
    }

    /// The connection URI for a role and database through the branch's read-write endpoint.
    pub async fn connection_uri(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        database: &str,
        role: &str,
        pooled: bool,
    ) -> Result<String, NeonError> {
        let path = format!(
            "/projects/{project}/connection_uri?branch_id={}&database_name={}&role_name={}&pooled={pooled}",
            encode(&branch.0),
            encode(database),
            encode(role)
        );
        let answer: ConnectionUriResponse = self.get(&path).await?;
        Ok(answer.uri)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_like_rfc_3986_components() {
        assert_eq!(super::encode("my db/ü?x=1"), "my%20db%2F%C3%BC%3Fx%3D1");
        assert_eq!(super::encode("a-b_c.d~e"), "a-b_c.d~e");
    }
}
