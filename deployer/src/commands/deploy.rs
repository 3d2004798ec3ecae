//! `deployer deploy`: plan, refuse what protection forbids, apply, print outputs.

use std::path::Path;

use crate::apply::Applier;
use crate::cli::DeployArgs;
use crate::error::Failure;
use crate::plan::{self, Scope};
use crate::state::Recorder;

pub async fn run(config_path: &Path, args: &DeployArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    let dir = super::project_dir(config_path);
    let locked = super::Locked::take(&config, &env, &stage, "deploy", true).await?;
    let result = deploy_locked(&config, &stage, &dir, &locked, args).await;
    locked.release().await;
    result
}

/// The deploy, while this run holds the stage's lock.
async fn deploy_locked(
    config: &crate::config::Config,
    stage: &str,
    dir: &Path,
    locked: &super::Locked,
    args: &DeployArgs,
) -> Result<(), Failure> {
    let (store, clients) = (&locked.store, &locked.clients);
    // Another run may have finished while we waited for the lock: read the state again.
    let (config, state) = &super::stage_view(config, store, stage, clients.neon.as_ref()).await?;
    let policy = config.policy(stage);
    let plan = plan::plan(config, state, policy, Scope::All);
    plan.check_protection(policy, args.allow_data_loss)
        .map_err(|e| {
            let hint = e.hint();
            Failure::bad_input(e).hint(hint)
        })?;
    check_prebuilt_code(config, &plan)?;
    check_known_environments(config, state)?;
    eprintln!("Deploying {} to stage `{stage}`", config.app);
    for note in config.pooler_notes() {
        eprintln!("note: {note}");
    }
    if let Some(preview) = config.preview(stage) {
        eprintln!(
            "Stage `{stage}` branches from `{}`: its database is branch {} of that stage's project",
            preview.base,
            crate::preview::branch_name(stage)
        );
    }
    let recorder = Recorder::new(state.clone(), store.clone(), &locked.held);
    let applier = Applier {
        config,
        stage,
        project_dir: dir,
        clients,
        concurrency: usize::from(args.concurrency),
    };
    let result = applier.run(&plan, &recorder).await;
    if let Some(neon) = &clients.neon {
        let (calls, mutating) = neon.call_counts();
        tracing::info!(calls, mutating, "Neon API calls");
    }
    let changed = result?;
    if changed == 0 {
        println!("No changes.");
    }
    super::print_outputs(&recorder.into_state(), false);
    Ok(())
}

/// Prebuilt code (`DEPLOYER_ARTIFACT_DIR`) costs nothing to check, so it is checked before
/// anything is created: the wrong architecture or a zip too large is bad input (exit 2)
/// with no call to Neon or AWS. Code cargo-lambda builds is checked in its step.
fn check_prebuilt_code(config: &crate::config::Config, plan: &plan::Plan) -> Result<(), Failure> {
    use crate::config::{FunctionSpec, Kind, Spec};
    use crate::plan::Action;
    if std::env::var_os("DEPLOYER_ARTIFACT_DIR").is_none() {
        return Ok(());
    }
    for change in &plan.changes {
        if change.kind != Kind::Function || matches!(change.action, Action::Delete | Action::Retain)
        {
            continue;
        }
        let Some(Spec::Function(FunctionSpec { package, arm64, .. })) =
            config.resource(&change.resource).map(|r| &r.spec)
        else {
            continue;
        };
        // Whatever is wrong with it, the prebuilt folder is the user's input.
        if let Err(e) = crate::build::check_prebuilt(package, *arm64) {
            let hint = e.hint().unwrap_or_else(|| {
                "DEPLOYER_ARTIFACT_DIR must hold <package>/bootstrap or <package>/bootstrap.zip"
                    .to_owned()
            });
            return Err(Failure::bad_input(e).hint(hint));
        }
    }
    Ok(())
}

/// A function whose environment is already known (literal values, or outputs recorded by
/// an earlier deploy) is measured against Lambda's 4 KB before anything starts; one that
/// waits on outputs this deploy creates is measured in its step, before its AWS calls.
fn check_known_environments(
    config: &crate::config::Config,
    state: &crate::state::StageState,
) -> Result<(), Failure> {
    use crate::resources::StepCause;
    use crate::resources::function::{
        LAMBDA_ENV_LIMIT_BYTES, environment_size, known_environments,
    };
    for (function, env) in known_environments(config, state) {
        let Some(env) = env else {
            continue;
        };
        let size = environment_size(&env);
        if size > LAMBDA_ENV_LIMIT_BYTES {
            return Err(
                Failure::bad_input(StepCause::EnvTooLarge { function, size })
                    .hint("link fewer properties, or shorten the environment values"),
            );
        }
    }
    Ok(())
}
