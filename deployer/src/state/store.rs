//! Where a stage's state and lock live, as `[state]` in infra.toml says: `.deployer/` or S3.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::s3::{S3Lock, S3Store};
use super::{KindRecord, StageLock, StageState, StateError, bucket};
use crate::config::{Config, StateBackend};

#[derive(Debug)]
pub enum Store {
    /// `.deployer/` beside infra.toml (or `DEPLOYER_STATE_DIR`).
    Local(PathBuf),
    S3(Arc<S3Store>),
}

/// A stage's lock while a run holds it.
#[derive(Debug)]
pub enum Held {
    Local(StageLock),
    S3(S3Lock),
}

/// What `unlock` did.
#[derive(Debug)]
pub enum Unlocked {
    /// The lock of this holder is gone.
    Removed(String),
    NotLocked,
}

impl Store {
    /// The store infra.toml names; for S3, the bucket checked (or made, for the default one).
    /// `create`: make the default bucket if it is missing (commands that write); otherwise
    /// a missing default bucket reads as no state.
    pub async fn open(
        config: &Config,
        project_dir: &Path,
        create: bool,
    ) -> Result<Store, StateError> {
        Store::open_backend(config, project_dir, &config.state, create).await
    }

    /// The store of `backend`, with infra.toml's app and region.
    pub async fn open_backend(
        config: &Config,
        project_dir: &Path,
        backend: &StateBackend,
        create: bool,
    ) -> Result<Store, StateError> {
        let StateBackend::S3 { bucket, prefix } = backend else {
            return Ok(Store::Local(project_dir.to_owned()));
        };
        let sdk = crate::aws::sdk_config(config.region.as_deref())
            .await
            .map_err(|e| StateError::Remote {
                action: "reach the state bucket".into(),
                source: Box::new(e),
            })?;
        let owner = bucket::account(&sdk).await?;
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
        let name = match bucket {
            Some(b) => b.clone(),
            None => bucket::default_name(&owner, &region),
        };
        let store = |region: Option<&str>| {
            S3Store::new(
                &sdk,
                region,
                name.clone(),
                prefix,
                &config.app,
                owner.clone(),
            )
        };
        let mut s3 = store(None);
        match bucket {
            Some(_) => {
                // A team's central bucket may live in another region than the app.
                if let Some(elsewhere) = bucket::check(s3.client(), &name, &owner).await? {
                    s3 = store(Some(&elsewhere));
                    if let Some(again) = bucket::check(s3.client(), &name, &owner).await? {
                        return Err(StateError::Bucket {
                            bucket: name,
                            detail: format!(
                                "S3 sent the deployer from {region} to {elsewhere}, then to {again}"
                            ),
                            source: None,
                        });
                    }
                }
            }
            None if create => bucket::ensure_default(s3.client(), &name, &owner, &region).await?,
            // A command that only reads: a missing default bucket is no state yet, and one
            // another account owns is refused like any other.
            None => {
                bucket::find(s3.client(), &name, &owner, true).await?;
            }
        }
        Ok(Store::S3(Arc::new(s3)))
    }

    pub async fn load(&self, app: &str, stage: &str) -> Result<StageState, StateError> {
        match self {
            Store::Local(dir) => StageState::load(dir, app, stage),
            Store::S3(s3) => s3.load(app, stage).await,
        }
    }

    /// What a preview stage reads of its base stage: in S3, the base's secret-free
    /// `base.json` (its state, for a base deployed before it existed); locally, its state.
    pub async fn load_base(&self, app: &str, stage: &str) -> Result<StageState, StateError> {
        match self {
            Store::Local(dir) => StageState::load(dir, app, stage),
            Store::S3(s3) => s3.load_base(app, stage).await,
        }
    }

    /// Writes the state (S3: fenced on the version last read or written).
    pub async fn save(&self, state: &StageState) -> Result<(), StateError> {
        match self {
            Store::Local(dir) => state.save(dir),
            Store::S3(s3) => s3.save(state).await,
        }
    }

    /// Takes the stage's lock, or says who holds it.
    pub async fn lock(&self, stage: &str, command: &str) -> Result<Held, StateError> {
        match self {
            Store::Local(dir) => Ok(Held::Local(StageLock::acquire(dir, stage, command)?)),
            Store::S3(s3) => Ok(Held::S3(s3.lock(stage, command).await?)),
        }
    }

    /// Removes the stage's lock; one whose holder is alive (a live lease) only with `force`.
    pub async fn unlock(&self, stage: &str, force: bool) -> Result<Unlocked, StateError> {
        match self {
            Store::Local(dir) => {
                let Some((holder, alive)) = StageLock::holder(dir, stage) else {
                    return Ok(Unlocked::NotLocked);
                };
                if alive && !force {
                    return Err(StateError::LiveLease {
                        stage: stage.to_owned(),
                        holder,
                    });
                }
                match StageLock::force_release(dir, stage) {
                    Ok(true) => Ok(Unlocked::Removed(holder)),
                    Ok(false) => Ok(Unlocked::NotLocked),
                    Err(source) => Err(StateError::Lock {
                        path: super::state_dir(dir).join(format!("{stage}.lock")),
                        source,
                    }),
                }
            }
            Store::S3(s3) => {
                let Some(seen) = s3.read_lock(stage).await? else {
                    return Ok(Unlocked::NotLocked);
                };
                if seen.live() && !force {
                    return Err(StateError::LiveLease {
                        stage: stage.to_owned(),
                        holder: seen.describe(),
                    });
                }
                if s3.delete_lock(stage, &seen).await? {
                    Ok(Unlocked::Removed(seen.describe()))
                } else {
                    Err(StateError::Locked {
                        stage: stage.to_owned(),
                        holder: "a run that renewed or took the lock while we read it".into(),
                    })
                }
            }
        }
    }

    /// Every stage of the app with a state, and that state.
    pub async fn stages(&self, app: &str) -> Result<Vec<StageState>, StateError> {
        match self {
            Store::Local(dir) => {
                let Ok(entries) = std::fs::read_dir(super::state_dir(dir)) else {
                    return Ok(Vec::new());
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".state.json")
                            .map(str::to_owned)
                    })
                    .collect();
                names.sort();
                names
                    .iter()
                    .map(|stage| StageState::load(dir, app, stage))
                    .collect()
            }
            Store::S3(s3) => s3.stages(app).await,
        }
    }

    /// Who holds the stage's lock, if anyone.
    pub async fn holder(&self, stage: &str) -> Result<Option<String>, StateError> {
        match self {
            Store::Local(dir) => Ok(StageLock::holder(dir, stage).map(|(h, _)| h)),
            Store::S3(s3) => Ok(s3.read_lock(stage).await?.map(|l| l.describe())),
        }
    }

    /// Where the stage's state is, for messages.
    pub fn location(&self, stage: &str) -> String {
        match self {
            Store::Local(dir) => super::state_dir(dir)
                .join(format!("{stage}.state.json"))
                .display()
                .to_string(),
            Store::S3(s3) => s3.url(stage),
        }
    }

    /// Project IDs recorded by any stage of the app: none of them is free to adopt.
    pub async fn claimed_project_ids(&self) -> Result<Vec<String>, StateError> {
        match self {
            Store::Local(dir) => Ok(StageState::claimed_project_ids(dir)),
            Store::S3(s3) => Ok(s3
                .stages("")
                .await?
                .into_iter()
                .flat_map(|s| s.resources.into_values())
                .filter_map(|r| r.project_id())
                .collect()),
        }
    }

    /// Forgets the stage (after `remove`).
    pub async fn forget(&self, stage: &str) -> Result<(), StateError> {
        match self {
            Store::Local(dir) => StageState::delete(dir, stage),
            Store::S3(s3) => s3.delete(stage).await,
        }
    }
}

impl Held {
    pub async fn release(self) {
        match self {
            Held::Local(lock) => drop(lock),
            Held::S3(lock) => lock.release().await,
        }
    }
}
