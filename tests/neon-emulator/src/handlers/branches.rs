//! Branches: list, get, create (a copy of the parent's roles and databases), update, delete.

use super::*;
use crate::backend::PointInTime;

pub(super) async fn list_branches(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let branches: Vec<Value> = p.branches.values().map(|b| p.branch_json(b)).collect();
    let annotations: serde_json::Map<String, Value> = p
        .branches
        .values()
        .map(|b| (b.id.clone(), p.annotation_json(b)))
        .collect();
    ok(
        StatusCode::OK,
        json!({ "branches": branches, "annotations": annotations }),
    )
}

pub(super) async fn get_branch(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let b = branch(p, &branch_id)?;
    ok(
        StatusCode::OK,
        json!({
            "branch": p.branch_json(b),
            "annotation": p.annotation_json(b),
        }),
    )
}

pub(super) async fn create_branch(
    State(ctx): Ctx_,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = ctx.body("POST", "/projects/{project_id}/branches", &bytes)?;
    let mut st = ctx.state.lock().await;
    let next_db_id = st.next_database_id;
    let p = project_for_change(&mut st, &id)?;
    let parent_id = match body["branch"]["parent_id"].as_str() {
        Some(pid) if !pid.is_empty() => pid.to_owned(),
        _ => p.default_branch_id.clone(),
    };
    let parent = branch(p, &parent_id).map_err(|_| not_found("parent branch"))?;
    let expires_at = match body["branch"].get("expires_at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(check_expires_at(&ctx, v)?),
    };
    let annotation = check_annotation(&body["annotation_value"])?;
    let schema_only = match body["branch"]["init_source"].as_str() {
        None | Some("parent-data") => false,
        Some("schema-only") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "init_source: `{other}` is not one of schema-only, parent-data"
            )));
        }
    };
    let point = point_in_time(&body["branch"], parent, parent_id == p.default_branch_id)?;
    if let Some(PointInTime::Lsn(lsn)) = &point
        && !parent.cluster.has_lsn(lsn).await.map_err(|e| {
            bad_request(format!(
                "parent_lsn: `{lsn}` is not an LSN ({})",
                e.db_message().unwrap_or_default()
            ))
        })?
    {
        return Err(bad_request(format!(
            "parent_lsn: {lsn} is beyond the parent branch's current LSN"
        )));
    }
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

    // A copy of the parent's server: its roles (same passwords) and databases (same data).
    let cluster = match &point {
        None => ctx.clusters.branch(&parent.cluster, &branch_id).await,
        Some(point) => {
            ctx.clusters
                .branch_at(&parent.cluster, &branch_id, point)
                .await
        }
    }
    .map_err(internal)?;
    if schema_only {
        // The tables, none of their rows (`init_source` in Neon's spec).
        cluster.empty_tables().await.map_err(internal)?;
    }
    let now = now_rfc3339();
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for r in parent.roles.values() {
        // A child of a protected branch gets new passwords for its roles, so the parent's
        // do not open it (https://neon.com/docs/guides/protected-branches).
        let password = if parent.protected {
            let fresh = ctx.rng.lock().unwrap().password();
            cluster
                .set_password(&r.name, &fresh)
                .await
                .map_err(internal)?;
            fresh
        } else {
            r.password.clone()
        };
        let role = Role {
            name: r.name.clone(),
            password,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        roles.insert(r.name.clone(), role);
    }
    let mut db_id = next_db_id;
    let mut databases = BTreeMap::new();
    for d in parent.databases.values() {
        let db = Database {
            id: db_id,
            name: d.name.clone(),
            owner_name: d.owner_name.clone(),
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        databases.insert(d.name.clone(), db);
        db_id += 1;
    }

    let new_branch = Branch {
        id: branch_id.clone(),
        name,
        // A schema-only branch is a new root: no parent-child relationship.
        parent_id: (!schema_only).then_some(parent_id),
        protected: body["branch"]["protected"].as_bool().unwrap_or(false),
        created_at: now.clone(),
        updated_at: now,
        expires_at,
        annotation,
        init_source: if schema_only {
            "schema-only"
        } else {
            "parent-data"
        }
        .to_owned(),
        reap_later: false,
        roles,
        databases,
        cluster,
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
            .filter_map(|d| {
                Some(connection_details(
                    &new_branch,
                    new_branch.roles.get(&d.owner_name)?,
                    d,
                ))
            })
            .collect();
        body["connection_uris"] = json!(uris);
    }
    p.branches.insert(branch_id, new_branch);
    st.next_database_id = db_id;
    ok(StatusCode::CREATED, body)
}

pub(super) async fn update_branch(
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
    let is_default = branch_id == p.default_branch_id;
    let b = branch_mut(p, &branch_id)?;
    if let Some(v) = body["branch"].get("expires_at") {
        if v.is_null() {
            b.expires_at = None;
        } else if is_default || b.protected {
            return Err(bad_request(
                "expires_at: the default branch and protected branches cannot expire",
            ));
        } else {
            b.expires_at = Some(check_expires_at(&ctx, v)?);
        }
    }
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

pub(super) async fn delete_branch(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
) -> Answer {
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
    b.cluster.shut_down().await;
    ok(StatusCode::OK, json!({ "branch": json, "operations": ops }))
}

/// Neon's rules for `expires_at` (https://neon.com/docs/guides/branch-expiration,
/// "Restrictions"): RFC 3339, in the future, at most 30 days ahead; and, as the spec marks
/// the field Early Access, only for an account in that programme.
fn check_expires_at(ctx: &super::Ctx, v: &Value) -> Result<String, ApiError> {
    if ctx.config.no_early_access {
        return Err(bad_request(
            "expires_at: branch expiration is available to Early Access accounts only",
        ));
    }
    let parsed = v.as_str().and_then(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    });
    let Some(at) = parsed else {
        return Err(bad_request(
            "expires_at: must be an RFC 3339 timestamp, such as 2025-06-09T18:02:16Z",
        ));
    };
    let now = time::OffsetDateTime::now_utc();
    if at <= now {
        return Err(bad_request("expires_at: must be in the future"));
    }
    if at > now + time::Duration::days(30) {
        return Err(bad_request(
            "expires_at: must be no more than 30 days from now",
        ));
    }
    Ok(crate::util::rfc3339(at.unix_timestamp()))
}

/// `annotation_value`: at most 50 string pairs (`AnnotationValueData`).
fn check_annotation(v: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(map) = v.as_object() else {
        return Ok(BTreeMap::new());
    };
    if map.len() > 50 {
        return Err(bad_request("annotation_value: at most 50 properties"));
    }
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_owned())),
            None => Err(bad_request(format!(
                "annotation_value.{k}: must be a string"
            ))),
        })
        .collect()
}

/// `parent_timestamp` or `parent_lsn`, checked as Neon checks them: one of the two, a time
/// in the past and within the branch's history. The emulator keeps the history of a
/// project's first branch (its WAL since the project was made), the branch previews start
/// from; another parent is refused with a message that says so.
fn point_in_time(
    branch: &Value,
    parent: &Branch,
    parent_is_first: bool,
) -> Result<Option<PointInTime>, ApiError> {
    let point = match (
        branch["parent_timestamp"].as_str(),
        branch["parent_lsn"].as_str(),
    ) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(bad_request(
                "specify either parent_lsn or parent_timestamp, not both",
            ));
        }
        (Some(t), None) => {
            let rfc = &time::format_description::well_known::Rfc3339;
            let at = time::OffsetDateTime::parse(t, rfc).map_err(|_| {
                bad_request(
                    "parent_timestamp: must be an ISO 8601 time, such as 2024-02-26T12:00:00Z",
                )
            })?;
            if at > time::OffsetDateTime::now_utc() {
                return Err(bad_request("parent_timestamp: must not be in the future"));
            }
            let created = time::OffsetDateTime::parse(&parent.created_at, rfc)
                .map_err(|_| bad_request("parent branch has no creation time"))?;
            if at < created {
                return Err(bad_request(format!(
                    "parent_timestamp: {t} is before the parent branch's history (it was created at {})",
                    parent.created_at
                )));
            }
            PointInTime::Time(crate::util::rfc3339(at.unix_timestamp()))
        }
        (None, Some(l)) => PointInTime::Lsn(l.to_owned()),
    };
    let from_template =
        parent_is_first && parent.parent_id.is_none() && parent.init_source == "parent-data";
    if !from_template {
        return Err(bad_request(
            "the emulator keeps the history of a project's first branch only; branch from it, or without parent_lsn/parent_timestamp",
        ));
    }
    Ok(Some(point))
}

/// `GET .../branches/{branch_id}/compare_schema?db_name=&base_branch_id=`: the difference
/// between the base branch's schema of `db_name` (default base: the branch's parent) and
/// this branch's, as a unified diff of `pg_dump --schema-only` (what Neon's schema diff
/// shows). Points in time (`lsn`, `timestamp`) are not served: 400.
pub(super) async fn compare_schema(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let db_name = q
        .get("db_name")
        .ok_or_else(|| bad_request("db_name: query parameter is required"))?;
    for unsupported in ["lsn", "timestamp", "base_lsn", "base_timestamp"] {
        if q.contains_key(unsupported) {
            return Err(bad_request(format!(
                "{unsupported}: the emulator compares the branches as they are now"
            )));
        }
    }
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let b = branch(p, &branch_id)?;
    let base_id = match q.get("base_branch_id") {
        Some(base) => base.clone(),
        None => b.parent_id.clone().ok_or_else(|| {
            bad_request("base_branch_id: the branch has no parent; name the branch to compare with")
        })?,
    };
    let base = branch(p, &base_id)?;
    if !b.databases.contains_key(db_name) || !base.databases.contains_key(db_name) {
        return Err(not_found("database"));
    }
    let before = base.cluster.schema(db_name).await.map_err(internal)?;
    let after = b.cluster.schema(db_name).await.map_err(internal)?;
    let diff = crate::util::unified_diff(&before, &after, &base.name, &b.name);
    ok(StatusCode::OK, json!({ "diff": diff }))
}
