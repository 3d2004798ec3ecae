//! The API calls: one handler per operation of Neon's spec that the emulator serves.

mod branches;
mod databases;
mod endpoints;
mod operations;
mod projects;
mod roles;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::backend::HOST;
use crate::state::{
    Branch, Database, Endpoint, Operation, Project, Role, database_json, role_json,
};
use crate::util::now_rfc3339;
use crate::{Ctx, error};

use branches::*;
use databases::*;
use endpoints::*;
use operations::*;
use projects::*;
use roles::*;

type Ctx_ = State<Arc<Ctx>>;
type Answer = Result<Response, ApiError>;

/// A Neon error answer.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::CONFLICT, message.into())
}

fn internal(e: crate::BackendError) -> ApiError {
    tracing::error!(error = %e, "backing PostgreSQL failed");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal server error".into(),
    )
}

fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, Json(body)).into_response())
}

pub fn routes() -> Router<Arc<Ctx>> {
    let p = "/projects/{project_id}";
    let b = "/projects/{project_id}/branches/{branch_id}";
    Router::new()
        .route("/projects", get(list_projects).post(create_project))
        .route(
            p,
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route(
            &format!("{p}/branches"),
            get(list_branches).post(create_branch),
        )
        .route(
            b,
            get(get_branch).patch(update_branch).delete(delete_branch),
        )
        .route(
            &format!("{p}/endpoints"),
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            &format!("{p}/endpoints/{{endpoint_id}}"),
            get(get_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
        .route(&format!("{b}/compare_schema"), get(compare_schema))
        .route(&format!("{b}/roles"), get(list_roles).post(create_role))
        .route(
            &format!("{b}/roles/{{role_name}}"),
            get(get_role).delete(delete_role),
        )
        .route(
            &format!("{b}/roles/{{role_name}}/reveal_password"),
            get(reveal_password),
        )
        .route(
            &format!("{b}/roles/{{role_name}}/reset_password"),
            axum::routing::post(reset_password),
        )
        .route(
            &format!("{b}/databases"),
            get(list_databases).post(create_database),
        )
        .route(
            &format!("{b}/databases/{{database_name}}"),
            get(get_database)
                .patch(update_database)
                .delete(delete_database),
        )
        .route(&format!("{p}/connection_uri"), get(connection_uri))
        .route(&format!("{p}/operations"), get(list_operations))
        .route(
            &format!("{p}/operations/{{operation_id}}"),
            get(get_operation),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
}

impl Ctx {
    /// Parses and checks a request body against the spec.
    fn body(&self, method: &str, template: &str, bytes: &Bytes) -> Result<Value, ApiError> {
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(
                serde_json::from_slice::<Value>(bytes)
                    .map_err(|e| bad_request(format!("request body is not valid JSON: {e}")))?,
            )
        };
        self.spec
            .check_request(method, template, value.as_ref())
            .map_err(bad_request)?;
        Ok(value.unwrap_or_else(|| json!({})))
    }

    fn check_retention(&self, seconds: i64) -> Result<(), ApiError> {
        let max = self.config.max_history_retention_seconds;
        if seconds > max {
            return Err(bad_request(format!(
                "history_retention_seconds: {seconds} exceeds the limit of your plan ({max} seconds)"
            )));
        }
        Ok(())
    }

    fn operation(
        &self,
        project: &mut Project,
        action: &'static str,
        branch_id: Option<&str>,
        endpoint_id: Option<&str>,
    ) -> Value {
        let op = Operation {
            id: self.rng.lock().unwrap().uuid(),
            project_id: project.id.clone(),
            branch_id: branch_id.map(str::to_owned),
            endpoint_id: endpoint_id.map(str::to_owned),
            action,
            created_at: now_rfc3339(),
            started: Instant::now(),
            duration: self
                .config
                .operation_delays
                .get(action)
                .copied()
                .unwrap_or(self.config.operation_delay),
            fault: {
                let mut faults = self.operation_faults.lock().unwrap();
                faults
                    .iter()
                    .position(|f| f.action == action)
                    .map(|i| faults.remove(i))
            },
        };
        let json = op.json();
        project.operations.push(op);
        json
    }

    fn new_endpoint(&self, branch_id: &str, kind: &str, options: &Value) -> Endpoint {
        let now = now_rfc3339();
        Endpoint {
            id: self.rng.lock().unwrap().resource_id("ep"),
            branch_id: branch_id.to_owned(),
            kind: kind.to_owned(),
            host: HOST.to_owned(),
            min_cu: options["autoscaling_limit_min_cu"].as_f64().unwrap_or(0.25),
            max_cu: options["autoscaling_limit_max_cu"].as_f64().unwrap_or(2.0),
            suspend_timeout_seconds: options["suspend_timeout_seconds"].as_i64().unwrap_or(0),
            pooler_enabled: options["pooler_enabled"].as_bool().unwrap_or(false),
            disabled: options["disabled"].as_bool().unwrap_or(false),
            settings: options
                .get("settings")
                .cloned()
                .unwrap_or_else(|| json!({})),
            created_at: now.clone(),
            updated_at: now,
        }
    }
}

/// Role and database names: PostgreSQL identifiers, at most 63 bytes.
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(bad_request(format!("{what} name must not be empty")));
    }
    if name.len() > 63 {
        return Err(bad_request(format!(
            "{what} name `{name}` is too long: it is {} bytes, the limit is 63",
            name.len()
        )));
    }
    Ok(())
}

/// The `ConnectionDetails` schema for `role` on `db` of branch `b`.
fn connection_details(b: &Branch, role: &Role, db: &Database) -> Value {
    json!({
        "connection_uri": b.cluster.uri(&role.name, &role.password, &db.name),
        "connection_parameters": {
            "database": db.name,
            "password": role.password,
            "role": role.name,
            "host": HOST,
            "pooler_host": HOST,
        }
    })
}

fn project<'a>(st: &'a crate::state::State, id: &str) -> Result<&'a Project, ApiError> {
    st.projects.get(id).ok_or_else(|| not_found("project"))
}

/// A project for a change: 423 while one of its operations runs, as Neon answers.
fn project_for_change<'a>(
    st: &'a mut crate::state::State,
    id: &str,
) -> Result<&'a mut Project, ApiError> {
    let p = st
        .projects
        .get_mut(id)
        .ok_or_else(|| not_found("project"))?;
    if p.has_running_operation() {
        return Err(ApiError(
            StatusCode::LOCKED,
            "project already has running conflicting operations, scheduling of new ones is prohibited".into(),
        ));
    }
    Ok(p)
}

fn branch<'a>(p: &'a Project, id: &str) -> Result<&'a Branch, ApiError> {
    p.branches.get(id).ok_or_else(|| not_found("branch"))
}

fn branch_mut<'a>(p: &'a mut Project, id: &str) -> Result<&'a mut Branch, ApiError> {
    p.branches.get_mut(id).ok_or_else(|| not_found("branch"))
}
