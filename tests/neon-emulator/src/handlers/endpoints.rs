//! Endpoints: list, get, create, update, delete.

use super::*;

pub(super) async fn list_endpoints(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let endpoints: Vec<Value> = p.endpoints.values().map(|e| p.endpoint_json(e)).collect();
    ok(StatusCode::OK, json!({ "endpoints": endpoints }))
}

pub(super) async fn get_endpoint(
    State(ctx): Ctx_,
    Path((id, endpoint_id)): Path<(String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let e = p
        .endpoints
        .get(&endpoint_id)
        .ok_or_else(|| not_found("endpoint"))?;
    ok(StatusCode::OK, json!({ "endpoint": p.endpoint_json(e) }))
}

pub(super) async fn create_endpoint(
    State(ctx): Ctx_,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
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

pub(super) async fn update_endpoint(
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

pub(super) async fn delete_endpoint(
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
