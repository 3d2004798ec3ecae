//! The subcommands, one file each, and what they share: reading the stage, the environment
//! and infra.toml (all before any remote call), then the clients.

pub mod deploy;
pub mod dev;
pub mod diff;
pub mod outputs;
pub mod remove;
pub mod unlock;

use std::path::{Path, PathBuf};

use crate::aws::Aws;
use crate::cli::StageArgs;
use crate::config::{self, Config, Kind};
use crate::engine::Deployer;
use crate::env::EnvSource;
use crate::error::CliError;
use crate::neon::{DEFAULT_API_HOST, Neon};
use crate::state::StageState;

/// Stage names that are shared by a team: never picked implicitly from the user name.
const SHARED_STAGES: &[&str] = &["prod", "production", "staging", "stage", "main", "default"];

/// The folder of infra.toml (where `.env` and `.deployer/` live).
pub fn project_dir(config: &Path) -> PathBuf {
    match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `--stage`, else `DEPLOYER_STAGE` (clap reads it), else the user name.
pub fn resolve_stage(args: &StageArgs) -> Result<String, CliError> {
    let stage = match &args.stage {
        Some(s) => s.clone(),
        None => {
            let user = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_default();
            let user: String = user
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            if user.is_empty() || user == "root" || SHARED_STAGES.contains(&user.as_str()) {
                return Err(CliError::bad_input(
                    format!(
                        "no stage given, and the user name `{user}` cannot be a personal stage"
                    ),
                    Some("pass --stage <name> or set DEPLOYER_STAGE".into()),
                ));
            }
            user
        }
    };
    if !config::valid_stage_name(&stage) {
        return Err(CliError::bad_input(
            format!("`{stage}` is not a valid stage name"),
            Some(
                "use lowercase letters, digits and `-`, starting with a letter (at most 24)".into(),
            ),
        ));
    }
    Ok(stage)
}

/// Environment (process, .env, .env.<stage>) and the checked infra.toml.
pub fn load(config_path: &Path, stage: &str) -> Result<(EnvSource, Config), CliError> {
    load_with(config_path, stage, false)
}

/// [`load`], where `lenient` lets unset `${env.VAR}` read as empty (local runs).
pub fn load_with(
    config_path: &Path,
    stage: &str,
    lenient: bool,
) -> Result<(EnvSource, Config), CliError> {
    let dir = project_dir(config_path);
    let mut env = EnvSource::load(&dir, Some(stage))
        .map_err(|e| CliError::bad_input(e.to_string(), Some("fix or remove that line".into())))?;
    env.lenient = lenient;
    let config =
        config::load(config_path, &env).map_err(|e| CliError::bad_input(e.to_string(), None))?;
    Ok((env, config))
}

/// The engine for a stage, with clients for the services its resources need.
pub async fn deployer<'a>(
    config: &'a Config,
    env: &EnvSource,
    stage: &str,
) -> Result<Deployer<'a>, CliError> {
    let dir = project_dir(&config.path);
    let state = StageState::load(&dir, &config.app, stage).map_err(CliError::from_state)?;
    let kinds = config
        .resources
        .iter()
        .map(|r| r.kind)
        .chain(state.resources.values().map(|r| r.kind));
    let (mut needs_neon, mut needs_aws) = (false, false);
    for k in kinds {
        needs_neon |= k.is_neon();
        needs_aws |= k == Kind::Function;
    }
    let neon = match env.get("NEON_API_KEY") {
        Some(key) => Some(Neon::new(
            &env.get("NEON_API_HOST")
                .unwrap_or_else(|| DEFAULT_API_HOST.to_owned()),
            &key,
        )),
        None if needs_neon => {
            return Err(CliError::bad_input(
                "NEON_API_KEY is not set, and this stage has Neon resources".into(),
                Some("create an API key in the Neon console and export NEON_API_KEY=... (or put it in .env); `deployer dev` works without one".into()),
            ));
        }
        None => None,
    };
    let aws = if needs_aws {
        Some(
            Aws::connect(config.region.as_deref())
                .await
                .map_err(|m| CliError::bad_input(m, None))?,
        )
    } else {
        None
    };
    Ok(Deployer {
        config,
        stage: stage.to_owned(),
        project_dir: dir,
        policy: config.policy(stage),
        state,
        neon,
        aws,
    })
}

/// Prints outputs, secrets masked unless `reveal`.
pub fn print_outputs(state: &StageState, reveal: bool) {
    let mut any = false;
    for (name, r) in &state.resources {
        for (key, value) in &r.outputs {
            if value.is_empty() {
                continue;
            }
            if !any {
                println!("Outputs:");
                any = true;
            }
            let shown = if r.kind.is_secret(key) && !reveal {
                crate::output::mask(value)
            } else {
                value.clone()
            };
            println!("  {name}.{key} = {shown}");
        }
    }
}
