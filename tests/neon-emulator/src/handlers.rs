//! The API calls: one handler per operation of Neon's spec that the emulator serves.

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

use crate::backend::physical_name;
use crate::state::{
    Branch, Database, Endpoint, Operation, Project, Role, database_json, role_json,
};
use crate::util::now_rfc3339;
use crate::{Ctx, error};

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
            duration: self.config.operation_delay,
        };
        let json = op.json();
        project.operations.push(op);
        json
    }

    fn suffix(&self) -> String {
        self.rng.lock().unwrap().suffix()
    }

    fn connection_details(&self, role: &Role, db: &Database) -> Value {
        json!({
            "connection_uri": self.backend.uri(&role.physical, &role.password, &db.physical),
            "connection_parameters": {
                "database": db.physical,
                "password": role.password,
                "role": role.physical,
                "host": self.backend.host(),
                "pooler_host": self.backend.host(),
            }
        })
    }

    fn new_endpoint(&self, branch_id: &str, kind: &str, options: &Value) -> Endpoint {
        let now = now_rfc3339();
        Endpoint {
            id: self.rng.lock().unwrap().resource_id("ep"),
            branch_id: branch_id.to_owned(),
            kind: kind.to_owned(),
            host: self.backend.host().to_owned(),
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

// ---- projects ---------------------------------------------------------------------------

async fn list_projects(State(ctx): Ctx_, Query(q): Query<HashMap<String, String>>) -> Answer {
    let limit = match q.get("limit") {
        None => 10,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=400) => n,
            _ => return Err(bad_request("limit: must be an integer from 1 to 400")),
        },
    };
    let st = ctx.state.lock().await;
    let start = match q.get("cursor") {
        Some(c) => st.order.iter().position(|id| id == c).map_or(0, |i| i + 1),
        None => 0,
    };
    let search = q.get("search").map(|s| s.to_lowercase());
    let page: Vec<&Project> = st.order[start.min(st.order.len())..]
        .iter()
        .filter_map(|id| st.projects.get(id))
        .filter(|p| {
            q.get("org_id")
                .is_none_or(|org| p.org_id.as_ref() == Some(org))
        })
        .filter(|p| {
            search
                .as_ref()
                .is_none_or(|s| p.name.to_lowercase().contains(s) || p.id.contains(s.as_str()))
        })
        .take(limit)
        .collect();
    let mut body = json!({
        "projects": page.iter().map(|p| p.list_json()).collect::<Vec<_>>(),
        "applications": {},
        "integrations": {},
    });
    // The spec's cursor is a non-empty string: an empty page has none.
    if let Some(last) = page.last() {
        body["pagination"] = json!({ "cursor": last.id });
    }
    ok(StatusCode::OK, body)
}

async fn create_project(State(ctx): Ctx_, bytes: Bytes) -> Answer {
    let body = ctx.body("POST", "/projects", &bytes)?;
    let p = &body["project"];
    let max = ctx.config.max_history_retention_seconds;
    let retention = p["history_retention_seconds"]
        .as_i64()
        .unwrap_or(86_400.min(max));
    ctx.check_retention(retention)?;
    let database_name = p["branch"]["database_name"]
        .as_str()
        .unwrap_or("neondb")
        .to_owned();
    let role_name = p["branch"]["role_name"]
        .as_str()
        .map_or_else(|| format!("{database_name}_owner"), str::to_owned);
    check_name("role", &role_name)?;
    check_name("database", &database_name)?;

    let (project_id, branch_id, password) = {
        let mut rng = ctx.rng.lock().unwrap();
        (rng.project_id(), rng.resource_id("br"), rng.password())
    };
    let role_physical = physical_name(&role_name, &ctx.suffix());
    let db_physical = physical_name(&database_name, &ctx.suffix());
    ctx.backend
        .create_role(&role_physical, &password)
        .await
        .map_err(internal)?;
    if let Err(e) = ctx
        .backend
        .create_database(
            &db_physical,
            &role_physical,
            std::slice::from_ref(&role_physical),
            None,
        )
        .await
    {
        let _ = ctx.backend.drop_role(&role_physical, &[]).await;
        return Err(internal(e));
    }

    let now = now_rfc3339();
    let role = Role {
        name: role_name.clone(),
        physical: role_physical,
        password,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let mut st = ctx.state.lock().await;
    let db = Database {
        id: st.next_database_id,
        name: database_name.clone(),
        physical: db_physical,
        owner_name: role_name.clone(),
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    st.next_database_id += 1;
    let endpoint = ctx.new_endpoint(&branch_id, "read_write", &p["default_endpoint_settings"]);
    let connection = ctx.connection_details(&role, &db);
    let branch = Branch {
        id: branch_id.clone(),
        name: p["branch"]["name"].as_str().unwrap_or("main").to_owned(),
        parent_id: None,
        protected: false,
        created_at: now.clone(),
        updated_at: now.clone(),
        roles: BTreeMap::from([(role_name.clone(), role)]),
        databases: BTreeMap::from([(database_name.clone(), db)]),
    };
    let mut project = Project {
        id: project_id.clone(),
        name: p["name"].as_str().unwrap_or(&project_id).to_owned(),
        region_id: p["region_id"]
            .as_str()
            .unwrap_or("aws-us-east-2")
            .to_owned(),
        pg_version: p["pg_version"].as_i64().unwrap_or(17),
        org_id: p["org_id"].as_str().map(str::to_owned),
        history_retention_seconds: retention,
        store_passwords: p["store_passwords"].as_bool().unwrap_or(true),
        settings: p.get("settings").cloned(),
        default_endpoint_settings: p.get("default_endpoint_settings").cloned(),
        created_at: now.clone(),
        updated_at: now,
        default_branch_id: branch_id.clone(),
        branches: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        operations: Vec::new(),
    };
    let endpoint_id = endpoint.id.clone();
    let ops = vec![
        ctx.operation(&mut project, "create_timeline", Some(&branch_id), None),
        ctx.operation(
            &mut project,
            "start_compute",
            Some(&branch_id),
            Some(&endpoint_id),
        ),
    ];
    project.endpoints.insert(endpoint_id, endpoint);
    project.branches.insert(branch_id.clone(), branch);
    let b = &project.branches[&branch_id];
    let body = json!({
        "project": project.json(),
        "connection_uris": [connection],
        "roles": b.roles.values().map(|r| role_json(&b.id, r, true)).collect::<Vec<_>>(),
        "databases": b.databases.values().map(|d| database_json(&b.id, d)).collect::<Vec<_>>(),
        "operations": ops,
        "branch": project.branch_json(b),
        "endpoints": project.endpoints.values().map(|e| project.endpoint_json(e)).collect::<Vec<_>>(),
    });
    st.order.push(project_id.clone());
    st.projects.insert(project_id, project);
    ok(StatusCode::CREATED, body)
}

async fn get_project(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let st = ctx.state.lock().await;
    ok(
        StatusCode::OK,
        json!({ "project": project(&st, &id)?.json() }),
    )
}

async fn update_project(State(ctx): Ctx_, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let body = ctx.body("PATCH", "/projects/{project_id}", &bytes)?;
    let patch = &body["project"];
    if let Some(r) = patch["history_retention_seconds"].as_i64() {
        ctx.check_retention(r)?;
    }
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    if let Some(name) = patch["name"].as_str() {
        p.name = name.to_owned();
    }
    if let Some(r) = patch["history_retention_seconds"].as_i64() {
        p.history_retention_seconds = r;
    }
    if let Some(s) = patch.get("settings") {
        p.settings = Some(s.clone());
    }
    if let Some(s) = patch.get("default_endpoint_settings") {
        p.default_endpoint_settings = Some(s.clone());
    }
    p.updated_at = now_rfc3339();
    ok(
        StatusCode::OK,
        json!({ "project": p.json(), "operations": [] }),
    )
}

async fn delete_project(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let mut st = ctx.state.lock().await;
    project_for_change(&mut st, &id)?;
    let p = st.projects.remove(&id).expect("checked above");
    st.order.retain(|o| o != &id);
    for b in p.branches.values() {
        drop_branch_objects(&ctx, b).await.map_err(internal)?;
    }
    ok(StatusCode::OK, json!({ "project": p.json() }))
}

async fn drop_branch_objects(ctx: &Ctx, b: &Branch) -> Result<(), crate::BackendError> {
    for db in b.databases.values() {
        ctx.backend.drop_database(&db.physical).await?;
    }
    for role in b.roles.values() {
        ctx.backend.drop_role(&role.physical, &[]).await?;
    }
    Ok(())
}

// ---- branches ---------------------------------------------------------------------------

async fn list_branches(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let branches: Vec<Value> = p.branches.values().map(|b| p.branch_json(b)).collect();
    ok(
        StatusCode::OK,
        json!({ "branches": branches, "annotations": {} }),
    )
}

async fn get_branch(State(ctx): Ctx_, Path((id, branch_id)): Path<(String, String)>) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let b = branch(p, &branch_id)?;
    ok(
        StatusCode::OK,
        json!({
            "branch": p.branch_json(b),
            "annotation": { "object": { "type": "console/branch", "id": b.id }, "value": {} },
        }),
    )
}

async fn create_branch(State(ctx): Ctx_, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let body = ctx.body("POST", "/projects/{project_id}/branches", &bytes)?;
    let mut st = ctx.state.lock().await;
    let next_db_id = st.next_database_id;
    let p = project_for_change(&mut st, &id)?;
    let parent_id = match body["branch"]["parent_id"].as_str() {
        Some(pid) if !pid.is_empty() => pid.to_owned(),
        _ => p.default_branch_id.clone(),
    };
    let parent = branch(p, &parent_id).map_err(|_| not_found("parent branch"))?;
    let branch_id = ctx.rng.lock().unwrap().resource_id("br");
    let name = body["branch"]["name"]
        .as_str()
        .unwrap_or(&branch_id)
        .to_owned();
    if p.branches.values().any(|b| b.name == name) {
        return Err(conflict(format!(
            "branch with name `{name}` already exists"
        )));
    }
    let endpoint_requests = body["endpoints"].as_array().cloned().unwrap_or_default();
    if endpoint_requests
        .iter()
        .filter(|e| e["type"] == "read_write")
        .count()
        > 1
    {
        return Err(bad_request(
            "endpoints: a branch can have only one read_write endpoint",
        ));
    }

    // Copy the parent's roles (same passwords) and databases (same data).
    let now = now_rfc3339();
    let mut roles = BTreeMap::new();
    let mut renames = Vec::new();
    for r in parent.roles.values() {
        let physical = physical_name(&r.name, &ctx.suffix());
        ctx.backend
            .create_role(&physical, &r.password)
            .await
            .map_err(internal)?;
        renames.push((r.physical.clone(), physical.clone()));
        roles.insert(
            r.name.clone(),
            Role {
                name: r.name.clone(),
                physical,
                password: r.password.clone(),
                created_at: now.clone(),
                updated_at: now.clone(),
            },
        );
    }
    let members: Vec<String> = roles.values().map(|r: &Role| r.physical.clone()).collect();
    let mut databases = BTreeMap::new();
    let mut db_id = next_db_id;
    for d in parent.databases.values() {
        let physical = physical_name(&d.name, &ctx.suffix());
        let owner = &roles[&d.owner_name];
        ctx.backend
            .create_database(&physical, &owner.physical, &members, Some(&d.physical))
            .await
            .map_err(internal)?;
        ctx.backend
            .reassign_owned(&physical, &renames)
            .await
            .map_err(internal)?;
        databases.insert(
            d.name.clone(),
            Database {
                id: db_id,
                name: d.name.clone(),
                physical,
                owner_name: d.owner_name.clone(),
                created_at: now.clone(),
                updated_at: now.clone(),
            },
        );
        db_id += 1;
    }
    // REASSIGN OWNED moved the parent's databases too: give them back.
    for d in parent.databases.values() {
        let owner = &parent.roles[&d.owner_name];
        ctx.backend
            .set_owner(&d.physical, &owner.physical)
            .await
            .map_err(internal)?;
    }

    let new_branch = Branch {
        id: branch_id.clone(),
        name,
        parent_id: Some(parent_id),
        protected: body["branch"]["protected"].as_bool().unwrap_or(false),
        created_at: now.clone(),
        updated_at: now,
        roles,
        databases,
    };
    let mut ops = vec![ctx.operation(p, "create_branch", Some(&branch_id), None)];
    let mut endpoints = Vec::new();
    for e in &endpoint_requests {
        let kind = e["type"].as_str().unwrap_or("read_write");
        let endpoint = ctx.new_endpoint(&branch_id, kind, e);
        ops.push(ctx.operation(p, "start_compute", Some(&branch_id), Some(&endpoint.id)));
        endpoints.push(endpoint.id.clone());
        p.endpoints.insert(endpoint.id.clone(), endpoint);
    }
    let mut body = json!({
        "branch": p.branch_json(&new_branch),
        "endpoints": endpoints.iter().map(|e| p.endpoint_json(&p.endpoints[e])).collect::<Vec<_>>(),
        "operations": ops,
        "roles": new_branch.roles.values().map(|r| role_json(&branch_id, r, false)).collect::<Vec<_>>(),
        "databases": new_branch.databases.values().map(|d| database_json(&branch_id, d)).collect::<Vec<_>>(),
    });
    if !endpoints.is_empty() {
        let uris: Vec<Value> = new_branch
            .databases
            .values()
            .filter_map(|d| Some(ctx.connection_details(new_branch.roles.get(&d.owner_name)?, d)))
            .collect();
        body["connection_uris"] = json!(uris);
    }
    p.branches.insert(branch_id, new_branch);
    st.next_database_id = db_id;
    ok(StatusCode::CREATED, body)
}

async fn update_branch(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Answer {
    let body = ctx.body(
        "PATCH",
        "/projects/{project_id}/branches/{branch_id}",
        &bytes,
    )?;
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    branch(p, &branch_id)?;
    if let Some(name) = body["branch"]["name"].as_str()
        && p.branches
            .values()
            .any(|b| b.name == name && b.id != branch_id)
    {
        return Err(conflict(format!(
            "branch with name `{name}` already exists"
        )));
    }
    let b = branch_mut(p, &branch_id)?;
    if let Some(name) = body["branch"]["name"].as_str() {
        b.name = name.to_owned();
    }
    if let Some(protected) = body["branch"]["protected"].as_bool() {
        b.protected = protected;
    }
    b.updated_at = now_rfc3339();
    let json = p.branch_json(&p.branches[&branch_id]);
    ok(StatusCode::OK, json!({ "branch": json, "operations": [] }))
}

async fn delete_branch(State(ctx): Ctx_, Path((id, branch_id)): Path<(String, String)>) -> Answer {
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    if b.id == p.default_branch_id {
        return Err(bad_request("cannot delete the project's default branch"));
    }
    if b.protected {
        return Err(bad_request("cannot delete a protected branch"));
    }
    if p.branches
        .values()
        .any(|c| c.parent_id.as_deref() == Some(&branch_id))
    {
        return Err(bad_request(
            "cannot delete a branch that has child branches",
        ));
    }
    drop_branch_objects(&ctx, b).await.map_err(internal)?;
    let b = p.branches.remove(&branch_id).expect("checked above");
    let endpoints: Vec<String> = p
        .endpoints
        .values()
        .filter(|e| e.branch_id == branch_id)
        .map(|e| e.id.clone())
        .collect();
    let mut ops = Vec::new();
    for e in endpoints {
        p.endpoints.remove(&e);
        ops.push(ctx.operation(p, "suspend_compute", Some(&branch_id), Some(&e)));
    }
    ops.push(ctx.operation(p, "delete_timeline", Some(&branch_id), None));
    let mut json = p.branch_json(&b);
    json["current_state"] = json!("ready");
    ok(StatusCode::OK, json!({ "branch": json, "operations": ops }))
}

// ---- endpoints --------------------------------------------------------------------------

async fn list_endpoints(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let endpoints: Vec<Value> = p.endpoints.values().map(|e| p.endpoint_json(e)).collect();
    ok(StatusCode::OK, json!({ "endpoints": endpoints }))
}

async fn get_endpoint(State(ctx): Ctx_, Path((id, endpoint_id)): Path<(String, String)>) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let e = p
        .endpoints
        .get(&endpoint_id)
        .ok_or_else(|| not_found("endpoint"))?;
    ok(StatusCode::OK, json!({ "endpoint": p.endpoint_json(e) }))
}

async fn create_endpoint(State(ctx): Ctx_, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let body = ctx.body("POST", "/projects/{project_id}/endpoints", &bytes)?;
    let e = &body["endpoint"];
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let branch_id = e["branch_id"].as_str().unwrap_or_default().to_owned();
    branch(p, &branch_id)?;
    if let Some(region) = e["region_id"].as_str()
        && region != p.region_id
    {
        return Err(bad_request(format!(
            "endpoint.region_id: only the project's region `{}` is permitted",
            p.region_id
        )));
    }
    let kind = e["type"].as_str().unwrap_or("read_write");
    if kind == "read_write" && p.read_write_endpoint(&branch_id).is_some() {
        return Err(bad_request("branch already has a read_write endpoint"));
    }
    let endpoint = ctx.new_endpoint(&branch_id, kind, e);
    let endpoint_id = endpoint.id.clone();
    p.endpoints.insert(endpoint_id.clone(), endpoint);
    let op = ctx.operation(p, "start_compute", Some(&branch_id), Some(&endpoint_id));
    let json = p.endpoint_json(&p.endpoints[&endpoint_id]);
    ok(
        StatusCode::CREATED,
        json!({ "endpoint": json, "operations": [op] }),
    )
}

async fn update_endpoint(
    State(ctx): Ctx_,
    Path((id, endpoint_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Answer {
    let body = ctx.body(
        "PATCH",
        "/projects/{project_id}/endpoints/{endpoint_id}",
        &bytes,
    )?;
    let patch = &body["endpoint"];
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let e = p
        .endpoints
        .get_mut(&endpoint_id)
        .ok_or_else(|| not_found("endpoint"))?;
    if let Some(v) = patch["autoscaling_limit_min_cu"].as_f64() {
        e.min_cu = v;
    }
    if let Some(v) = patch["autoscaling_limit_max_cu"].as_f64() {
        e.max_cu = v;
    }
    if let Some(v) = patch["suspend_timeout_seconds"].as_i64() {
        e.suspend_timeout_seconds = v;
    }
    if let Some(v) = patch["disabled"].as_bool() {
        e.disabled = v;
    }
    if let Some(v) = patch["pooler_enabled"].as_bool() {
        e.pooler_enabled = v;
    }
    if let Some(v) = patch.get("settings") {
        e.settings = v.clone();
    }
    e.updated_at = now_rfc3339();
    let branch_id = e.branch_id.clone();
    let op = ctx.operation(p, "apply_config", Some(&branch_id), Some(&endpoint_id));
    let json = p.endpoint_json(&p.endpoints[&endpoint_id]);
    ok(
        StatusCode::OK,
        json!({ "endpoint": json, "operations": [op] }),
    )
}

async fn delete_endpoint(
    State(ctx): Ctx_,
    Path((id, endpoint_id)): Path<(String, String)>,
) -> Answer {
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let e = p
        .endpoints
        .remove(&endpoint_id)
        .ok_or_else(|| not_found("endpoint"))?;
    let op = ctx.operation(p, "suspend_compute", Some(&e.branch_id), Some(&endpoint_id));
    let json = p.endpoint_json(&e);
    ok(
        StatusCode::OK,
        json!({ "endpoint": json, "operations": [op] }),
    )
}

// ---- roles ------------------------------------------------------------------------------

async fn list_roles(State(ctx): Ctx_, Path((id, branch_id)): Path<(String, String)>) -> Answer {
    let st = ctx.state.lock().await;
    let b = branch(project(&st, &id)?, &branch_id)?;
    let roles: Vec<Value> = b
        .roles
        .values()
        .map(|r| role_json(&b.id, r, false))
        .collect();
    ok(StatusCode::OK, json!({ "roles": roles }))
}

async fn get_role(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let b = branch(project(&st, &id)?, &branch_id)?;
    let r = b.roles.get(&name).ok_or_else(|| not_found("role"))?;
    ok(
        StatusCode::OK,
        json!({ "role": role_json(&b.id, r, false) }),
    )
}

async fn create_role(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Answer {
    let body = ctx.body(
        "POST",
        "/projects/{project_id}/branches/{branch_id}/roles",
        &bytes,
    )?;
    let name = body["role"]["name"].as_str().unwrap_or_default().to_owned();
    check_name("role", &name)?;
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    if b.roles.contains_key(&name) {
        return Err(conflict(format!("role `{name}` already exists")));
    }
    let physical = physical_name(&name, &ctx.suffix());
    let password = ctx.rng.lock().unwrap().password();
    ctx.backend
        .create_role(&physical, &password)
        .await
        .map_err(internal)?;
    for db in b.databases.values() {
        ctx.backend
            .grant_connect(&db.physical, &physical)
            .await
            .map_err(internal)?;
    }
    let now = now_rfc3339();
    let role = Role {
        name: name.clone(),
        physical,
        password,
        created_at: now.clone(),
        updated_at: now,
    };
    let json = role_json(&branch_id, &role, true);
    branch_mut(p, &branch_id)?.roles.insert(name, role);
    let op = ctx.operation(p, "apply_config", Some(&branch_id), None);
    ok(
        StatusCode::CREATED,
        json!({ "role": json, "operations": [op] }),
    )
}

async fn delete_role(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    let role = b.roles.get(&name).ok_or_else(|| not_found("role"))?;
    if let Some(db) = b.databases.values().find(|d| d.owner_name == name) {
        return Err(bad_request(format!(
            "role `{name}` owns database `{}`; delete the database or change its owner first",
            db.name
        )));
    }
    let dbs: Vec<String> = b.databases.values().map(|d| d.physical.clone()).collect();
    if let Err(e) = ctx.backend.drop_role(&role.physical, &dbs).await {
        return match e.db_message() {
            Some(message) => Err(bad_request(message)),
            None => Err(internal(e)),
        };
    }
    let role = branch_mut(p, &branch_id)?
        .roles
        .remove(&name)
        .expect("checked above");
    let op = ctx.operation(p, "apply_config", Some(&branch_id), None);
    ok(
        StatusCode::OK,
        json!({ "role": role_json(&branch_id, &role, false), "operations": [op] }),
    )
}

async fn reveal_password(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let b = branch(p, &branch_id)?;
    let r = b.roles.get(&name).ok_or_else(|| not_found("role"))?;
    if !p.store_passwords {
        return Err(ApiError(
            StatusCode::PRECONDITION_FAILED,
            "the project does not store role passwords".into(),
        ));
    }
    ok(StatusCode::OK, json!({ "password": r.password }))
}

async fn reset_password(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    let physical = b
        .roles
        .get(&name)
        .ok_or_else(|| not_found("role"))?
        .physical
        .clone();
    let password = ctx.rng.lock().unwrap().password();
    ctx.backend
        .set_password(&physical, &password)
        .await
        .map_err(internal)?;
    let role = branch_mut(p, &branch_id)?
        .roles
        .get_mut(&name)
        .expect("checked above");
    role.password = password;
    role.updated_at = now_rfc3339();
    let json = role_json(&branch_id, role, true);
    let op = ctx.operation(p, "apply_config", Some(&branch_id), None);
    ok(StatusCode::OK, json!({ "role": json, "operations": [op] }))
}

// ---- databases --------------------------------------------------------------------------

async fn list_databases(State(ctx): Ctx_, Path((id, branch_id)): Path<(String, String)>) -> Answer {
    let st = ctx.state.lock().await;
    let b = branch(project(&st, &id)?, &branch_id)?;
    let dbs: Vec<Value> = b
        .databases
        .values()
        .map(|d| database_json(&b.id, d))
        .collect();
    ok(StatusCode::OK, json!({ "databases": dbs }))
}

async fn get_database(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let b = branch(project(&st, &id)?, &branch_id)?;
    let d = b
        .databases
        .get(&name)
        .ok_or_else(|| not_found("database"))?;
    ok(
        StatusCode::OK,
        json!({ "database": database_json(&b.id, d) }),
    )
}

async fn create_database(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Answer {
    let body = ctx.body(
        "POST",
        "/projects/{project_id}/branches/{branch_id}/databases",
        &bytes,
    )?;
    let name = body["database"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let owner_name = body["database"]["owner_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    check_name("database", &name)?;
    let mut st = ctx.state.lock().await;
    let db_id = st.next_database_id;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    if b.databases.contains_key(&name) {
        return Err(conflict(format!("database `{name}` already exists")));
    }
    let owner = b.roles.get(&owner_name).ok_or_else(|| {
        bad_request(format!(
            "database.owner_name: role `{owner_name}` does not exist in branch `{branch_id}`"
        ))
    })?;
    let physical = physical_name(&name, &ctx.suffix());
    let members: Vec<String> = b.roles.values().map(|r| r.physical.clone()).collect();
    ctx.backend
        .create_database(&physical, &owner.physical, &members, None)
        .await
        .map_err(internal)?;
    let now = now_rfc3339();
    let db = Database {
        id: db_id,
        name: name.clone(),
        physical,
        owner_name,
        created_at: now.clone(),
        updated_at: now,
    };
    let json = database_json(&branch_id, &db);
    branch_mut(p, &branch_id)?.databases.insert(name, db);
    let op = ctx.operation(p, "apply_config", Some(&branch_id), None);
    st.next_database_id += 1;
    ok(
        StatusCode::CREATED,
        json!({ "database": json, "operations": [op] }),
    )
}

async fn update_database(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Answer {
    let body = ctx.body(
        "PATCH",
        "/projects/{project_id}/branches/{branch_id}/databases/{database_name}",
        &bytes,
    )?;
    let patch = &body["database"];
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    let db = b
        .databases
        .get(&name)
        .ok_or_else(|| not_found("database"))?;
    let new_name = patch["name"].as_str().unwrap_or(&name).to_owned();
    check_name("database", &new_name)?;
    if new_name != name && b.databases.contains_key(&new_name) {
        return Err(conflict(format!("database `{new_name}` already exists")));
    }
    let new_owner = patch["owner_name"]
        .as_str()
        .unwrap_or(&db.owner_name)
        .to_owned();
    let owner = b.roles.get(&new_owner).ok_or_else(|| {
        bad_request(format!(
            "database.owner_name: role `{new_owner}` does not exist in branch `{branch_id}`"
        ))
    })?;
    if new_owner != db.owner_name {
        ctx.backend
            .set_owner(&db.physical, &owner.physical)
            .await
            .map_err(internal)?;
    }
    let b = branch_mut(p, &branch_id)?;
    let mut db = b.databases.remove(&name).expect("checked above");
    db.name = new_name.clone();
    db.owner_name = new_owner;
    db.updated_at = now_rfc3339();
    let json = database_json(&branch_id, &db);
    b.databases.insert(new_name, db);
    let op = ctx.operation(p, "apply_config", Some(&branch_id), None);
    ok(
        StatusCode::OK,
        json!({ "database": json, "operations": [op] }),
    )
}

async fn delete_database(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    let db = b
        .databases
        .get(&name)
        .ok_or_else(|| not_found("database"))?;
    ctx.backend
        .drop_database(&db.physical)
        .await
        .map_err(internal)?;
    let db = branch_mut(p, &branch_id)?
        .databases
        .remove(&name)
        .expect("checked above");
    let op = ctx.operation(p, "apply_config", Some(&branch_id), None);
    ok(
        StatusCode::OK,
        json!({ "database": database_json(&branch_id, &db), "operations": [op] }),
    )
}

// ---- connection URIs and operations -----------------------------------------------------

async fn connection_uri(
    State(ctx): Ctx_,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let database_name = q
        .get("database_name")
        .ok_or_else(|| bad_request("database_name: query parameter is required"))?;
    let role_name = q
        .get("role_name")
        .ok_or_else(|| bad_request("role_name: query parameter is required"))?;
    if let Some(pooled) = q.get("pooled")
        && pooled != "true"
        && pooled != "false"
    {
        return Err(bad_request("pooled: must be true or false"));
    }
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let branch_id = q.get("branch_id").unwrap_or(&p.default_branch_id);
    let b = branch(p, branch_id)?;
    match q.get("endpoint_id") {
        Some(e) => {
            let endpoint = p.endpoints.get(e).ok_or_else(|| not_found("endpoint"))?;
            if &endpoint.branch_id != branch_id {
                return Err(bad_request(
                    "endpoint_id: the endpoint belongs to another branch",
                ));
            }
        }
        None => {
            p.read_write_endpoint(branch_id)
                .ok_or_else(|| not_found("read_write endpoint for the branch"))?;
        }
    }
    let db = b
        .databases
        .get(database_name)
        .ok_or_else(|| not_found("database"))?;
    let role = b.roles.get(role_name).ok_or_else(|| not_found("role"))?;
    // No PgBouncer here: a pooled URI is the direct one.
    ok(
        StatusCode::OK,
        json!({ "uri": ctx.backend.uri(&role.physical, &role.password, &db.physical) }),
    )
}

async fn list_operations(
    State(ctx): Ctx_,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let limit = match q.get("limit") {
        None => 10,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=1000) => n,
            _ => return Err(bad_request("limit: must be an integer from 1 to 1000")),
        },
    };
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    // Newest first, as Neon lists them.
    let all: Vec<&Operation> = p.operations.iter().rev().collect();
    let start = match q.get("cursor") {
        Some(c) => all.iter().position(|o| &o.id == c).map_or(0, |i| i + 1),
        None => 0,
    };
    let page: Vec<&&Operation> = all[start.min(all.len())..].iter().take(limit).collect();
    let mut body = json!({ "operations": page.iter().map(|o| o.json()).collect::<Vec<_>>() });
    if let Some(last) = page.last() {
        body["pagination"] = json!({ "cursor": last.id });
    }
    ok(StatusCode::OK, body)
}

async fn get_operation(State(ctx): Ctx_, Path((id, op_id)): Path<(String, String)>) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let op = p
        .operations
        .iter()
        .find(|o| o.id == op_id)
        .ok_or_else(|| not_found("operation"))?;
    ok(StatusCode::OK, json!({ "operation": op.json() }))
}
