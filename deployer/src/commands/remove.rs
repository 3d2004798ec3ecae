//! `deployer remove`: deletes a stage. Lists what goes first and asks unless `--yes`;
//! protected stages refuse; with removal = "retain" the Neon resources stay.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::cli::RemoveArgs;
use crate::config::Removal;
use crate::error::CliError;
use crate::output;
use crate::state::{StageLock, StageState};

pub async fn run(config_path: &Path, args: &RemoveArgs) -> Result<(), CliError> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    let policy = config.policy(&stage);
    if policy.protect {
        return Err(CliError::bad_input(
            format!("stage `{stage}` is protected; `remove` would delete its resources"),
            Some(format!(
                "set protect = false under [stages.{stage}] first, if you really mean it"
            )),
        ));
    }
    let mut deployer = super::deployer(&config, &env, &stage).await?;
    let _lock = StageLock::acquire(&deployer.project_dir, &stage, "remove")
        .map_err(CliError::from_state)?;
    deployer.state = StageState::load(&deployer.project_dir, &config.app, &stage)
        .map_err(CliError::from_state)?;
    if deployer.state.resources.is_empty() {
        println!("Stage `{stage}` has nothing deployed.");
        return Ok(());
    }
    let mut order: Vec<(String, crate::config::Kind)> = deployer
        .state
        .resources
        .iter()
        .map(|(n, r)| (n.clone(), r.kind))
        .collect();
    order.sort_by_key(|(_, k)| std::cmp::Reverse(*k));
    println!("Removing stage `{stage}` of {}:", config.app);
    for (name, kind) in &order {
        let fate = if kind.is_neon() && policy.removal == Removal::Retain {
            "retain"
        } else {
            "delete"
        };
        println!("  {fate:<7} {name} {}", kind.label());
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::bad_input(
                "refusing to remove without confirmation".into(),
                Some("pass --yes".into()),
            ));
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
    for (name, kind) in order {
        let started = std::time::Instant::now();
        if kind.is_neon() && policy.removal == Removal::Retain {
            let ids = deployer
                .state
                .resources
                .get(&name)
                .map(crate::state::ResourceState::import_id)
                .unwrap_or_default();
            deployer.state.resources.remove(&name);
            deployer
                .state
                .save(&deployer.project_dir)
                .map_err(CliError::from_state)?;
            output::step("Retained", &name, kind.label(), started.elapsed());
            println!("          kept in Neon; to manage it again: import = \"{ids}\"");
        } else {
            deployer.delete(&name).await?;
            output::step("Deleted", &name, kind.label(), started.elapsed());
        }
    }
    StageState::delete(&deployer.project_dir, &stage).map_err(CliError::from_state)?;
    println!("Removed stage `{stage}`.");
    Ok(())
}
