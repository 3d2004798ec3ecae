//! `deployer diff`: the plan, field by field; changes nothing.

use std::path::Path;

use crate::cli::StageArgs;
use crate::error::CliError;

pub async fn run(config_path: &Path, args: &StageArgs) -> Result<(), CliError> {
    let stage = super::resolve_stage(args)?;
    let (env, config) = super::load(config_path, &stage)?;
    let deployer = super::deployer(&config, &env, &stage).await?;
    let plan = deployer.plan();
    println!("Stage `{stage}` of {}:", config.app);
    println!("{plan}");
    if let Err(e) = deployer.check_protection(&plan, false) {
        println!("note: {e}");
    }
    Ok(())
}
