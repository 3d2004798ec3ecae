//! Preview stages (`branch_from = "prod"`): a stage that is a Neon branch of prod's
//! project, with prod's data and its own role passwords, adopted on a rerun, expiring and
//! pushed forward, made again once Neon deleted it, pruned, and removed without touching
//! prod's project, default branch or data.

use std::collections::BTreeMap;

use deployer::neon::models::{
    Annotation, Branch, BranchesResponse, CreatedBranch, ProjectsResponse,
};
use harness::deploy::{DeployStack, Run, temp_config};
use harness::fixtures;
use harness::pg::connect_uri;
use serde_json::{Value, json};

const PREVIEW: &str = "infra/guide-preview.toml";

/// The fixture, copied outside the workspace once: deploys of it take the api built once
/// by `lambda_artifacts`, not a `cargo lambda build` each (concurrent ones race to move
/// the same binary into target/lambda).
fn preview_config() -> &'static std::path::Path {
    static CONFIG: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    &CONFIG
        .get_or_init(|| temp_config(fixtures::read(PREVIEW)))
        .1
}

async fn outputs(stack: &DeployStack, stage: &str) -> Value {
    let run = stack
        .run(
            preview_config(),
            &["outputs", "--stage", stage, "--json", "--reveal"],
        )
        .await
        .ok();
    serde_json::from_str(&run.stdout).unwrap()
}

async fn deploy(stack: &DeployStack, stage: &str) -> Run {
    stack
        .run(preview_config(), &["deploy", "--stage", stage])
        .await
        .ok()
}

/// The project's branches and their annotations, through Neon's API.
async fn branches(
    stack: &DeployStack,
    project: &str,
) -> (Vec<Branch>, BTreeMap<String, Annotation>) {
    let answer = stack
        .neon
        .client
        .call(
            "GET",
            "/projects/{project_id}/branches",
            &[project],
            "",
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let listed: BranchesResponse = answer.typed();
    (listed.branches, listed.annotations)
}

/// A branch made through Neon's API (waiting out the 423 of a running operation).
async fn create_branch(stack: &DeployStack, project: &str, body: Value) -> String {
    loop {
        let answer = stack
            .neon
            .client
            .call(
                "POST",
                "/projects/{project_id}/branches",
                &[project],
                "",
                Some(body.clone()),
            )
            .await;
        match answer.status {
            201 => return answer.typed::<CreatedBranch>().branch.id.0,
            423 => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            other => panic!("create branch: {other} {:?}", answer.body),
        }
    }
}

/// Makes a branch expire in the emulator (`deleted`: and waits until Neon's job deleted it).
async fn expire(stack: &DeployStack, project: &str, branch: &str, deleted: bool) {
    assert!(
        stack
            .neon
            .emulator
            .expire_branch(project, branch, deleted)
            .await,
        "no branch {branch}"
    );
}

/// Seconds since the epoch of Neon's RFC 3339 time.
fn unix(t: &str) -> i64 {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .unix_timestamp()
}

async fn project_count(stack: &DeployStack) -> usize {
    let answer = stack
        .neon
        .client
        .call("GET", "/projects", &[], "org_id=org-test-123", None)
        .await;
    answer.typed::<ProjectsResponse>().projects.len()
}

async fn rows(uri: &str) -> Vec<String> {
    let db = connect_uri(uri)
        .await
        .expect("the branch's database connects");
    db.query("SELECT note FROM notes ORDER BY note", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn uri_of(outputs: &Value) -> String {
    outputs["MyAppProject"]["connection_uri"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// prod with a table holding one row; returns prod's outputs.
async fn prod_with_a_row(stack: &DeployStack) -> Value {
    deploy(stack, "prod").await;
    let prod = outputs(stack, "prod").await;
    let db = connect_uri(&uri_of(&prod)).await.unwrap();
    db.batch_execute("CREATE TABLE notes (note text); INSERT INTO notes VALUES ('from prod')")
        .await
        .unwrap();
    prod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_stage_is_a_branch_of_prods_data_and_goes_away_alone() {
    let stack = DeployStack::start(|_| {}).await;
    let prod = prod_with_a_row(&stack).await;
    let project = prod["MyAppProject"]["id"].as_str().unwrap().to_owned();
    let default_branch = prod["MyAppProject"]["default_branch_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // prod's default branch protected in Neon: its children get their own passwords.
    let protect = stack
        .neon
        .client
        .call(
            "PATCH",
            "/projects/{project_id}/branches/{branch_id}",
            &[&project, &default_branch],
            "",
            Some(json!({ "branch": { "protected": true } })),
        )
        .await;
    assert_eq!(protect.status, 200, "{:?}", protect.body);
    let projects = project_count(&stack).await;

    let first = deploy(&stack, "pr-1").await;
    assert!(
        first.stdout.contains("Created   MyAppProject neon:Project"),
        "{}",
        first.stdout
    );
    assert!(
        first.stderr.contains("branches from `prod`"),
        "{}",
        first.stderr
    );
    let pr = outputs(&stack, "pr-1").await;
    let (pr_uri, prod_uri) = (uri_of(&pr), uri_of(&prod));
    assert_eq!(pr["MyAppProject"]["id"], prod["MyAppProject"]["id"]);
    let branch_id = pr["MyAppProject"]["branch_id"].as_str().unwrap().to_owned();
    assert_ne!(branch_id, default_branch);
    let port = |uri: &str| {
        uri.split('@')
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_ne!(
        port(&pr_uri),
        port(&prod_uri),
        "the preview links its own branch's server"
    );
    let password = |o: &Value| {
        o["MyAppProject"]["database_password"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(
        password(&pr),
        password(&prod),
        "a child of a protected branch has its own passwords"
    );
    assert_eq!(
        project_count(&stack).await,
        projects,
        "no project was created"
    );

    // prod's row is there; a row written in the preview stays there.
    assert_eq!(rows(&pr_uri).await, ["from prod"]);
    let db = connect_uri(&pr_uri).await.unwrap();
    db.execute("INSERT INTO notes VALUES ('from pr-1')", &[])
        .await
        .unwrap();
    assert_eq!(rows(&prod_uri).await, ["from prod"]);

    // The function links the branch.
    let env = stack
        .lambda
        .get_function_configuration()
        .function_name("aws-hono-pr-1-MyApi")
        .send()
        .await
        .unwrap();
    let link = env.environment().unwrap().variables().unwrap()["LINK_NeonDB"].clone();
    let link: Value = serde_json::from_str(&link).unwrap();
    assert_eq!(link["connection_string"], pr_uri.as_str());

    // Neon's branch: named, annotated, expiring in 3 days.
    let (list, annotations) = branches(&stack, &project).await;
    let branch = list.iter().find(|b| b.id.0 == branch_id).unwrap();
    assert_eq!(branch.name, "preview/pr-1");
    assert_eq!(
        annotations[&branch_id].value,
        BTreeMap::from([
            ("deployer-app".to_owned(), "aws-hono".to_owned()),
            ("deployer-stage".to_owned(), "pr-1".to_owned())
        ])
    );
    let expires = |b: &Branch| unix(b.expires_at.as_deref().expect("expires_at set"));
    let first_expiry = expires(branch);
    let in_3d = time::OffsetDateTime::now_utc().unix_timestamp() + 3 * 86_400;
    assert!(
        (in_3d - 60..=in_3d + 5).contains(&first_expiry),
        "{branch:?}"
    );

    // A second deploy pushes the expiry forward and makes nothing new; so does one that
    // lost its state (the branch is adopted by name and annotation).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    deploy(&stack, "pr-1").await;
    // A preview's state as the deployer before state version 2 wrote it (its branch a
    // `Project` whose inputs say `branch_from`) deploys as the preview it is.
    let file = stack.state_file("pr-1");
    let v1 = fixtures::read_file(&file)
        .with("\"version\": 2,", "\"version\": 1,")
        .with("\"kind\": \"Preview\"", "\"kind\": \"Project\"");
    std::fs::write(&file, v1.as_str()).unwrap();
    let from_v1 = deploy(&stack, "pr-1").await;
    assert!(!from_v1.stdout.contains("Created"), "{}", from_v1.stdout);
    assert_eq!(
        stack.state("pr-1").resources["MyAppProject"].kind,
        deployer::config::Kind::Preview
    );
    std::fs::remove_file(stack.state_file("pr-1")).unwrap();
    deploy(&stack, "pr-1").await;
    let (list, _) = branches(&stack, &project).await;
    let named: Vec<&Branch> = list.iter().filter(|b| b.name == "preview/pr-1").collect();
    assert_eq!(named.len(), 1, "{list:?}");
    assert_eq!(named[0].id.0, branch_id);
    assert!(expires(named[0]) > first_expiry, "{:?}", named[0]);
    assert_eq!(project_count(&stack).await, projects);

    // Schema only: the tables, none of the rows.
    deploy(&stack, "nopii").await;
    assert_eq!(
        rows(&uri_of(&outputs(&stack, "nopii").await)).await,
        Vec::<String>::new()
    );

    // For CI: url, branch_id and the masked database URL.
    let gh = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = stack.command(
        preview_config(),
        &["outputs", "--stage", "pr-1", "--github-output"],
    );
    let out = cmd.env("GITHUB_OUTPUT", gh.path()).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(gh.path()).unwrap();
    assert!(
        written.contains(&format!("branch_id={branch_id}\n")),
        "{written}"
    );
    assert!(
        written.contains(&format!("database_url={pr_uri}\n")),
        "{written}"
    );
    assert!(
        written.lines().any(|l| l.starts_with("url=http")),
        "{written}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("::add-mask::{pr_uri}"),
        "the URL is masked before anything else shows it"
    );

    // `dev` never changes a protected stage from a laptop.
    let dev = stack
        .run(preview_config(), &["dev", "--stage", "prod", "--", "true"])
        .await;
    assert_eq!(dev.code, 2, "{}", dev.all());
    assert!(
        dev.stderr.contains("stage `prod` is protected"),
        "{}",
        dev.stderr
    );

    // Removing the preview deletes its function and branch; prod keeps everything.
    stack
        .run(preview_config(), &["remove", "--stage", "pr-1", "--yes"])
        .await
        .ok();
    let (list, _) = branches(&stack, &project).await;
    assert!(list.iter().all(|b| b.id.0 != branch_id), "{list:?}");
    assert!(list.iter().any(|b| b.id.0 == default_branch && b.default));
    assert!(
        stack
            .lambda
            .get_function()
            .function_name("aws-hono-pr-1-MyApi")
            .send()
            .await
            .is_err()
    );
    assert_eq!(rows(&prod_uri).await, ["from prod"]);
    assert_eq!(project_count(&stack).await, projects);
    assert!(outputs(&stack, "prod").await["MyApi"]["url"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_previews_are_made_again_on_deploy_and_pruned() {
    // Operations that take a moment: concurrent stages meet Neon's 423 on the project.
    let stack = DeployStack::start(|c| {
        c.operation_delay = std::time::Duration::from_millis(300);
    })
    .await;
    let prod = prod_with_a_row(&stack).await;
    let project = prod["MyAppProject"]["id"].as_str().unwrap().to_owned();

    // Two preview stages at once on the same project.
    let (a, b) = tokio::join!(deploy(&stack, "pr-2"), deploy(&stack, "pr-3"));
    assert!(a.stdout.contains("Created") && b.stdout.contains("Created"));
    let id = |o: &Value| o["MyAppProject"]["branch_id"].as_str().unwrap().to_owned();
    let (pr2, pr3) = (outputs(&stack, "pr-2").await, outputs(&stack, "pr-3").await);
    assert_ne!(id(&pr2), id(&pr3));
    assert_eq!(rows(&uri_of(&pr3)).await, ["from prod"]);

    // Neon deletes pr-2's branch when it expires; the next deploy makes it again.
    expire(&stack, &project, &id(&pr2), true).await;
    let again = deploy(&stack, "pr-2").await;
    assert!(again.stderr.contains("is gone"), "{}", again.stderr);
    assert!(
        again.stdout.contains("Created   MyAppProject"),
        "{}",
        again.stdout
    );
    let pr2_again = outputs(&stack, "pr-2").await;
    assert_ne!(id(&pr2_again), id(&pr2));
    assert_eq!(rows(&uri_of(&pr2_again)).await, ["from prod"]);

    // What prune finds: pr-2's branch gone, pr-3's expired (Neon has not deleted it yet),
    // and an expired branch of this app that no stage records. Not a branch made by hand.
    expire(&stack, &project, &id(&pr2_again), true).await;
    expire(&stack, &project, &id(&pr3), false).await;
    let orphan = create_branch(
        &stack,
        &project,
        json!({
            "branch": { "name": "preview/pr-9" },
            "annotation_value": { "deployer-app": "aws-hono", "deployer-stage": "pr-9" },
        }),
    )
    .await;
    let by_hand = create_branch(
        &stack,
        &project,
        json!({ "branch": { "name": "feature-x" } }),
    )
    .await;
    for b in [&orphan, &by_hand] {
        expire(&stack, &project, b, false).await;
    }

    // Without --yes and no terminal: the list, exit 2, nothing removed.
    let listed = stack.run(preview_config(), &["prune"]).await;
    assert_eq!(listed.code, 2, "{}", listed.all());
    for stage in ["pr-2", "pr-3", "pr-9"] {
        assert!(listed.stdout.contains(stage), "{}", listed.stdout);
    }
    assert!(!listed.stdout.contains("feature-x"), "{}", listed.stdout);
    assert!(stack.state_file("pr-2").exists());

    let pruned = stack
        .run(preview_config(), &["prune", "--keep", "pr-3", "--yes"])
        .await
        .ok();
    assert!(
        pruned.stdout.contains("Removed stage `pr-2`"),
        "{}",
        pruned.stdout
    );
    assert!(!stack.state_file("pr-2").exists());
    assert!(stack.state_file("pr-3").exists(), "--keep pr-3");
    let (list, _) = branches(&stack, &project).await;
    let ids: Vec<&str> = list.iter().map(|b| b.id.0.as_str()).collect();
    assert!(!ids.contains(&orphan.as_str()), "the orphan is pruned");
    assert!(ids.contains(&id(&pr3).as_str()), "pr-3 is kept");
    assert!(
        ids.contains(&by_hand.as_str()),
        "a branch made by hand is not ours"
    );
    assert!(
        stack
            .lambda
            .get_function()
            .function_name("aws-hono-pr-2-MyApi")
            .send()
            .await
            .is_err()
    );
    assert_eq!(rows(&uri_of(&prod)).await, ["from prod"]);

    // Whatever its state says, a preview stage never deletes prod's default branch.
    let file = stack.state_file("pr-3");
    let tampered = fixtures::read_file(&file).with(
        &id(&pr3),
        prod["MyAppProject"]["default_branch_id"].as_str().unwrap(),
    );
    std::fs::write(&file, tampered.as_str()).unwrap();
    let refused = stack
        .run(preview_config(), &["remove", "--stage", "pr-3", "--yes"])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains("never deletes it"),
        "{}",
        refused.stderr
    );
    assert_eq!(rows(&uri_of(&prod)).await, ["from prod"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_can_start_from_prods_data_as_it_was() {
    let stack = DeployStack::start(|_| {}).await;
    let prod = prod_with_a_row(&stack).await;
    let second = std::time::Duration::from_millis(1500);
    tokio::time::sleep(second).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let at = time::OffsetDateTime::from_unix_timestamp(now)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(second).await;
    let db = connect_uri(&uri_of(&prod)).await.unwrap();
    db.execute("INSERT INTO notes VALUES ('later')", &[])
        .await
        .unwrap();

    let text = fixtures::read("infra/guide-preview-at.toml")
        .with("at:2026-01-01T00:00:00Z", &format!("at:{at}"));
    let (_dir, config) = temp_config(&text);
    stack
        .run(&config, &["deploy", "--stage", "past"])
        .await
        .ok();
    let past = stack
        .run(
            &config,
            &["outputs", "--stage", "past", "--json", "--reveal"],
        )
        .await
        .ok();
    let past: Value = serde_json::from_str(&past.stdout).unwrap();
    assert_eq!(
        rows(&uri_of(&past)).await,
        ["from prod"],
        "the data as of {at}"
    );
    assert_eq!(rows(&uri_of(&prod)).await, ["from prod", "later"]);
}
