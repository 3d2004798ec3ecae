//! Databases on a branch: list, get, create, update (name, owner), delete.

use super::*;

pub(super) async fn list_databases(
    State(ctx): Ctx_,
    Path((id, branch_id)): Path<(String, String)>,
) -> Answer {
    let st = ctx.state.lock().await;
    let b = branch(project(&st, &id)?, &branch_id)?;
    let dbs: Vec<Value> = b
        .databases
        .values()
        .map(|d| database_json(&b.id, d))
        .collect();
    ok(StatusCode::OK, json!({ "databases": dbs }))
}

pub(super) async fn get_database(
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

pub(super) async fn create_database(
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
    b.cluster
        .create_database(&name, &owner.name)
        .await
        .map_err(internal)?;
    let now = now_rfc3339();
    let db = Database {
        id: db_id,
        name: name.clone(),
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

pub(super) async fn update_database(
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
    if new_name != name {
        b.cluster
            .rename_database(&name, &new_name)
            .await
            .map_err(internal)?;
    }
    if new_owner != db.owner_name {
        b.cluster
            .set_owner(&new_name, &owner.name)
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

pub(super) async fn delete_database(
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
    b.cluster.drop_database(&db.name).await.map_err(internal)?;
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
