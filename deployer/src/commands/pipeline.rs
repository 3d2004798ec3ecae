//! The one pipeline of every command that changes a stage (`deploy`, `remove`, `dev`):
//! take the stage (its lock), view it, plan, check protection, let the command review the
//! plan, apply, and finish, all while the lock is held. Each command says only what
//! differs ([`Pipeline`]).

use std::path::Path;

use crate::apply::Applier;
use crate::config::Config;
use crate::env::EnvSource;
use crate::error::Failure;
use crate::plan::{self, Plan, Scope};
use crate::state::{Recorder, StageState, Store};

/// What one command does differently.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    /// What the lock says the holder is doing (`deploy`, `remove`, `dev`).
    pub command: &'static str,
    /// Whether the run needs AWS clients (`dev` provisions Neon only).
    pub with_aws: bool,
    /// What the plan covers.
    pub scope: Scope,
    /// Plan the stage's removal: an empty infra.toml against the state as recorded.
    pub remove: bool,
    /// `--allow-data-loss`: a protected stage may delete or replace Neon resources.
    pub allow_data_loss: bool,
    /// `--allow-missing`: applied migrations with no file are left alone.
    pub allow_missing: bool,
    /// Steps run at once.
    pub concurrency: usize,
}

/// What the command decides once it has seen the plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Review {
    Apply,
    /// Stop without changing anything (the user said no, or there is nothing to do).
    Stop,
}

/// A plan carried out: the state afterwards and how many resources changed.
#[derive(Debug)]
pub struct Applied {
    pub state: StageState,
    pub changed: usize,
}

impl Pipeline {
    /// Runs the pipeline on `stage`. `review` sees the stage as planned (its config, state
    /// and plan) before anything changes; `finish` runs after the apply, still under the
    /// lock. `None`: the review stopped it.
    pub async fn run(
        &self,
        config: &Config,
        env: &EnvSource,
        stage: &str,
        review: impl FnOnce(&Config, &StageState, &Plan) -> Result<Review, Failure>,
        finish: impl AsyncFnOnce(&Store, &Applied) -> Result<(), Failure>,
    ) -> Result<Option<Applied>, Failure> {
        let locked = super::Locked::take(config, env, stage, self.command, self.with_aws).await?;
        let result = self
            .run_locked(config, stage, &locked, review, finish)
            .await;
        locked.release().await;
        result
    }

    async fn run_locked(
        &self,
        config: &Config,
        stage: &str,
        locked: &super::Locked,
        review: impl FnOnce(&Config, &StageState, &Plan) -> Result<Review, Failure>,
        finish: impl AsyncFnOnce(&Store, &Applied) -> Result<(), Failure>,
    ) -> Result<Option<Applied>, Failure> {
        let (store, clients) = (&locked.store, &locked.clients);
        // Another run may have finished while we waited for the lock: the state is read
        // again now that it is held.
        let (config, state) = if self.remove {
            let mut empty = config.clone();
            empty.resources.clear();
            (empty, super::load_state(store, config, stage).await?)
        } else {
            super::stage_view(config, store, stage, clients.neon.as_ref()).await?
        };
        let policy = config.policy(stage);
        let plan = plan::plan(&config, &state, policy, self.scope);
        plan.check_protection(policy, self.allow_data_loss)
            .map_err(|e| {
                let hint = e.hint();
                Failure::bad_input(e).hint(hint)
            })?;
        crate::resources::migrations::check(
            &config,
            &state,
            policy,
            self.allow_data_loss,
            self.allow_missing,
        )
        .map_err(|e| {
            let hint = e.hint();
            Failure::bad_input(e).hint(hint)
        })?;
        if review(&config, &state, &plan)? == Review::Stop {
            return Ok(None);
        }
        let recorder = Recorder::new(state, store.clone(), &locked.held);
        let dir = super::project_dir(&config.path);
        let applier = Applier {
            config: &config,
            stage,
            project_dir: Path::new(&dir),
            clients,
            concurrency: self.concurrency,
            allow_missing: self.allow_missing,
        };
        let result = applier.run(&plan, &recorder).await;
        if let Some(neon) = &clients.neon {
            let (calls, mutating) = neon.call_counts();
            tracing::info!(calls, mutating, "Neon API calls");
        }
        let applied = Applied {
            changed: result?,
            state: recorder.into_state(),
        };
        finish(store, &applied).await?;
        Ok(Some(applied))
    }
}
