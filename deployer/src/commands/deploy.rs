//! `deployer deploy`: plan, refuse what protection forbids, apply, print outputs.

use std::path::Path;

use crate::cli::DeployArgs;
use crate::error::CliError;
use crate::state::StageLock;

pub async fn run(config_path: &Path, args: &DeployArgs) -> Result<(), CliError> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    let mut deployer = super::deployer(&config, &env, &stage).await?;
    let _lock = StageLock::acquire(&deployer.project_dir, &stage, "deploy")
        .map_err(CliError::from_state)?;
    // Another run may have finished while we waited for the lock: read the state again.
    deployer.state = crate::state::StageState::load(&deployer.project_dir, &config.app, &stage)
        .map_err(CliError::from_state)?;
    let plan = deployer.plan();
    deployer.check_protection(&plan, args.allow_data_loss)?;
    eprintln!("Deploying {} to stage `{stage}`", config.app);
    let changed = deployer.apply(&plan).await?;
    if changed == 0 {
        println!("No changes.");
    }
    if let Some(neon) = &deployer.neon {
        let (calls, mutating) = neon.call_counts();
        tracing::info!(calls, mutating, "Neon API calls");
    }
    super::print_outputs(&deployer.state, false);
    Ok(())
}
