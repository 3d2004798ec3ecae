//! Projects: list (search, org_id, pagination), create with its default branch, endpoint,
//! role and database, get, update, delete.

use super::*;

/// Neon's answer to a personal API key of an organization member that names no
/// organization (`GET /projects`, `POST /projects`).
const ORG_ID_REQUIRED: &str =
    "org_id is required, you can find it on your organization settings page";

pub(super) async fn list_projects(
    State(ctx): Ctx_,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    if ctx.config.require_org_id && !q.contains_key("org_id") {
        return Err(bad_request(ORG_ID_REQUIRED));
    }
    let limit = match q.get("limit") {
        None => 10,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=400) => n,
            _ => return Err(bad_request("limit: must be an integer from 1 to 400")),
        },
    };
    let mut st = ctx.state.lock().await;
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
    let mut page = page;
    let mut unavailable: Vec<String> = Vec::new();
    if st.incomplete_lists > 0 && !page.is_empty() {
        unavailable = page.iter().map(|p| p.id.clone()).collect();
        page.clear();
    }
    let mut body = json!({
        "projects": page.iter().map(|p| p.list_json()).collect::<Vec<_>>(),
        "applications": {},
        "integrations": {},
    });
    if !unavailable.is_empty() {
        body["unavailable_project_ids"] = json!(unavailable);
    }
    // The spec's cursor is a non-empty string: an empty page has none.
    if let Some(last) = page.last() {
        body["pagination"] = json!({ "cursor": last.id });
    }
    if !unavailable.is_empty() {
        st.incomplete_lists -= 1;
    }
    ok(StatusCode::OK, body)
}

pub(super) async fn create_project(State(ctx): Ctx_, bytes: Bytes) -> Answer {
    let body = ctx.body("POST", "/projects", &bytes)?;
    let p = &body["project"];
    if ctx.config.require_org_id && p["org_id"].as_str().is_none() {
        return Err(bad_request(ORG_ID_REQUIRED));
    }
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
    // Held from here, so a list made while the project is being created waits and sees it
    // (Neon lists a project as soon as its create was accepted).
    let mut st = ctx.state.lock().await;
    // The project's first branch gets its own server; dropped on failure, it goes away.
    let cluster = ctx.clusters.create(&branch_id).await.map_err(internal)?;
    cluster
        .create_role(&role_name, &password)
        .await
        .map_err(internal)?;
    cluster
        .create_database(&database_name, &role_name)
        .await
        .map_err(internal)?;

    let now = now_rfc3339();
    let role = Role {
        name: role_name.clone(),
        password,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let db = Database {
        id: st.next_database_id,
        name: database_name.clone(),
        owner_name: role_name.clone(),
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    st.next_database_id += 1;
    let endpoint = ctx.new_endpoint(&branch_id, "read_write", &p["default_endpoint_settings"]);
    let branch = Branch {
        id: branch_id.clone(),
        name: p["branch"]["name"].as_str().unwrap_or("main").to_owned(),
        parent_id: None,
        protected: false,
        created_at: now.clone(),
        updated_at: now.clone(),
        expires_at: None,
        annotation: BTreeMap::new(),
        init_source: "parent-data".to_owned(),
        reap_later: false,
        roles: BTreeMap::from([(role_name.clone(), role)]),
        databases: BTreeMap::from([(database_name.clone(), db)]),
        cluster,
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
    let connection = connection_details(b, &b.roles[&role_name], &b.databases[&database_name]);
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

pub(super) async fn get_project(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let st = ctx.state.lock().await;
    ok(
        StatusCode::OK,
        json!({ "project": project(&st, &id)?.json() }),
    )
}

pub(super) async fn update_project(
    State(ctx): Ctx_,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
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

pub(super) async fn delete_project(State(ctx): Ctx_, Path(id): Path<String>) -> Answer {
    let mut st = ctx.state.lock().await;
    project_for_change(&mut st, &id)?;
    let p = st.projects.remove(&id).expect("checked above");
    st.order.retain(|o| o != &id);
    let json = p.json();
    for (_, b) in p.branches {
        b.cluster.shut_down().await;
    }
    ok(StatusCode::OK, json!({ "project": json }))
}
