//! The emulator behaves as Neon does where clients notice: real roles and databases,
//! isolated projects, branches that copy their parent, deletes that drop, 423 while an
//! operation runs, faults at the configured rate, and a binary that prints its URL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::neon::{API_KEY, NeonStack};
use harness::paths::workspace_bin;
use harness::pg::connect_uri;
use harness::process::{Spawned, clean_command};
use neon_emulator::LoggedRequest;
use neon_emulator::faults::{RandomFaults, ScriptedFault};
use serde_json::{Value, json};

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

async fn new_project(neon: &NeonStack, body: Value) -> Value {
    let answer = neon
        .client
        .call("POST", "/projects", &[], "", Some(body))
        .await;
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    answer.body
}

#[tokio::test]
async fn returned_uris_connect_as_the_owner_who_can_create_tables() {
    let neon = NeonStack::start(|_| {}).await;
    let project = new_project(&neon, json!({"project": {"name": "p"}})).await;
    let uri = s(&project["connection_uris"][0]["connection_uri"]);
    let db = connect_uri(&uri)
        .await
        .expect("the URI connects (TLS, SCRAM, channel binding)");
    db.batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hello')")
        .await
        .unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // The URI from connection_uri connects too.
    let pid = s(&project["project"]["id"]);
    let again = neon
        .client
        .call(
            "GET",
            "/projects/{project_id}/connection_uri",
            &[&pid],
            "database_name=neondb&role_name=neondb_owner",
            None,
        )
        .await;
    let db = connect_uri(&s(&again.body["uri"])).await.unwrap();
    let body: String = db
        .query_one("SELECT body FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, "hello");
}

/// Every endpoint is behind Neon's proxy: it takes TLS first (`sslnegotiation=direct`) as
/// well as after `SSLRequest`, its certificate verifies (`verify-full`, the test CA as a
/// system root), channel binding holds through it, and a plain start-up is refused.
#[tokio::test]
async fn endpoints_take_tls_first_verify_and_refuse_plain_connections() {
    let neon = NeonStack::start(|_| {}).await;
    let project = new_project(&neon, json!({"project": {"name": "p"}})).await;
    let uri = s(&project["connection_uris"][0]["connection_uri"]);
    let secured = deployer::neon::secure_uri(&uri);
    assert!(secured.contains("sslnegotiation=direct"), "{secured}");
    let db = connect_uri(&secured)
        .await
        .expect("TLS first, verified, with channel binding");
    let n: i32 = db.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    let plain = uri.replace("sslmode=require&channel_binding=require", "sslmode=disable");
    assert!(
        connect_uri(&plain).await.is_err(),
        "a plain start-up connected"
    );
}

#[tokio::test]
async fn projects_with_the_same_role_names_share_neither_passwords_nor_data() {
    let neon = NeonStack::start(|_| {}).await;
    let a = new_project(&neon, json!({"project": {"name": "a"}})).await;
    let b = new_project(&neon, json!({"project": {"name": "b"}})).await;
    assert_eq!(a["roles"][0]["name"], "neondb_owner");
    assert_eq!(b["roles"][0]["name"], "neondb_owner");
    assert_ne!(a["roles"][0]["password"], b["roles"][0]["password"]);

    let a_uri = s(&a["connection_uris"][0]["connection_uri"]);
    let b_uri = s(&b["connection_uris"][0]["connection_uri"]);
    let a_db = connect_uri(&a_uri).await.unwrap();
    // Names are exactly the requested ones, as Neon's are: no suffix to tell projects apart.
    let row = a_db
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("neondb_owner".to_owned(), "neondb".to_owned())
    );
    a_db.batch_execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('a-only')")
        .await
        .unwrap();
    let b_db = connect_uri(&b_uri).await.unwrap();
    assert!(
        b_db.query("SELECT * FROM secrets", &[]).await.is_err(),
        "b sees a's table"
    );

    // a's role (same name, its own password) cannot log in to b's server.
    let a_password = s(&a["roles"][0]["password"]);
    let b_password = s(&b["roles"][0]["password"]);
    let crossed = b_uri.replace(&b_password, &a_password);
    let err = connect_uri(&crossed)
        .await
        .expect_err("a's password must not open b's database");
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test]
async fn a_branch_starts_with_its_parents_roles_databases_and_data() {
    let neon = NeonStack::start(|_| {}).await;
    let project = new_project(&neon, json!({"project": {"name": "p"}})).await;
    let pid = s(&project["project"]["id"]);
    let parent_db = connect_uri(&s(&project["connection_uris"][0]["connection_uri"]))
        .await
        .unwrap();
    parent_db
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
        .await
        .unwrap();
    drop(parent_db);

    let branch = neon
        .client
        .call(
            "POST",
            "/projects/{project_id}/branches",
            &[&pid],
            "",
            Some(json!({"branch": {"name": "dev"}, "endpoints": [{"type": "read_write"}]})),
        )
        .await;
    assert_eq!(branch.status, 201, "{:#}", branch.body);
    assert_eq!(branch.body["databases"][0]["name"], "neondb");
    let child_uri = s(&branch.body["connection_uris"][0]["connection_uri"]);
    let child = connect_uri(&child_uri).await.unwrap();
    let v: i32 = child
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42, "the branch sees its parent's data");
    // The branch's owner owns the copy: it can change it without touching the parent.
    child
        .batch_execute("INSERT INTO t VALUES (7)")
        .await
        .unwrap();
    let parent_db = connect_uri(&s(&project["connection_uris"][0]["connection_uri"]))
        .await
        .unwrap();
    let n: i64 = parent_db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Same password as the parent's role, as on Neon.
    assert!(child_uri.contains(&s(&project["roles"][0]["password"])));
}

#[tokio::test]
async fn deletes_really_drop_roles_and_databases() {
    let neon = NeonStack::start(|_| {}).await;
    let project = new_project(&neon, json!({"project": {"name": "p"}})).await;
    let pid = s(&project["project"]["id"]);
    let main = s(&project["branch"]["id"]);
    let superuser = neon
        .emulator
        .superuser_uri(&pid, &main)
        .await
        .expect("the branch has a server");
    let admin = connect_uri(&superuser).await.unwrap();
    let count = |sql: &'static str| {
        let admin = &admin;
        async move { admin.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let roles_before = count("SELECT count(*) FROM pg_roles").await;
    let dbs_before = count("SELECT count(*) FROM pg_database").await;
    let b = "/projects/{project_id}/branches/{branch_id}";
    let c = &neon.client;
    c.call(
        "POST",
        &format!("{b}/roles"),
        &[&pid, &main],
        "",
        Some(json!({"role": {"name": "extra"}})),
    )
    .await;
    c.call(
        "POST",
        &format!("{b}/databases"),
        &[&pid, &main],
        "",
        Some(json!({"database": {"name": "extra_db", "owner_name": "extra"}})),
    )
    .await;
    assert_eq!(
        count("SELECT count(*) FROM pg_roles").await,
        roles_before + 1
    );
    assert_eq!(
        count("SELECT count(*) FROM pg_database").await,
        dbs_before + 1
    );

    let deleted = c
        .call(
            "DELETE",
            &format!("{b}/databases/{{database_name}}"),
            &[&pid, &main, "extra_db"],
            "",
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(count("SELECT count(*) FROM pg_database").await, dbs_before);
    c.call(
        "DELETE",
        &format!("{b}/roles/{{role_name}}"),
        &[&pid, &main, "extra"],
        "",
        None,
    )
    .await;
    assert_eq!(count("SELECT count(*) FROM pg_roles").await, roles_before);

    // Deleting the project stops its branches' servers: nothing answers there any more.
    drop(admin);
    c.call("DELETE", "/projects/{project_id}", &[&pid], "", None)
        .await;
    assert!(neon.emulator.superuser_uri(&pid, &main).await.is_none());
    let gone = connect_uri(&superuser)
        .await
        .expect_err("the deleted project's server is stopped");
    assert!(gone.contains("onnect"), "{gone}");
}

#[tokio::test]
async fn a_running_operation_locks_the_project_with_423_until_it_finishes() {
    let neon = NeonStack::start(|c| c.operation_delay = Duration::from_millis(2000)).await;
    let project = new_project(&neon, json!({"project": {"name": "p"}})).await;
    assert_eq!(project["operations"][0]["status"], "running");
    let pid = s(&project["project"]["id"]);
    let roles = "/projects/{project_id}/branches/{branch_id}/roles";
    let main = s(&project["branch"]["id"]);
    let started = Instant::now();
    let locked = neon
        .client
        .call(
            "POST",
            roles,
            &[&pid, &main],
            "",
            Some(json!({"role": {"name": "r1"}})),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "test too slow to see the lock"
    );
    assert_eq!(locked.status, 423);
    assert_eq!(
        locked.body["message"],
        "project already has running conflicting operations, scheduling of new ones is prohibited"
    );
    // Reads are not locked.
    assert_eq!(
        neon.client
            .call("GET", "/projects/{project_id}", &[&pid], "", None)
            .await
            .status,
        200
    );

    // Poll the operations as a client should, then the change goes through.
    let op_id = s(&project["operations"][1]["id"]);
    loop {
        let op = neon
            .client
            .call(
                "GET",
                "/projects/{project_id}/operations/{operation_id}",
                &[&pid, &op_id],
                "",
                None,
            )
            .await;
        if op.body["operation"]["status"] == "finished" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "operation never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = neon
        .client
        .call(
            "POST",
            roles,
            &[&pid, &main],
            "",
            Some(json!({"role": {"name": "r1"}})),
        )
        .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
}

#[tokio::test]
async fn random_faults_come_at_the_configured_rate_and_scripted_ones_as_scripted() {
    let neon = NeonStack::start(|c| {
        c.random_faults = RandomFaults {
            rate: 0.2,
            seed: 11,
            statuses: vec![429, 500, 503],
            applied_share: 0.0,
        };
    })
    .await;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let calls = 400;
    for _ in 0..calls {
        let a = neon.client.call("GET", "/projects", &[], "", None).await;
        if a.status == 429 {
            assert_eq!(
                a.retry_after.as_deref(),
                Some("1"),
                "429 without Retry-After"
            );
        }
        *by_status.entry(a.status).or_default() += 1;
    }
    let faults = calls - by_status.get(&200).copied().unwrap_or(0);
    let rate = faults as f64 / calls as f64;
    assert!(
        (0.14..=0.26).contains(&rate),
        "fault rate {rate}: {by_status:?}"
    );
    for status in [429, 500, 503] {
        assert!(
            by_status.get(&status).copied().unwrap_or(0) > 0,
            "{by_status:?}"
        );
    }
    let logged = neon.emulator.requests();
    assert_eq!(logged.iter().filter(|r| r.fault).count(), faults);

    neon.emulator.set_random_faults(RandomFaults::default());
    neon.emulator.script_fault(ScriptedFault {
        method: "POST".into(),
        path: "/projects".into(),
        status: 503,
        count: 2,
        after_apply: false,
    });
    let body = json!({"project": {"name": "scripted"}});
    for _ in 0..2 {
        let a = neon
            .client
            .call("POST", "/projects", &[], "", Some(body.clone()))
            .await;
        assert_eq!(a.status, 503);
    }
    let a = neon
        .client
        .call("POST", "/projects", &[], "", Some(body))
        .await;
    assert_eq!(a.status, 201);
    // The failed attempts created nothing.
    let listed = neon
        .client
        .call("GET", "/projects", &[], "search=scripted", None)
        .await;
    assert_eq!(listed.body["projects"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn faults_after_apply_make_the_change_and_still_fail() {
    let neon = NeonStack::start(|c| {
        c.random_faults = RandomFaults {
            rate: 1.0,
            seed: 3,
            statuses: vec![500],
            applied_share: 1.0,
        }
    })
    .await;
    let lost = neon
        .client
        .call(
            "POST",
            "/projects",
            &[],
            "",
            Some(json!({"project": {"name": "lost-answer"}})),
        )
        .await;
    assert_eq!(lost.status, 500);
    neon.emulator.set_random_faults(RandomFaults::default());
    let listed = neon
        .client
        .call("GET", "/projects", &[], "search=lost-answer", None)
        .await;
    assert_eq!(
        listed.body["projects"].as_array().unwrap().len(),
        1,
        "the change was applied"
    );
}

#[tokio::test]
async fn the_binary_prints_its_url_first_and_logs_requests_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let env: BTreeMap<String, String> = [("RUST_LOG".to_owned(), "warn".to_owned())].into();
    let mut cmd = clean_command(&workspace_bin("neon-emulator"), &env);
    cmd.args(["--listen", "127.0.0.1:0", "--api-key", API_KEY])
        .args([
            "--operation-delay-ms",
            "0",
            "--max-history-retention-seconds",
            "21600",
        ])
        .args(["--fail", "GET /projects 503 x1"])
        .arg("--request-log")
        .arg(&log)
        .arg("--data-dir")
        .arg(dir.path());
    let mut emulator = Spawned::start(cmd);
    let base = emulator.wait_for(Duration::from_secs(20), |out| {
        out.lines()
            .next()
            .filter(|l| l.ends_with("/api/v2"))
            .map(str::to_owned)
    });
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let http = reqwest::Client::new();
    let get = |auth: bool| {
        let mut r = http.get(format!("{base}/projects"));
        if auth {
            r = r.bearer_auth(API_KEY);
        }
        r.send()
    };
    assert_eq!(get(true).await.unwrap().status(), 503, "the scripted fault");
    assert_eq!(get(true).await.unwrap().status(), 200);
    assert_eq!(get(false).await.unwrap().status(), 401);
    let created = http
        .post(format!("{base}/projects"))
        .bearer_auth(API_KEY)
        .json(&json!({"project": {"name": "from-binary"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let db = connect_uri(&s(&created["connection_uris"][0]["connection_uri"]))
        .await
        .expect("the new project's database connects");
    db.batch_execute("SELECT 1").await.unwrap();
    drop(db);

    let lines: Vec<LoggedRequest> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, u16, bool, bool)> = lines
        .iter()
        .map(|r| (r.method.clone(), r.status, r.mutating, r.fault))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("GET".into(), 503, false, true),
            ("GET".into(), 200, false, false),
            ("GET".into(), 401, false, false),
            ("POST".into(), 201, true, false),
        ]
    );
    assert!(lines.iter().all(|r| r.path == "/projects"));
    // Passwords appear only in answers, never in the emulator's own output.
    assert!(!emulator.output().contains("npg_"), "{}", emulator.output());
    // Stopped, it stops the branches' servers and deletes their files.
    emulator.signal("TERM");
    assert!(
        emulator.wait_exit(Duration::from_secs(20)).is_some(),
        "the emulator exits on TERM"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("neon-emulator-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
