//! The parts of Neon's API v2 answers the deployer reads, typed (field names and required
//! fields as in `../shared/neon-api/openapi.json`), and typed IDs, so a missing field is an
//! error where the answer is read rather than an empty string in the next URL.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
    };
}

id_type!(
    /// A project ID, e.g. `shiny-wind-028834`.
    ProjectId
);
id_type!(
    /// A branch ID, e.g. `br-aged-salad-637688`.
    BranchId
);
id_type!(
    /// An endpoint ID, e.g. `ep-cool-darkness-123456`.
    EndpointId
);
id_type!(
    /// An operation ID (a UUID).
    OperationId
);

/// `OperationStatus`. Unknown future values are kept, and waited on like `running`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Scheduling,
    Running,
    Finished,
    Failed,
    Error,
    Cancelling,
    Cancelled,
    Skipped,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    pub id: OperationId,
    pub project_id: ProjectId,
    pub action: String,
    pub status: OperationStatus,
    #[serde(default)]
    pub error: Option<String>,
    /// How many times Neon's attempts at it failed (it retries operations in `error`).
    pub failures_count: i64,
    /// When Neon last retried it.
    #[serde(default)]
    pub retry_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OperationResponse {
    pub operation: Operation,
}

/// Every answer to a change lists the operations it started.
#[derive(Debug, Default, Deserialize)]
pub struct Operations {
    #[serde(default)]
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub region_id: String,
    pub pg_version: i64,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub history_retention_seconds: Option<i64>,
    pub created_at: String,
}

#[derive(Debug, Deserialize)]
pub struct ProjectResponse {
    pub project: Project,
}

#[derive(Debug, Deserialize)]
pub struct CreatedProject {
    pub project: Project,
}

#[derive(Debug, Deserialize)]
pub struct Pagination {
    pub cursor: String,
}

#[derive(Debug, Deserialize)]
pub struct ProjectsResponse {
    pub projects: Vec<Project>,
    /// Projects Neon knows exist but could not describe in time (the spec: "known to exist,
    /// but whose details could not be fetched within the requested (or implicit) time
    /// limit"): the list is incomplete, not those projects absent.
    #[serde(default)]
    pub unavailable_project_ids: Vec<ProjectId>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Branch {
    pub id: BranchId,
    pub name: String,
    pub default: bool,
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub created_at: String,
    /// When Neon will delete it by itself (RFC 3339), if ever.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BranchResponse {
    pub branch: Branch,
}

/// A branch create's answer (the endpoints made with it are listed when needed).
#[derive(Debug, Deserialize)]
pub struct CreatedBranch {
    pub branch: Branch,
}

/// `pagination.next` of a cursor-paginated list (`CursorPaginationResponse`).
#[derive(Debug, Default, Deserialize)]
pub struct CursorPagination {
    #[serde(default)]
    pub next: Option<String>,
}

/// An annotation's value: string keys and values (`AnnotationValueData`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Annotation {
    #[serde(default)]
    pub value: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct BranchesResponse {
    pub branches: Vec<Branch>,
    /// By branch ID (`AnnotationsMapResponse`).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, Annotation>,
    #[serde(default)]
    pub pagination: Option<CursorPagination>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointType {
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub branch_id: BranchId,
    pub host: String,
    #[serde(rename = "type")]
    pub kind: EndpointType,
}

#[derive(Debug, Deserialize)]
pub struct EndpointResponse {
    pub endpoint: Endpoint,
}

#[derive(Debug, Deserialize)]
pub struct EndpointsResponse {
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RoleResponse {
    pub role: Role,
}

#[derive(Deserialize)]
pub struct RolePasswordResponse {
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Database {
    pub id: i64,
    pub name: String,
    pub owner_name: String,
}

#[derive(Debug, Deserialize)]
pub struct DatabaseResponse {
    pub database: Database,
}

#[derive(Debug, Deserialize)]
pub struct DatabasesResponse {
    pub databases: Vec<Database>,
}

#[derive(Deserialize)]
pub struct ConnectionUriResponse {
    pub uri: String,
}

/// `BranchSchemaCompareResponse`: a unified diff of the two schemas (empty: the same).
#[derive(Debug, Deserialize)]
pub struct BranchSchemaCompareResponse {
    #[serde(default)]
    pub diff: String,
}

/// Neon's error body: `{"code": "...", "message": "..."}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_required_field_is_an_error_not_an_empty_id() {
        let err = serde_json::from_str::<BranchResponse>(r#"{"branch":{"name":"dev"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `id`"), "{err}");
        let op: Operation = serde_json::from_str(
            r#"{"id":"a","project_id":"p","action":"create_branch","status":"brand_new","failures_count":0}"#,
        )
        .unwrap();
        assert_eq!(op.status, OperationStatus::Unknown);
    }
}
