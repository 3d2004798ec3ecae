//! `deployer deploy`: plan, refuse what protection forbids, apply, print outputs.

use std::path::Path;

use super::pipeline::{Applied, Pipeline, Review};
use crate::cli::DeployArgs;
use crate::config::Config;
use crate::error::Failure;
use crate::plan::{self, Plan, Scope};
use crate::state::{StageState, Store};

pub async fn run(config_path: &Path, args: &DeployArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    let pipeline = Pipeline {
        command: "deploy",
        with_aws: true,
        scope: Scope::All,
        remove: false,
        allow_data_loss: args.allow_data_loss,
        allow_missing: args.allow_missing,
        concurrency: usize::from(args.concurrency),
    };
    let review = |config: &Config, state: &StageState, plan: &Plan| {
        check_url_moves(config, plan, &stage, args.allow_url_change)?;
        check_prebuilt_code(config, plan)?;
        check_known_environments(config, state)?;
        eprintln!("Deploying {} to stage `{stage}`", config.app);
        for note in config.pooler_notes() {
            eprintln!("note: {note}");
        }
        if let Some(preview) = config.preview(&stage) {
            eprintln!(
                "Stage `{stage}` branches from `{}`: its database is branch {} of that stage's project",
                preview.base,
                crate::preview::branch_name(&stage)
            );
        }
        Ok(Review::Apply)
    };
    let finish = async |_: &Store, applied: &Applied| {
        if applied.changed == 0 {
            println!("No changes.");
        }
        super::print_outputs(&applied.state, false);
        Ok(())
    };
    pipeline.run(&config, &env, &stage, review, finish).await?;
    Ok(())
}

/// A function URL made before releases is the function's own; releases need it on the
/// alias `live`, a new hostname. On a protected stage that needs `--allow-url-change`:
/// whoever calls the old URL must move.
fn check_url_moves(
    config: &Config,
    plan: &Plan,
    stage: &str,
    allowed: bool,
) -> Result<(), Failure> {
    if !config.policy(stage).protect || allowed {
        return Ok(());
    }
    let moving: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| {
            c.fields.iter().any(|f| {
                f.field == "url_on" && f.old.as_ref().is_some_and(serde_json::Value::is_null)
            })
        })
        .map(|c| c.resource.as_str())
        .collect();
    if moving.is_empty() {
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "stage `{stage}` is protected, and the URL of {} moves to the alias `live`: its hostname changes",
        moving.join(", ")
    ))
    .hint("pass --allow-url-change once clients of the old URL can move to the new one (`deployer outputs` shows it after the deploy); the old URL is removed only after the new one answers"))
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
        let via_s3 = matches!(config.state, crate::config::StateBackend::S3 { .. });
        if let Err(e) = crate::build::check_prebuilt(package, *arm64, via_s3) {
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
