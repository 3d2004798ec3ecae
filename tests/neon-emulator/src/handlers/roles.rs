//! Roles on a branch: list, get, create, delete, reveal and reset the password.

use super::*;

pub(super) async fn list_roles(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let b = branch(project(&st, &id)?, &branch_id)?;
    let roles: Vec<Value> = b
        .roles
        .values()
        .map(|r| role_json(&b.id, r, false))
        .collect();
    ok(StatusCode::OK, json!({ "roles": roles }))
}

pub(super) async fn get_role(
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

pub(super) async fn create_role(
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
    let password = ctx.rng.lock().unwrap().password();
    b.cluster
        .create_role(&name, &password)
        .await
        .map_err(internal)?;
    let now = now_rfc3339();
    let role = Role {
        name: name.clone(),
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

pub(super) async fn delete_role(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    b.roles.get(&name).ok_or_else(|| not_found("role"))?;
    if let Some(db) = b.databases.values().find(|d| d.owner_name == name) {
        return Err(bad_request(format!(
            "role `{name}` owns database `{}`; delete the database or change its owner first",
            db.name
        )));
    }
    if let Err(e) = b.cluster.drop_role(&name).await {
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

pub(super) async fn reveal_password(
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

pub(super) async fn reset_password(
    State(ctx): Ctx_,
    Path((id, branch_id, name)): Path<(String, String, String)>,
) -> Answer {
    let mut st = ctx.state.lock().await;
    let p = project_for_change(&mut st, &id)?;
    let b = branch(p, &branch_id)?;
    b.roles.get(&name).ok_or_else(|| not_found("role"))?;
    let password = ctx.rng.lock().unwrap().password();
    b.cluster
        .set_password(&name, &password)
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
