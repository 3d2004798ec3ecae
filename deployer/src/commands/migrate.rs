//! `deployer migrate`: the stage's pending migrations and nothing else, under the stage's
//! lock, through the same pipeline and refusals as `deploy`; `--dry-run` checks them
//! against each database (changed, missing, failed) and lists the pending ones.

use std::path::Path;

use super::pipeline::{Applied, Pipeline, Review};
use crate::cli::{DEFAULT_CONCURRENCY, MigrateArgs};
use crate::config::{Config, Kind, Spec};
use crate::error::Failure;
use crate::migrate::Options;
use crate::plan::{Plan, Scope};
use crate::resources::migrations;
use crate::state::{StageState, Store};

pub async fn run(config_path: &Path, args: &MigrateArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    if !config.resources.iter().any(|r| r.kind == Kind::Migrations) {
        return Err(Failure::bad_input(format!(
            "{} declares no migrations",
            config.path.display()
        ))
        .hint("add migrations = \"migrations\" under a [neon.project.<Name>] or [neon.database.<Name>] (docs/migrations.md)"));
    }
    if args.dry_run {
        return dry_run(&config, &stage, args).await;
    }
    let pipeline = Pipeline {
        command: "migrate",
        with_aws: false,
        scope: Scope::Migrations,
        remove: false,
        allow_data_loss: args.allow_data_loss,
        allow_missing: args.allow_missing,
        concurrency: usize::from(DEFAULT_CONCURRENCY),
    };
    let review = |config: &Config, state: &StageState, _: &Plan| {
        databases_deployed(config, state, &stage)?;
        Ok(Review::Apply)
    };
    let finish = async |_: &Store, applied: &Applied| {
        if applied.changed == 0 {
            println!("No changes.");
        }
        Ok(())
    };
    pipeline.run(&config, &env, &stage, review, finish).await?;
    Ok(())
}

/// Every set's database has been deployed (its connection string recorded).
fn databases_deployed(config: &Config, state: &StageState, stage: &str) -> Result<(), Failure> {
    for r in &config.resources {
        if let Spec::Migrations(m) = &r.spec {
            let known = state
                .resources
                .get(&m.database)
                .and_then(|rs| rs.outputs.get("connection_uri"))
                .is_some_and(|u| !u.is_empty());
            if !known {
                return Err(Failure::bad_input(format!(
                    "{}: database `{}` is not deployed on stage `{stage}`",
                    r.name, m.database
                ))
                .hint(format!(
                    "run `deployer deploy --stage {stage}` first: it creates the database and applies its migrations"
                )));
            }
        }
    }
    Ok(())
}

async fn dry_run(config: &Config, stage: &str, args: &MigrateArgs) -> Result<(), Failure> {
    let store = super::store_to_read(config).await?;
    let (config, state) = super::stage_view(config, &store, stage, None).await?;
    migrations::check(
        &config,
        &state,
        config.policy(stage),
        true,
        args.allow_missing,
    )
    .map_err(|e| {
        let hint = e.hint();
        Failure::bad_input(e).hint(hint)
    })?;
    databases_deployed(&config, &state, stage)?;
    let opts = Options {
        allow_missing: args.allow_missing,
        dry_run: true,
        ..Options::default()
    };
    for r in &config.resources {
        let Spec::Migrations(spec) = &r.spec else {
            continue;
        };
        let uri = state.resources[&spec.database].outputs["connection_uri"].clone();
        let outcome = migrations::apply(&crate::migrate::direct_uri(&uri), spec, &opts, &r.name)
            .await
            .map_err(|e| {
                let hint = e.hint();
                Failure::remote(e).maybe_hint(hint)
            })?;
        if outcome.applied.is_empty() {
            println!(
                "{}: no pending migrations ({} applied)",
                r.name,
                outcome.before.len()
            );
        }
    }
    Ok(())
}
