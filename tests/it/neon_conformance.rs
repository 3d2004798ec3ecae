//! Every endpoint the emulator serves, driven once, each answer checked against the response
//! schema of Neon's OpenAPI document (the client asserts that on every call), and the bad
//! requests Neon rejects rejected the same way.

use harness::neon::{Answer, NeonStack};
use serde_json::{Value, json};

const P: &str = "/projects/{project_id}";
const B: &str = "/projects/{project_id}/branches/{branch_id}";

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

fn expect(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{:#}", answer.body);
}

#[tokio::test]
async fn every_endpoint_answers_as_the_spec_says() {
    let neon = NeonStack::start(|_| {}).await;
    let c = &neon.client;

    // Projects.
    let created = c
        .call(
            "POST",
            "/projects",
            &[],
            "",
            Some(json!({ "project": {
                "name": "my-application-project", "pg_version": 17, "region_id": "aws-us-east-1",
                "org_id": "org-test-123", "history_retention_seconds": 21600
            }})),
        )
        .await;
    expect(&created, 201);
    let pid = s(&created.body["project"]["id"]);
    let main = s(&created.body["branch"]["id"]);
    assert_eq!(created.body["branch"]["name"], "main");
    assert_eq!(created.body["roles"][0]["name"], "neondb_owner");
    assert!(created.body["roles"][0]["password"].is_string());
    assert_eq!(created.body["databases"][0]["name"], "neondb");
    assert_eq!(created.body["endpoints"][0]["type"], "read_write");
    assert!(!created.body["operations"].as_array().unwrap().is_empty());
    let uri = s(&created.body["connection_uris"][0]["connection_uri"]);
    assert!(uri.contains("sslmode=require"), "{uri}");

    expect(&c.call("GET", "/projects", &[], "", None).await, 200);
    let listed = c
        .call(
            "GET",
            "/projects",
            &[],
            "search=application&limit=5&org_id=org-test-123",
            None,
        )
        .await;
    assert_eq!(listed.body["projects"][0]["id"], json!(pid));
    expect(&c.call("GET", P, &[&pid], "", None).await, 200);
    let renamed = c
        .call(
            "PATCH",
            P,
            &[&pid],
            "",
            Some(json!({"project": {"name": "renamed"}})),
        )
        .await;
    expect(&renamed, 200);
    assert_eq!(renamed.body["project"]["name"], "renamed");

    // Branches.
    let branch = c
        .call(
            "POST",
            "/projects/{project_id}/branches",
            &[&pid],
            "",
            Some(
                json!({ "branch": { "name": "feature-x-development", "parent_id": main },
                         "endpoints": [{ "type": "read_write" }] }),
            ),
        )
        .await;
    expect(&branch, 201);
    let bid = s(&branch.body["branch"]["id"]);
    assert_eq!(branch.body["branch"]["parent_id"], json!(main));
    assert_eq!(branch.body["roles"][0]["name"], "neondb_owner");
    assert!(branch.body["connection_uris"].is_array());
    expect(
        &c.call("GET", "/projects/{project_id}/branches", &[&pid], "", None)
            .await,
        200,
    );
    expect(&c.call("GET", B, &[&pid, &bid], "", None).await, 200);
    let patched = c
        .call(
            "PATCH",
            B,
            &[&pid, &bid],
            "",
            Some(json!({"branch": {"name": "feature-y"}})),
        )
        .await;
    assert_eq!(patched.body["branch"]["name"], "feature-y");

    // Endpoints.
    let bare = c
        .call(
            "POST",
            "/projects/{project_id}/branches",
            &[&pid],
            "",
            Some(json!({})),
        )
        .await;
    expect(&bare, 201);
    let bare_id = s(&bare.body["branch"]["id"]);
    let ep = c
        .call(
            "POST",
            "/projects/{project_id}/endpoints",
            &[&pid],
            "",
            Some(json!({"endpoint": {"branch_id": bare_id, "type": "read_write"}})),
        )
        .await;
    expect(&ep, 201);
    let eid = s(&ep.body["endpoint"]["id"]);
    expect(
        &c.call("GET", "/projects/{project_id}/endpoints", &[&pid], "", None)
            .await,
        200,
    );
    let e = "/projects/{project_id}/endpoints/{endpoint_id}";
    expect(&c.call("GET", e, &[&pid, &eid], "", None).await, 200);
    let scaled = c
        .call(
            "PATCH",
            e,
            &[&pid, &eid],
            "",
            Some(json!({"endpoint": {"autoscaling_limit_max_cu": 4}})),
        )
        .await;
    assert_eq!(
        scaled.body["endpoint"]["autoscaling_limit_max_cu"],
        json!(4.0)
    );

    // Roles.
    let roles = format!("{B}/roles");
    let role = c
        .call(
            "POST",
            &roles,
            &[&pid, &bid],
            "",
            Some(json!({"role": {"name": "application_user"}})),
        )
        .await;
    expect(&role, 201);
    let first_password = s(&role.body["role"]["password"]);
    expect(&c.call("GET", &roles, &[&pid, &bid], "", None).await, 200);
    let one_role = format!("{roles}/{{role_name}}");
    let got = c
        .call(
            "GET",
            &one_role,
            &[&pid, &bid, "application_user"],
            "",
            None,
        )
        .await;
    assert!(
        got.body["role"].get("password").is_none(),
        "get must not reveal the password"
    );
    let revealed = c
        .call(
            "GET",
            &format!("{one_role}/reveal_password"),
            &[&pid, &bid, "application_user"],
            "",
            None,
        )
        .await;
    assert_eq!(revealed.body["password"], json!(first_password));
    let reset = c
        .call(
            "POST",
            &format!("{one_role}/reset_password"),
            &[&pid, &bid, "application_user"],
            "",
            None,
        )
        .await;
    expect(&reset, 200);
    assert_ne!(reset.body["role"]["password"], json!(first_password));

    // Databases.
    let dbs = format!("{B}/databases");
    let db = c
        .call(
            "POST",
            &dbs,
            &[&pid, &bid],
            "",
            Some(
                json!({"database": {"name": "service_database", "owner_name": "application_user"}}),
            ),
        )
        .await;
    expect(&db, 201);
    expect(&c.call("GET", &dbs, &[&pid, &bid], "", None).await, 200);
    let one_db = format!("{dbs}/{{database_name}}");
    expect(
        &c.call("GET", &one_db, &[&pid, &bid, "service_database"], "", None)
            .await,
        200,
    );
    let moved = c
        .call(
            "PATCH",
            &one_db,
            &[&pid, &bid, "service_database"],
            "",
            Some(json!({"database": {"owner_name": "neondb_owner"}})),
        )
        .await;
    assert_eq!(moved.body["database"]["owner_name"], "neondb_owner");

    // Connection URIs and operations.
    let conn = c
        .call(
            "GET",
            "/projects/{project_id}/connection_uri",
            &[&pid],
            &format!("branch_id={bid}&database_name=service_database&role_name=application_user&pooled=true"),
            None,
        )
        .await;
    expect(&conn, 200);
    let ops = c
        .call(
            "GET",
            "/projects/{project_id}/operations",
            &[&pid],
            "limit=3",
            None,
        )
        .await;
    expect(&ops, 200);
    assert_eq!(ops.body["operations"].as_array().unwrap().len(), 3);
    let op_id = s(&ops.body["operations"][0]["id"]);
    let op = c
        .call(
            "GET",
            "/projects/{project_id}/operations/{operation_id}",
            &[&pid, &op_id],
            "",
            None,
        )
        .await;
    assert_eq!(op.body["operation"]["status"], "finished");

    // Deletes, innermost first.
    expect(
        &c.call(
            "DELETE",
            &one_db,
            &[&pid, &bid, "service_database"],
            "",
            None,
        )
        .await,
        200,
    );
    expect(
        &c.call(
            "DELETE",
            &one_role,
            &[&pid, &bid, "application_user"],
            "",
            None,
        )
        .await,
        200,
    );
    expect(&c.call("DELETE", e, &[&pid, &eid], "", None).await, 200);
    expect(&c.call("DELETE", B, &[&pid, &bare_id], "", None).await, 200);
    expect(&c.call("DELETE", B, &[&pid, &bid], "", None).await, 200);
    expect(&c.call("DELETE", P, &[&pid], "", None).await, 200);
    expect(&c.call("GET", P, &[&pid], "", None).await, 404);
}

#[tokio::test]
async fn bad_requests_are_rejected_as_neon_rejects_them() {
    let neon = NeonStack::start(|_| {}).await;
    let c = &neon.client;

    // No key, or the wrong one.
    expect(
        &c.with_key("").call("GET", "/projects", &[], "", None).await,
        401,
    );
    expect(
        &c.with_key("wrong")
            .call("GET", "/projects", &[], "", None)
            .await,
        401,
    );

    // Bodies checked against the spec, naming the field.
    let bad = c
        .call(
            "POST",
            "/projects",
            &[],
            "",
            Some(json!({"project": {"pg_version": 13}})),
        )
        .await;
    expect(&bad, 400);
    assert!(
        s(&bad.body["message"]).contains("project.pg_version"),
        "{}",
        bad.body
    );
    let bad = c
        .call(
            "POST",
            "/projects",
            &[],
            "",
            Some(json!({"project": {"name": 5}})),
        )
        .await;
    expect(&bad, 400);
    assert!(
        s(&bad.body["message"]).contains("project.name"),
        "{}",
        bad.body
    );
    expect(&c.call("POST", "/projects", &[], "", None).await, 400);

    // The plan's history limit (Free: 21600 s), which is why the guide sets 21600.
    let too_long = c
        .call(
            "POST",
            "/projects",
            &[],
            "",
            Some(json!({"project": {"history_retention_seconds": 86400}})),
        )
        .await;
    expect(&too_long, 400);
    assert!(s(&too_long.body["message"]).contains("history_retention_seconds"));

    let created = c
        .call("POST", "/projects", &[], "", Some(json!({"project": {}})))
        .await;
    expect(&created, 201);
    let pid = s(&created.body["project"]["id"]);
    let main = s(&created.body["branch"]["id"]);
    let roles = format!("{B}/roles");
    let dbs = format!("{B}/databases");

    // Duplicates: 409.
    let dup = c
        .call(
            "POST",
            &roles,
            &[&pid, &main],
            "",
            Some(json!({"role": {"name": "neondb_owner"}})),
        )
        .await;
    expect(&dup, 409);
    let dup = c
        .call(
            "POST",
            &dbs,
            &[&pid, &main],
            "",
            Some(json!({"database": {"name": "neondb", "owner_name": "neondb_owner"}})),
        )
        .await;
    expect(&dup, 409);
    expect(
        &c.call(
            "POST",
            "/projects/{project_id}/branches",
            &[&pid],
            "",
            Some(json!({"branch": {"name": "main"}})),
        )
        .await,
        409,
    );

    // A database's owner must exist; role names are at most 63 bytes.
    let orphan = c
        .call(
            "POST",
            &dbs,
            &[&pid, &main],
            "",
            Some(json!({"database": {"name": "x", "owner_name": "nobody"}})),
        )
        .await;
    expect(&orphan, 400);
    assert!(s(&orphan.body["message"]).contains("nobody"));
    let long = "r".repeat(64);
    let too_long = c
        .call(
            "POST",
            &roles,
            &[&pid, &main],
            "",
            Some(json!({"role": {"name": long}})),
        )
        .await;
    expect(&too_long, 400);
    assert!(s(&too_long.body["message"]).contains("63"));
    expect(
        &c.call(
            "POST",
            &roles,
            &[&pid, &main],
            "",
            Some(json!({"role": {}})),
        )
        .await,
        400,
    );

    // Unknown IDs: 404.
    expect(&c.call("GET", P, &["no-such-project"], "", None).await, 404);
    expect(
        &c.call("GET", B, &[&pid, "br-no-such-branch"], "", None)
            .await,
        404,
    );
    expect(
        &c.call(
            "GET",
            &format!("{roles}/{{role_name}}"),
            &[&pid, &main, "ghost"],
            "",
            None,
        )
        .await,
        404,
    );
    expect(
        &c.call(
            "GET",
            "/projects/{project_id}/operations/{operation_id}",
            &[&pid, "00000000-0000-4000-8000-000000000000"],
            "",
            None,
        )
        .await,
        404,
    );

    // The default branch cannot be deleted.
    expect(&c.call("DELETE", B, &[&pid, &main], "", None).await, 400);
    // No request above made a change it should not have: one project, one role.
    let listed = c.call("GET", &roles, &[&pid, &main], "", None).await;
    assert_eq!(listed.body["roles"].as_array().unwrap().len(), 1);
}
