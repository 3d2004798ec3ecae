//! `deployer unlock`: clears a lock left behind by an interrupted run. It names the holder;
//! a holder that looks alive (a live S3 lease, or a process of this host) is left alone
//! unless `--force`.

use std::path::Path;

use crate::cli::UnlockArgs;
use crate::error::Failure;
use crate::state::{StateError, Unlocked};

pub async fn run(config_path: &Path, args: &UnlockArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (_, config) = super::load(config_path, &stage)?;
    let store = super::store_to_read(&config).await?;
    match store.unlock(&stage, args.force).await {
        Ok(Unlocked::Removed(holder)) => println!("Unlocked stage `{stage}` (held by {holder})."),
        Ok(Unlocked::NotLocked) => println!("Stage `{stage}` was not locked."),
        Err(e @ StateError::LiveLease { .. }) => {
            return Err(Failure::bad_input(e).hint(format!(
                "wait for it to finish or for its lease to run out; if that run is gone, `deployer unlock --stage {stage} --force` (its next write is then refused)"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
