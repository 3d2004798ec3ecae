//! `deployer remove`: deletes a stage: the plan of an empty infra.toml under the stage's
//! policy. Lists what goes first and asks unless `--yes`; protected stages refuse; with
//! removal = "retain" the Neon resources stay.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::pipeline::{Applied, Pipeline, Review};
use crate::cli::RemoveArgs;
use crate::config::Config;
use crate::error::Failure;
use crate::plan::{Action, Plan, ProtectionError, Scope};
use crate::state::{StageState, Store};

pub async fn run(config_path: &Path, args: &RemoveArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    let policy = config.policy(&stage);
    if policy.protect {
        let e = ProtectionError::Remove {
            stage: stage.clone(),
        };
        let hint = e.hint();
        return Err(Failure::bad_input(e).hint(hint));
    }
    remove_stage(&config, &env, &stage, args.yes).await
}

/// Removes `stage` under its lock (`yes`: without asking); `prune` removes each stage so.
pub async fn remove_stage(
    config: &crate::config::Config,
    env: &crate::env::EnvSource,
    stage: &str,
    yes: bool,
) -> Result<(), Failure> {
    let pipeline = Pipeline {
        command: "remove",
        with_aws: true,
        scope: Scope::All,
        remove: true,
        allow_data_loss: false,
        allow_missing: false,
        concurrency: 1,
    };
    let review = |config: &Config, state: &StageState, plan: &Plan| {
        if state.resources.is_empty() {
            println!("Stage `{stage}` has nothing deployed.");
            return Ok(Review::Stop);
        }
        println!("Removing stage `{stage}` of {}:", config.app);
        for c in &plan.changes {
            let fate = if c.action == Action::Retain {
                "retain"
            } else {
                "delete"
            };
            println!("  {fate:<7} {} {}", c.resource, c.kind.label());
        }
        if yes {
            return Ok(Review::Apply);
        }
        if !std::io::stdin().is_terminal() {
            return Err(
                Failure::bad_input("refusing to remove without confirmation").hint("pass --yes"),
            );
        }
        print!("Remove? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            Ok(Review::Apply)
        } else {
            println!("Nothing removed.");
            Ok(Review::Stop)
        }
    };
    let finish = async |store: &Store, _: &Applied| {
        store.forget(stage).await?;
        println!("Removed stage `{stage}`.");
        Ok(())
    };
    pipeline.run(config, env, stage, review, finish).await?;
    Ok(())
}
