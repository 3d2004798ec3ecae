//! `deployer unlock`: clears a lock left behind by an interrupted run.

use std::path::Path;

use crate::cli::StageArgs;
use crate::error::Failure;
use crate::state::StageLock;

pub fn run(config_path: &Path, args: &StageArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(args)?;
    let dir = super::project_dir(config_path);
    match StageLock::force_release(&dir, &stage) {
        Ok(true) => println!("Unlocked stage `{stage}`."),
        Ok(false) => println!("Stage `{stage}` was not locked."),
        Err(e) => {
            return Err(Failure::remote(UnlockError {
                stage: stage.clone(),
                source: e,
            }));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("cannot remove the lock of stage `{stage}`")]
struct UnlockError {
    stage: String,
    #[source]
    source: std::io::Error,
}
