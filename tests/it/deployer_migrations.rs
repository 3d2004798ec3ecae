//! Schema migrations through the deployer binary, against the Neon emulator's real
//! PostgreSQL: applied in order once each, a failing one leaving nothing and stopping the
//! function's update, edited ones refused before any call, `-- no-transaction`, a long
//! transaction that holds the table (lock_timeout), protection, `migrate`, and sqlx's own
//! migrator reading what the deployer applied.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::deploy::DeployStack;
use harness::fixtures;
use harness::paths::fixture;
use harness::pg::connect_uri;

const FUNCTION: &str = "aws-hono-e2e-MyApi";

/// The guide's app with `migrations = "migrations"` on its project, in a folder of its own
/// that holds the fixture migrations `notes/` (the first deploy's two).
struct App {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl App {
    fn new(extra_toml: &str) -> App {
        App::of(fixtures::GUIDE_HONO, extra_toml)
    }

    /// The fixture infra.toml `fixture` (`infra/...`), with the migrations.
    fn of(fixture: &str, extra_toml: &str) -> App {
        let (dir, config) = fixtures::with_migrations(fixture, extra_toml);
        App { dir, config }
    }

    fn migrations(&self) -> PathBuf {
        self.dir.path().join("migrations")
    }

    /// Copies `tests/fixtures/migrations/<relative>` into the app's folder.
    fn copy(&self, relative: &str) {
        let from = fixture(&format!("migrations/{relative}"));
        let name = from.file_name().unwrap().to_owned();
        std::fs::copy(&from, self.migrations().join(name)).unwrap();
    }

    /// Adds one of `tests/fixtures/migrations/extra/`.
    fn add(&self, file: &str) {
        self.copy(&format!("extra/{file}"));
    }
}

/// The project's default database (a preview stage's: its branch's), as its owner, the way
/// the deployer recorded it.
async fn database(stack: &DeployStack, stage: &str) -> tokio_postgres::Client {
    let uri = stack.state(stage).resources["MyAppProject"].outputs["connection_uri"].clone();
    connect_uri(&uri)
        .await
        .expect("connect to the project's database")
}

/// `_sqlx_migrations` as (version, description, success, checksum).
async fn bookkeeping(db: &tokio_postgres::Client) -> Vec<(i64, String, bool, Vec<u8>)> {
    db.query(
        "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// The `Migrated ...` lines a run printed, one per migration applied.
fn migrated_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("Migrated"))
        .collect()
}

fn sha384(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    deployer::migrate::folder::checksum(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_in_order_once_each_and_a_later_one_alone() {
    let stack = DeployStack::start(|_| {}).await;
    let app = App::new("");

    let diff = stack
        .run(&app.config, &["diff", "--stage", "e2e"])
        .await
        .ok();
    for line in [
        "MyAppProject/migrations sql:Migrations create",
        "20260101000000_create_notes.sql: pending",
        "20260102000000_add_author.sql: pending",
    ] {
        assert!(diff.stdout.contains(line), "{line}\n{}", diff.stdout);
    }

    let first = stack
        .run(&app.config, &["deploy", "--stage", "e2e"])
        .await
        .ok();
    let migrated = migrated_lines(&first.stdout);
    assert_eq!(migrated.len(), 2, "{}", first.stdout);
    assert!(migrated[0].contains("MyAppProject/migrations 20260101000000_create_notes.sql ("));
    assert!(migrated[1].contains("20260102000000_add_author.sql ("));
    // The function waits for the migrations of the database it links.
    let at = |s: &str| {
        first
            .stdout
            .find(s)
            .unwrap_or_else(|| panic!("{s}\n{}", first.stdout))
    };
    assert!(at("20260102000000_add_author.sql") < at("MyApi aws:Function"));

    let db = database(&stack, "e2e").await;
    let rows = bookkeeping(&db).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.0, r.1.as_str(), r.2))
            .collect::<Vec<_>>(),
        vec![
            (20260101000000, "create notes", true),
            (20260102000000, "add author", true)
        ]
    );
    assert_eq!(
        rows[0].3,
        sha384(&app.migrations().join("20260101000000_create_notes.sql")),
        "the checksum is SHA-384 of the file, as sqlx's"
    );
    let author: String = db
        .query_one("SELECT author FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(author, "deployer");

    stack.assert_no_changes(&app.config, "e2e").await;

    // A third, `-- no-transaction`: CREATE INDEX CONCURRENTLY cannot run in a transaction.
    app.add("20260103000000_index_author.sql");
    let diff = stack
        .run(&app.config, &["diff", "--stage", "e2e", "--json"])
        .await
        .ok();
    let plan: serde_json::Value = serde_json::from_str(&diff.stdout).unwrap();
    let set = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resource"] == "MyAppProject/migrations")
        .expect("the set in the plan");
    assert_eq!(set["action"], "update");
    assert_eq!(
        plan["pending_migrations"],
        serde_json::json!([{"set": "MyAppProject/migrations", "file": "20260103000000_index_author.sql"}])
    );
    assert_eq!(set["fields"][0]["field"], "20260103000000_index_author.sql");
    let third = stack
        .run(&app.config, &["deploy", "--stage", "e2e"])
        .await
        .ok();
    let migrated = migrated_lines(&third.stdout);
    assert_eq!(migrated.len(), 1, "{}", third.stdout);
    assert!(migrated[0].contains("20260103000000_index_author.sql"));
    let valid: bool = db
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'notes_author'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid, "the index was built and is valid");
    assert_eq!(bookkeeping(&db).await.len(), 3);
    stack.assert_no_changes(&app.config, "e2e").await;

    // sqlx's own migrator, which `sqlx migrate run` and `info` are built on, finds every
    // migration applied with its checksum, and has nothing to do.
    let uri = stack.state("e2e").resources["MyAppProject"].outputs["connection_uri"].clone();
    harness::sqlx_migrator::assert_sqlx_agrees(&uri, &app.migrations(), 3).await;

    // `remove` does nothing special: the set goes with the stage, its database by the policy.
    drop(db);
    let removed = stack
        .run(&app.config, &["remove", "--stage", "e2e", "--yes"])
        .await
        .ok();
    assert!(
        removed
            .stdout
            .contains("Deleted   MyAppProject/migrations sql:Migrations"),
        "{}",
        removed.stdout
    );
    assert!(stack.projects_named("my-sst-project").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_leaves_nothing_and_the_function_keeps_its_configuration() {
    let stack = DeployStack::start(|_| {}).await;
    let app = App::new("");
    stack
        .run(&app.config, &["deploy", "--stage", "e2e"])
        .await
        .ok();

    // The broken migration and a memory change in the same deploy.
    app.add("20260104000000_broken.sql");
    let text = std::fs::read_to_string(&app.config).unwrap();
    std::fs::write(
        &app.config,
        text.replace("url = true\n", "url = true\nmemory = 256\n"),
    )
    .unwrap();
    let failed = stack.run(&app.config, &["deploy", "--stage", "e2e"]).await;
    assert_eq!(failed.code, 1, "{}", failed.all());
    for says in [
        "migration `20260104000000_broken.sql` failed at line 2",
        "relation \"no_such_table\" does not exist (42P01)",
        "hint: fix the migration and deploy again",
    ] {
        assert!(failed.stderr.contains(says), "{says}\n{}", failed.stderr);
    }
    assert!(
        !failed.stdout.contains("Updated   MyApi"),
        "{}",
        failed.stdout
    );

    let db = database(&stack, "e2e").await;
    let half: i64 = db
        .query_one(
            "SELECT count(*) FROM notes WHERE body = 'half of a broken migration'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(half, 0, "the migration's first statement was rolled back");
    assert_eq!(bookkeeping(&db).await.len(), 2, "no bookkeeping row for it");
    let conf = stack.function_configuration(FUNCTION).await;
    assert_eq!(
        conf.memory_size(),
        Some(128),
        "the old code keeps its configuration"
    );

    // Fixed, the same deploy goes through: the migration, then the function.
    std::fs::write(
        app.migrations().join("20260104000000_broken.sql"),
        "INSERT INTO notes (body) VALUES ('fixed');\n",
    )
    .unwrap();
    let fixed = stack
        .run(&app.config, &["deploy", "--stage", "e2e"])
        .await
        .ok();
    assert!(
        fixed.stdout.contains("20260104000000_broken.sql"),
        "{}",
        fixed.stdout
    );
    assert_eq!(
        stack.function_configuration(FUNCTION).await.memory_size(),
        Some(256)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_migration_that_changed_or_went_missing_is_refused_before_any_call() {
    let stack = DeployStack::start(|_| {}).await;
    let app = App::new("");
    stack
        .run(&app.config, &["deploy", "--stage", "e2e"])
        .await
        .ok();
    let first = app.migrations().join("20260101000000_create_notes.sql");
    let original = std::fs::read_to_string(&first).unwrap();

    std::fs::write(&first, format!("{original}-- one more comment\n")).unwrap();
    stack.neon.emulator.clear_requests();
    stack.aws.clear();
    let edited = stack.run(&app.config, &["deploy", "--stage", "e2e"]).await;
    assert_eq!(edited.code, 2, "{}", edited.all());
    assert!(
        edited.stderr.contains(
            "MyAppProject/migrations: migration `20260101000000_create_notes.sql` was applied on stage `e2e`, and the file has changed since"
        ),
        "{}",
        edited.stderr
    );
    assert!(
        edited
            .stderr
            .contains("hint: an applied migration never changes")
    );
    assert!(
        stack.neon.emulator.requests().is_empty(),
        "{:?}",
        stack.neon.emulator.requests()
    );
    assert!(
        stack.aws.calls().iter().all(|c| !c.mutating()),
        "{:?}",
        stack.aws.calls()
    );

    std::fs::remove_file(&first).unwrap();
    let missing = stack.run(&app.config, &["deploy", "--stage", "e2e"]).await;
    assert_eq!(missing.code, 2, "{}", missing.all());
    assert!(
        missing
            .stderr
            .contains("its file is missing from migrations"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("--allow-missing"),
        "{}",
        missing.stderr
    );
    let allowed = stack
        .run(
            &app.config,
            &["deploy", "--stage", "e2e", "--allow-missing"],
        )
        .await
        .ok();
    assert!(!allowed.stdout.contains("Migrated"), "{}", allowed.stdout);
    let db = database(&stack, "e2e").await;
    assert_eq!(bookkeeping(&db).await.len(), 2, "the applied row stays");

    // A version another tool left failed (success = false) is refused with what to do.
    std::fs::write(&first, &original).unwrap();
    db.execute(
        "UPDATE _sqlx_migrations SET success = false WHERE version = 20260102000000",
        &[],
    )
    .await
    .unwrap();
    app.add("20260106000000_add_tag.sql");
    let dirty = stack.run(&app.config, &["deploy", "--stage", "e2e"]).await;
    assert_eq!(dirty.code, 1, "{}", dirty.all());
    assert!(
        dirty
            .stderr
            .contains("migration 20260102000000 is recorded in _sqlx_migrations as failed"),
        "{}",
        dirty.stderr
    );
    assert!(
        dirty
            .stderr
            .contains("DELETE FROM _sqlx_migrations WHERE version = 20260102000000")
    );
    let tag: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'tag'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tag, 0, "nothing ran after the refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_waiting_on_a_long_transaction_never_queues_reads_past_lock_timeout() {
    let stack = DeployStack::start(|_| {}).await;
    let app = App::new("[migrations]\nlock_timeout = \"1s\"\n");
    stack
        .run(&app.config, &["deploy", "--stage", "e2e"])
        .await
        .ok();

    // A long transaction holds the table (ACCESS SHARE); the new migration needs ACCESS
    // EXCLUSIVE. Without lock_timeout, every read after it would queue until the blocker ends.
    let blocker = database(&stack, "e2e").await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM notes;")
        .await
        .unwrap();
    app.add("20260106000000_add_tag.sql");
    let mut cmd = stack.command(&app.config, &["deploy", "--stage", "e2e"]);
    let deploy = cmd.output();
    let reader = database(&stack, "e2e").await;
    let reads = async {
        // Once the migration waits for its lock, reads go on for 4 s; then the blocker ends.
        let started = Instant::now();
        loop {
            let waiting: i64 = reader
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deployer-migrate' AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the migration never waited for its lock"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held = Instant::now();
        let mut slowest = Duration::ZERO;
        while held.elapsed() < Duration::from_secs(4) {
            let t = Instant::now();
            reader
                .query_one("SELECT count(*) FROM notes", &[])
                .await
                .unwrap();
            slowest = slowest.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        blocker.batch_execute("COMMIT").await.unwrap();
        slowest
    };
    let (out, slowest) = tokio::join!(deploy, reads);
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        slowest < Duration::from_millis(2500),
        "a read waited {slowest:?} behind the migration (lock_timeout 1s)"
    );
    assert!(
        stderr.contains("waited 1000ms for a lock; trying again"),
        "{stderr}"
    );
    assert!(
        stdout.contains("Migrated  MyAppProject/migrations 20260106000000_add_tag.sql"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_stage_needs_allow_data_loss_for_a_migration_that_drops_a_column() {
    let stack = DeployStack::start(|_| {}).await;
    let app = App::new("");
    stack
        .run(&app.config, &["deploy", "--stage", "production"])
        .await
        .ok();
    app.add("20260105000000_drop_author.sql");
    let refused = stack
        .run(&app.config, &["deploy", "--stage", "production"])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(
        refused.stderr.contains(
            "migrations/20260105000000_drop_author.sql:1: ALTER TABLE notes DROP COLUMN author"
        ),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--allow-data-loss"));

    // `migrate` alone, under the same refusal; then with the flag.
    let refused = stack
        .run(&app.config, &["migrate", "--stage", "production"])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.all());
    let dry = stack
        .run(
            &app.config,
            &["migrate", "--stage", "production", "--dry-run"],
        )
        .await
        .ok();
    assert!(
        dry.stdout
            .contains("Pending   MyAppProject/migrations 20260105000000_drop_author.sql"),
        "{}",
        dry.stdout
    );
    let db = database(&stack, "production").await;
    assert_eq!(bookkeeping(&db).await.len(), 2, "a dry run applies nothing");
    let migrated = stack
        .run(
            &app.config,
            &["migrate", "--stage", "production", "--allow-data-loss"],
        )
        .await
        .ok();
    assert!(
        migrated
            .stdout
            .contains("Migrated  MyAppProject/migrations 20260105000000_drop_author.sql"),
        "{}",
        migrated.stdout
    );
    assert!(
        !migrated.stdout.contains("MyApi"),
        "migrate touches no function: {}",
        migrated.stdout
    );
    assert_eq!(bookkeeping(&db).await.len(), 3);
    stack.assert_no_changes(&app.config, "production").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_rehearses_a_new_migration_on_its_branch_of_prods_data_only() {
    let stack = DeployStack::start(|_| {}).await;
    let app = App::of("infra/guide-preview.toml", "");
    stack
        .run(&app.config, &["deploy", "--stage", "prod"])
        .await
        .ok();

    app.add("20260106000000_add_tag.sql");
    let preview = stack
        .run(&app.config, &["deploy", "--stage", "pr-7"])
        .await
        .ok();
    let migrated = migrated_lines(&preview.stdout);
    // The branch has prod's `_sqlx_migrations`: only the new one runs, on prod's data.
    assert_eq!(migrated.len(), 1, "{}", preview.stdout);
    assert!(migrated[0].contains("20260106000000_add_tag.sql"));
    let branch = database(&stack, "pr-7").await;
    assert_eq!(bookkeeping(&branch).await.len(), 3);
    let copied: String = branch
        .query_one("SELECT body FROM notes WHERE tag IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied, "hello", "the migration ran against prod's rows");

    // Neon's schema diff of the branch against prod's: the column the migration added.
    let schema = stack
        .run(&app.config, &["diff", "--stage", "pr-7", "--schema"])
        .await
        .ok();
    assert!(
        schema
            .stdout
            .contains("MyAppProject: schema against `prod`'s branch"),
        "{}",
        schema.stdout
    );
    assert!(!schema.stdout.contains("restrict"), "{}", schema.stdout);
    assert!(
        schema.stdout.contains("\n+    tag text\n"),
        "{}",
        schema.stdout
    );
    let prod_schema = stack
        .run(&app.config, &["diff", "--stage", "prod", "--schema"])
        .await;
    assert_eq!(prod_schema.code, 2, "{}", prod_schema.all());

    let prod = database(&stack, "prod").await;
    assert_eq!(
        bookkeeping(&prod).await.len(),
        2,
        "prod is untouched until it deploys"
    );
    let tag = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'tag'";
    let count: i64 = prod.query_one(tag, &[]).await.unwrap().get(0);
    assert_eq!(count, 0);

    let diff = stack
        .run(&app.config, &["diff", "--stage", "prod"])
        .await
        .ok();
    assert!(
        diff.stdout.contains("20260106000000_add_tag.sql: pending"),
        "{}",
        diff.stdout
    );
    stack
        .run(&app.config, &["deploy", "--stage", "prod"])
        .await
        .ok();
    assert_eq!(bookkeeping(&prod).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrators_racing_on_one_database_apply_each_migration_once() {
    let pg = harness::pg::PgCluster::start();
    pg.create_app_db("app", "secret", "app").await;
    let uri = pg.url("app", "secret", "app", "sslmode=disable");
    let app = App::new("");
    app.add("20260107000000_slow.sql");
    let folder = app.migrations();
    let deployer_run = || async {
        let migrations = deployer::migrate::folder::read(&folder).unwrap();
        let client = deployer::migrate::runner::connect(&uri).await.unwrap();
        deployer::migrate::runner::run(&client, &migrations, &Default::default(), |_| {})
            .await
            .map(|o| o.applied.len())
            .map_err(|e| e.to_string())
    };
    // Two deployers and sqlx's own migrator at once: they take one lock (sqlx's), so each
    // migration runs once (a second CREATE TABLE would fail).
    let sqlx_run = harness::sqlx_migrator::run(&uri, &folder);
    let (a, b, c) = tokio::join!(deployer_run(), deployer_run(), sqlx_run);
    let (a, b) = (a.unwrap(), b.unwrap());
    c.unwrap();
    assert!(a + b <= 3, "{a} + {b} applied");
    let db = connect_uri(&uri).await.unwrap();
    assert_eq!(bookkeeping(&db).await.len(), 3);
    let rows: i64 = db
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the row a migration inserts is there once");

    // CREATE INDEX CONCURRENTLY waits for every other transaction, a blocked
    // `pg_advisory_lock` call's too, so a migrator that blocks on the lock (as sqlx's does)
    // deadlocks with it. The deployer polls for the lock instead: two racing on a
    // CONCURRENTLY migration both finish, and it runs once.
    app.add("20260103000000_index_author.sql");
    let (a, b) = tokio::join!(deployer_run(), deployer_run());
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(bookkeeping(&db).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_applies_the_migrations_to_the_developers_branch_and_to_the_local_cluster() {
    let stack = DeployStack::start(|_| {}).await;
    let app = App::new("");

    // With a Neon key: the developer's own stage, its Neon resources and migrations.
    let cloud = stack
        .run(&app.config, &["dev", "--stage", "devx", "--", "true"])
        .await
        .ok();
    assert!(
        cloud
            .stdout
            .contains("Migrated  MyAppProject/migrations 20260101000000_create_notes.sql"),
        "{}",
        cloud.stdout
    );
    assert_eq!(bookkeeping(&database(&stack, "devx").await).await.len(), 2);

    // `--local`: the same migrations on this machine's cluster, before the command runs.
    let query = "SELECT count(*), max(version) FROM _sqlx_migrations";
    let script = format!(
        "python3 -c 'import json,os,subprocess,sys; u=json.loads(os.environ[\"LINK_NeonDB\"])[\"connection_string\"]; sys.stdout.write(subprocess.run([\"psql\", u, \"-tAc\", \"{query}\"], capture_output=True, text=True, check=True).stdout)'"
    );
    let pg_port = harness::pg::free_port().to_string();
    let local = stack
        .run(
            &app.config,
            &[
                "dev",
                "--local",
                "--pg-port",
                &pg_port,
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .await
        .ok();
    assert!(
        local
            .stdout
            .contains("Migrated  MyAppProject/migrations 20260102000000_add_author.sql"),
        "{}",
        local.stdout
    );
    assert!(local.stdout.contains("2|20260102000000"), "{}", local.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_through_the_pooler_still_migrates_over_the_direct_host() {
    // The emulator runs Neon's pooler: PgBouncer in transaction mode behind its proxy.
    let stack = DeployStack::start(|c| c.pooler = Some(harness::pgbouncer::binary())).await;
    let app = App::new("");
    let text = std::fs::read_to_string(&app.config).unwrap();
    // Nothing invokes the function (no release check, no URL to check): it would log in
    // through the pooler itself.
    let pooled = text
        .replace(
            "${MyAppProject.connection_uri}",
            "${MyAppProject.connection_uri_pooler}",
        )
        .replace("url = true\n", "url = false\nsmoke = false\n");
    assert_ne!(text, pooled);
    std::fs::write(&app.config, pooled).unwrap();
    stack
        .run(&app.config, &["deploy", "--stage", "e2e"])
        .await
        .ok();

    let state = stack.state("e2e");
    let outputs = &state.resources["MyAppProject"].outputs;
    let (project, branch) = (&outputs["id"], &outputs["branch_id"]);
    let logins = stack.neon.emulator.pooler_logins(project, branch).await;
    assert!(
        logins.is_empty(),
        "the migrations went through the pooler: {logins:?}"
    );
    assert_eq!(bookkeeping(&database(&stack, "e2e").await).await.len(), 2);

    // The pooler is real, and logs who comes through it: the linked URI does.
    let link = &state.resources["NeonDB"].outputs["connection_string"];
    let through = connect_uri(link).await.expect("the pooled URI connects");
    let n: i64 = through
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let logins = stack.neon.emulator.pooler_logins(project, branch).await;
    assert_eq!(logins, ["neondb/neondb_owner"], "{logins:?}");
}
