//! `deployer diff`: the plan, field by field (or as JSON with `--json`); changes nothing.
//! `--schema`: a preview stage's schema difference from its parent branch, per database,
//! as Neon's schema diff shows it, for the pull request's comment.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::DiffArgs;
use crate::config::Kind;
use crate::error::Failure;
use crate::neon::models::{BranchId, ProjectId};
use crate::plan::{self, Scope};
use crate::resources::role;

pub async fn run(config_path: &Path, args: &DiffArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    if args.schema {
        return schema(&config, &env, &stage, args.json).await;
    }
    let store = super::store_to_read(&config).await?;
    let (config, state) = super::stage_view(&config, &store, &stage, None).await?;
    let policy = config.policy(&stage);
    let plan = plan::plan(&config, &state, policy, Scope::All);
    if args.json {
        let json = serde_json::to_string_pretty(&plan).expect("a plan serializes");
        println!("{json}");
        return Ok(());
    }
    println!("Stage `{stage}` of {}:", config.app);
    println!("{plan}");
    if let Err(e) = plan.check_protection(policy, false) {
        println!("note: {e}");
    }
    for note in config.pooler_notes() {
        println!("note: {note}");
    }
    Ok(())
}

/// Each database of the preview stage `stage` (its project's default one and its declared
/// ones) against the same database on the branch it was made from.
async fn schema(
    config: &crate::config::Config,
    env: &crate::env::EnvSource,
    stage: &str,
    json: bool,
) -> Result<(), Failure> {
    let Some(preview) = config.preview(stage) else {
        return Err(Failure::bad_input(format!(
            "stage `{stage}` is not a preview stage: it has no parent branch to compare with"
        ))
        .hint("run it for a stage that branches from another ([stages] branch_from), e.g. a pull request's"));
    };
    let store = super::store_to_read(config).await?;
    let state = super::load_state(&store, config, stage).await?;
    let clients = super::clients(config, env, &state, false).await?;
    let Some(neon) = clients.neon.as_ref() else {
        return Err(Failure::bad_input("NEON_API_KEY is not set")
            .hint("export NEON_API_KEY=... (or put it in .env)"));
    };
    let mut databases: Vec<(String, ProjectId, BranchId, String)> = Vec::new();
    for (name, rs) in &state.resources {
        match rs.kind {
            Kind::Preview => {
                let ids: crate::resources::preview::Ids = rs.ids_as(name)?;
                let db = rs.outputs.get("database_name").cloned().unwrap_or_default();
                databases.push((name.clone(), ids.project_id, ids.branch_id, db));
            }
            Kind::Database => {
                let (pid, bid, db) = role::Ids::of(name, rs)?;
                databases.push((name.clone(), pid, bid, db));
            }
            _ => {}
        }
    }
    if databases.is_empty() {
        return Err(
            Failure::bad_input(format!("stage `{stage}` has no database deployed"))
                .hint(format!("run `deployer deploy --stage {stage}` first")),
        );
    }
    let mut diffs = BTreeMap::new();
    for (name, pid, bid, db) in &databases {
        let diff = neon.compare_schema(pid, bid, db).await.map_err(|e| {
            let hint = e.hint();
            Failure::remote(e).maybe_hint(hint)
        })?;
        diffs.insert(name.clone(), diff);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&diffs).expect("strings serialize")
        );
        return Ok(());
    }
    for (name, diff) in &diffs {
        if diff.is_empty() {
            println!("{name}: the same schema as on `{}`", preview.base);
        } else {
            println!(
                "{name}: schema against `{}`'s branch\n{}",
                preview.base,
                diff.trim_end()
            );
        }
    }
    Ok(())
}
