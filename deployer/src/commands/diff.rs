//! `deployer diff`: the plan, field by field (or as JSON with `--json`); changes nothing.

use std::path::Path;

use crate::cli::DiffArgs;
use crate::error::Failure;
use crate::plan::{self, Scope};

pub async fn run(config_path: &Path, args: &DiffArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (_env, config) = super::load(config_path, &stage)?;
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
