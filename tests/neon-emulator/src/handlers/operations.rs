//! Connection URIs, and the operations every change starts.

use super::*;

pub(super) async fn connection_uri(
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
    let uri = if q.get("pooled").is_some_and(|p| p == "true") {
        b.cluster.pooled_uri(&role.name, &role.password, &db.name)
    } else {
        b.cluster.uri(&role.name, &role.password, &db.name)
    };
    ok(StatusCode::OK, json!({ "uri": uri }))
}

pub(super) async fn list_operations(
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

pub(super) async fn get_operation(
    State(ctx): Ctx_,
    Path((id, op_id)): Path<(String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let p = project(&st, &id)?;
    let op = p
        .operations
        .iter()
        .find(|o| o.id == op_id)
        .ok_or_else(|| not_found("operation"))?;
    ok(StatusCode::OK, json!({ "operation": op.json() }))
}
