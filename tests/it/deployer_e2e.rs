//! The deployer end to end against moto and the Neon emulator: the guide's two examples,
//! redeploys that change nothing, single-setting changes, `dev` with a Neon key, and
//! secrets kept out of what it prints. What happens to a stage's resources over time
//! (remove, protection, import, dropped resources) is in `deployer_lifecycle`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use deployer::neon::models::{BranchesResponse, ConnectionUriResponse};
use harness::deploy::{DeployStack, temp_config};
use harness::fixtures::{self, GUIDE_FULL, GUIDE_HONO};
use harness::paths::fixture;
use harness::pg::connect_uri;
use harness::process::ApiServer;
use serde_json::{Value, json};

const FUNCTION: &str = "aws-hono-e2e-MyApi";

async fn function_env(stack: &DeployStack, name: &str) -> BTreeMap<String, String> {
    let conf = stack
        .lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .unwrap();
    conf.environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The zip the deployer last uploaded for the function.
fn deployed_zip(stack: &DeployStack) -> Vec<u8> {
    stack
        .aws
        .model()
        .code(FUNCTION)
        .expect("no code was uploaded")
}

/// Unzips the code the function holds (moto keeps it) and runs it as a local server with
/// exactly `env`, and `SSL_CERT_FILE` naming the emulator's CA: the link verifies the
/// server against the system roots (`sslrootcert=system`), which on Lambda hold Neon's.
async fn run_deployed_api(
    stack: &DeployStack,
    env: &BTreeMap<String, String>,
) -> (tempfile::TempDir, ApiServer) {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("code.zip");
    std::fs::write(&zip, deployed_zip(stack)).unwrap();
    let status = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let bootstrap = dir.path().join("bootstrap");
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = harness::neon::emulator_ca().file.display().to_string();
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(("SSL_CERT_FILE", &ca));
    let server = ApiServer::start_binary(&bootstrap, &vars);
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_api_deploys_with_its_link_and_redeploys_without_changes() {
    let stack = DeployStack::start(|_| {}).await;
    let config = fixture(GUIDE_HONO);

    let first = stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();
    for line in [
        "Created   MyAppProject neon:Project",
        "Created   NeonDB Linkable",
        "Created   MyApi aws:Function",
        "MyApi.url = https://",
    ] {
        assert!(
            first.stdout.contains(line),
            "missing `{line}`:\n{}",
            first.stdout
        );
    }
    // The guide links the direct URI: one note says what a scaling function should link.
    let notes: Vec<&str> = first
        .stderr
        .lines()
        .filter(|l| l.starts_with("note: "))
        .collect();
    assert_eq!(notes.len(), 1, "{}", first.stderr);
    assert!(
        notes[0].contains("${MyAppProject.connection_uri_pooler}"),
        "{}",
        notes[0]
    );

    // The function, its environment, its URL and both permissions, as AWS reports them.
    let conf = stack
        .lambda
        .get_function_configuration()
        .function_name(FUNCTION)
        .send()
        .await
        .unwrap();
    assert_eq!(conf.handler(), Some("bootstrap"));
    assert_eq!(conf.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    let env = function_env(&stack, FUNCTION).await;
    let link: Value = serde_json::from_str(&env["LINK_NeonDB"]).unwrap();
    let project = &stack.projects_named("my-sst-project").await[0];
    let uri: ConnectionUriResponse = stack
        .neon
        .client
        .call(
            "GET",
            "/projects/{project_id}/connection_uri",
            &[&project.id.0],
            "database_name=neondb&role_name=neondb_owner",
            None,
        )
        .await
        .typed();
    assert_eq!(
        link["connection_string"],
        deployer::neon::secure_uri(&uri.uri),
        "LINK_NeonDB holds Neon's URI, verifying the server and taking TLS first"
    );
    let written = link["connection_string"].as_str().unwrap();
    for param in [
        "sslmode=verify-full",
        "sslrootcert=system",
        "sslnegotiation=direct",
    ] {
        assert!(written.contains(param), "{param}");
    }
    // The URL is the alias `live`'s, and so are its two permissions.
    let url = stack
        .lambda
        .get_function_url_config()
        .function_name(FUNCTION)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    assert_eq!(url.auth_type().as_str(), "NONE");
    let policy: Value = serde_json::from_str(
        stack
            .lambda
            .get_policy()
            .function_name(FUNCTION)
            .qualifier("live")
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert!(
        statements
            .iter()
            .any(|s| s["Action"] == "lambda:InvokeFunctionUrl"
                && s["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"] == "NONE"
                && s["Principal"] == "*"),
        "{policy}"
    );
    assert!(
        statements
            .iter()
            .any(|s| s["Action"] == "lambda:InvokeFunction"
                && s["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] == "true"),
        "{policy}"
    );

    // moto cannot invoke: run the deployed code here with exactly the function's environment.
    let (_dir, api) = run_deployed_api(&stack, &env).await;
    let body = reqwest::get(api.url("/version")).await.unwrap();
    assert_eq!(body.status(), 200, "{}", api.logs());
    assert!(body.text().await.unwrap().contains("PostgreSQL"));

    // Secrets never printed; the state file is private.
    let password = link["connection_string"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    assert!(password.len() >= 8);
    assert!(
        !first.all().contains(&password),
        "deploy printed the password"
    );
    let mode = std::fs::metadata(stack.state_file("e2e"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Nothing changed: nothing mutated, on either side.
    stack.neon.emulator.clear_requests();
    stack.aws.clear();
    stack.assert_no_changes(&config, "e2e").await;
    let neon_changes: Vec<_> = stack
        .neon
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.mutating)
        .collect();
    assert!(neon_changes.is_empty(), "{neon_changes:?}");
    let aws_changes: Vec<_> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .collect();
    assert!(aws_changes.is_empty(), "{aws_changes:?}");

    // A state file as the deployer before state version 2 wrote it deploys the same way.
    let file = stack.state_file("e2e");
    let v1 = fixtures::read_file(&file).with("\"version\": 2,", "\"version\": 1,");
    std::fs::write(&file, v1.as_str()).unwrap();
    stack.aws.clear();
    stack.assert_no_changes(&config, "e2e").await;
    assert!(
        stack.aws.calls().iter().all(|c| !c.mutating()),
        "{:?}",
        stack.aws.calls()
    );

    // diff and outputs read, print no secret, and outputs reveals on request.
    let diff = stack.run(&config, &["diff", "--stage", "e2e"]).await.ok();
    assert!(diff.stdout.contains("No changes."), "{}", diff.stdout);
    let outputs = stack
        .run(&config, &["outputs", "--stage", "e2e", "--json"])
        .await
        .ok();
    let parsed: Value = serde_json::from_str(&outputs.stdout).unwrap();
    assert!(
        parsed["MyApi"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    for run in [&diff, &outputs] {
        assert!(
            !run.all().contains(&password),
            "printed the password:\n{}",
            run.all()
        );
    }
    let revealed = stack
        .run(&config, &["outputs", "--stage", "e2e", "--reveal"])
        .await
        .ok();
    assert!(revealed.stdout.contains(&password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_setting_updates_only_its_resource() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    stack.run(&config, &["deploy", "--stage", "e2e"]).await.ok();

    let (_dir2, bigger) =
        temp_config(fixtures::read(GUIDE_HONO).with("url = true", "url = true\nmemory = 256"));
    stack.neon.emulator.clear_requests();
    stack.aws.clear();
    let run = stack.run(&bigger, &["deploy", "--stage", "e2e"]).await.ok();
    let changed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("Updated") || l.starts_with("Created"))
        .collect();
    assert_eq!(changed.len(), 1, "{}", run.stdout);
    assert!(
        changed[0].starts_with("Updated   MyApi aws:Function"),
        "{}",
        run.stdout
    );
    assert!(stack.neon.emulator.requests().iter().all(|r| !r.mutating));
    let aws_changes: Vec<String> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    // The change, then its release: checked ($LATEST invoked), published, made live.
    assert_eq!(
        aws_changes,
        [
            "PUT /2015-03-31/functions/{f}/configuration",
            "POST /2015-03-31/functions/{f}/invocations",
            "POST /2015-03-31/functions/{f}/versions",
            "PUT /2015-03-31/functions/{f}/aliases/live",
        ]
        .map(|c| c.replace("{f}", FUNCTION))
    );
    let conf = stack
        .lambda
        .get_function_configuration()
        .function_name(FUNCTION)
        .send()
        .await
        .unwrap();
    assert_eq!(conf.memory_size(), Some(256));

    // A Neon setting: only the project is patched.
    let (_dir3, shorter) = temp_config(
        fixtures::read(GUIDE_HONO)
            .with("url = true", "url = true\nmemory = 256")
            .with("21600", "3600"),
    );
    stack.neon.emulator.clear_requests();
    let run = stack
        .run(&shorter, &["deploy", "--stage", "e2e"])
        .await
        .ok();
    assert!(
        run.stdout.contains("Updated   MyAppProject neon:Project"),
        "{}",
        run.stdout
    );
    let neon_changes: Vec<String> = stack
        .neon
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.mutating)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(neon_changes.len(), 1, "{neon_changes:?}");
    assert!(neon_changes[0].starts_with("PATCH /projects/"));
    // Only the changed field is sent: the name Neon has is left alone.
    let patch = stack
        .neon
        .emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .and_then(|r| r.body);
    assert_eq!(
        patch,
        Some(json!({ "project": { "history_retention_seconds": 3600 } }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_full_neon_stack_deploys_and_its_database_connects() {
    let stack = DeployStack::start(|_| {}).await;
    let run = stack
        .run(&fixture(GUIDE_FULL), &["deploy", "--stage", "full"])
        .await
        .ok();
    for name in [
        "MyAppProject neon:Project",
        "DevBranch neon:Branch",
        "DevEndpoint neon:Endpoint",
        "AppUser neon:Role",
        "ServiceDb neon:Database",
    ] {
        assert!(
            run.stdout.contains(&format!("Created   {name}")),
            "{}",
            run.stdout
        );
    }
    let outputs = stack
        .run(
            &fixture(GUIDE_FULL),
            &["outputs", "--stage", "full", "--json", "--reveal"],
        )
        .await
        .ok();
    let outputs: Value = serde_json::from_str(&outputs.stdout).unwrap();
    let db = connect_uri(outputs["ServiceDb"]["connection_uri"].as_str().unwrap())
        .await
        .expect("the database connects");
    let (user, db_name): (String, String) = {
        let row = db
            .query_one("SELECT current_user::text, current_database()::text", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    // Exactly the declared names, as on Neon (where the function's SQL may name them).
    assert_eq!(user, "application_user");
    assert_eq!(db_name, "service_database");
    db.batch_execute("CREATE TABLE t (v int)")
        .await
        .expect("the owner can create tables");
    // The pooled URI (Neon's pooler; the emulator's is the direct one) is an output too.
    let pooled = connect_uri(
        outputs["ServiceDb"]["connection_uri_pooler"]
            .as_str()
            .expect("a database has connection_uri_pooler"),
    )
    .await
    .expect("the pooled URI connects");
    pooled.batch_execute("SELECT 1 FROM t").await.unwrap();
    // The branch is named as declared, off the project's default branch.
    let pid = outputs["MyAppProject"]["id"].as_str().unwrap();
    let branches: BranchesResponse = stack
        .neon
        .client
        .call("GET", "/projects/{project_id}/branches", &[pid], "", None)
        .await
        .typed();
    let names: Vec<&str> = branches.branches.iter().map(|b| b.name.as_str()).collect();
    assert!(names.contains(&"feature-x-development"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_provisions_the_stages_neon_resources_and_runs_a_command_with_the_links() {
    let stack = DeployStack::start(|_| {}).await;
    let (dir, config) = temp_config(fixtures::read(GUIDE_HONO));
    let out_file = dir.path().join("link.json");
    let script = format!("printf %s \"$LINK_NeonDB\" > {}", out_file.display());
    let run = stack
        .run(
            &config,
            &["dev", "--stage", "devx", "--", "sh", "-c", &script],
        )
        .await
        .ok();
    let link: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    let uri = link["connection_string"].as_str().unwrap();
    let db = connect_uri(uri)
        .await
        .expect("the linked database connects");
    db.batch_execute("SELECT 1").await.unwrap();
    let password = uri.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(
        !run.all().contains(password),
        "dev printed the password:\n{}",
        run.all()
    );
    assert!(
        run.stdout.contains("Created   MyAppProject neon:Project"),
        "{}",
        run.stdout
    );
    // dev leaves the function alone.
    assert!(
        stack
            .lambda
            .get_function()
            .function_name("aws-hono-devx-MyApi")
            .send()
            .await
            .is_err()
    );
    let mode = std::fs::metadata(dir.path().join(".deployer/dev/env/LINK_NeonDB"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_over_lambdas_4_kb_is_refused_before_aws_is_touched() {
    let stack = DeployStack::start(|_| {}).await;
    let text = format!(
        "[app]\nname = \"big\"\nregion = \"us-east-1\"\n[link.Big]\nblob = \"{}\"\n[function.MyApi]\npackage = \"api\"\nlink = [\"Big\"]\n",
        "x".repeat(5000)
    );
    let (_dir, config) = temp_config(&text);
    let run = stack.run(&config, &["deploy", "--stage", "big"]).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains("function `MyApi`: its environment would be"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Lambda allows 4096"), "{}", run.stderr);
    // Known before the deploy (a literal link): refused before any call at all.
    assert!(stack.aws.calls().is_empty(), "{:?}", stack.aws.calls());
}

/// A database on a branch without a read-write endpoint has no connection URI yet. Once an
/// endpoint is declared, the next deploy computes it (the database waits for the endpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_databases_uri_is_computed_once_its_branch_has_an_endpoint() {
    let stack = DeployStack::start(|_| {}).await;
    let full = fixtures::read(GUIDE_FULL);
    let without_endpoint = full.clone().with(
        "[neon.endpoint.DevEndpoint]\nbranch = \"DevBranch\"\ntype = \"read_write\"\n",
        "",
    );
    let (_dir, config) = temp_config(&without_endpoint);
    stack.run(&config, &["deploy", "--stage", "uri"]).await.ok();
    let state = stack.state_json("uri");
    assert_eq!(
        state["resources"]["ServiceDb"]["outputs"]["connection_uri"],
        json!(""),
        "{state:#}"
    );

    // Names that sort before the endpoint's still wait for it.
    let (_dir, config) = temp_config(full.with("DevEndpoint", "ZzEndpoint"));
    let diff = stack.run(&config, &["diff", "--stage", "uri"]).await.ok();
    assert!(diff.stdout.contains("connection_uri"), "{}", diff.stdout);
    stack.run(&config, &["deploy", "--stage", "uri"]).await.ok();

    // A fresh stage with the renamed endpoint: roles and databases go after the endpoint.
    stack.neon.emulator.clear_requests();
    stack
        .run(&config, &["deploy", "--stage", "order"])
        .await
        .ok();
    let posts: Vec<String> = stack
        .neon
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.status < 300)
        .map(|r| r.path)
        .collect();
    let at = |suffix: &str| {
        posts
            .iter()
            .position(|p| p.ends_with(suffix))
            .unwrap_or_else(|| panic!("no POST …{suffix} in {posts:?}"))
    };
    assert!(at("/endpoints") < at("/roles"), "{posts:?}");
    assert!(at("/endpoints") < at("/databases"), "{posts:?}");
    let state = stack.state_json("uri");
    let uri = state["resources"]["ServiceDb"]["outputs"]["connection_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uri.starts_with("postgres"), "{state:#}");
    let client = connect_uri(&uri).await.unwrap();
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    let db: String = row.get(0);
    assert!(db.contains("service_database"), "{db}");

    stack.assert_no_changes(&config, "uri").await;
}
