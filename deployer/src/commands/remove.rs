//! `deployer remove`: deletes a stage: the plan of an empty infra.toml under the stage's
//! policy. Lists what goes first and asks unless `--yes`; protected stages refuse; with
//! removal = "retain" the Neon resources stay.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::apply::Applier;
use crate::cli::RemoveArgs;
use crate::error::Failure;
use crate::plan::{self, Action, ProtectionError, Scope};
use crate::state::Recorder;

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
    let dir = super::project_dir(&config.path);
    let locked = super::Locked::take(config, env, stage, "remove", true).await?;
    let result = remove_locked(config, stage, &dir, &locked, yes).await;
    locked.release().await;
    result
}

/// The removal, while this run holds the stage's lock.
async fn remove_locked(
    config: &crate::config::Config,
    stage: &str,
    dir: &Path,
    locked: &super::Locked,
    yes: bool,
) -> Result<(), Failure> {
    let (store, clients) = (&locked.store, &locked.clients);
    let policy = config.policy(stage);
    let state = super::load_state(store, config, stage).await?;
    if state.resources.is_empty() {
        println!("Stage `{stage}` has nothing deployed.");
        return Ok(());
    }
    let mut empty = config.clone();
    empty.resources.clear();
    let plan = plan::plan(&empty, &state, policy, Scope::All);
    println!("Removing stage `{stage}` of {}:", config.app);
    for c in &plan.changes {
        let fate = if c.action == Action::Retain {
            "retain"
        } else {
            "delete"
        };
        println!("  {fate:<7} {} {}", c.resource, c.kind.label());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(
                Failure::bad_input("refusing to remove without confirmation").hint("pass --yes"),
            );
        }
        print!("Remove? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Nothing removed.");
            return Ok(());
        }
    }
    let recorder = Recorder::new(state, store.clone(), &locked.held);
    let applier = Applier {
        config: &empty,
        stage,
        project_dir: dir,
        clients,
        concurrency: 1,
    };
    applier.run(&plan, &recorder).await?;
    store.forget(stage).await?;
    println!("Removed stage `{stage}`.");
    Ok(())
}
