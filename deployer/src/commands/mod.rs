//! The subcommands, one file each, and what they share: reading the stage, the environment
//! and infra.toml (all before any remote call), then the clients and the stage's state.

pub mod deploy;
pub mod dev;
pub mod diff;
pub mod logs;
pub mod migrate;
pub mod outputs;
pub mod pipeline;
pub mod prune;
pub mod refresh;
pub mod releases;
pub mod remove;
pub mod state;
pub mod unlock;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::aws::Aws;
use crate::cli::StageArgs;
use crate::config::{self, Config, Kind};
use crate::env::EnvSource;
use crate::error::Failure;
use crate::neon::{DEFAULT_API_HOST, Neon};
use crate::resources::Clients;
use crate::state::{StageState, Store};

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
pub fn resolve_stage(args: &StageArgs) -> Result<String, Failure> {
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
                return Err(Failure::bad_input(format!(
                    "no stage given, and the user name `{user}` cannot be a personal stage"
                ))
                .hint("pass --stage <name> or set DEPLOYER_STAGE"));
            }
            user
        }
    };
    if !config::valid_stage_name(&stage) {
        return Err(
            Failure::bad_input(format!("`{stage}` is not a valid stage name"))
                .hint("use lowercase letters, digits and `-`, starting with a letter (at most 24)"),
        );
    }
    Ok(stage)
}

/// Environment (process, .env, .env.<stage>) and the checked infra.toml.
pub fn load(config_path: &Path, stage: &str) -> Result<(EnvSource, Config), Failure> {
    load_with(config_path, stage, false)
}

/// [`load`], where `lenient` lets unset `${env.VAR}` read as empty (local runs).
pub fn load_with(
    config_path: &Path,
    stage: &str,
    lenient: bool,
) -> Result<(EnvSource, Config), Failure> {
    let dir = project_dir(config_path);
    let mut env = EnvSource::load(&dir, Some(stage))
        .map_err(|e| Failure::bad_input(e).hint("fix or remove that line"))?;
    env.lenient = lenient;
    let config = config::load(config_path, &env)?;
    Ok((env, config))
}

/// Where the stages' state lives, as `[state]` in infra.toml says; the default S3 bucket
/// is made if missing (commands that write).
pub async fn store(config: &Config) -> Result<Arc<Store>, Failure> {
    Ok(Arc::new(
        Store::open(config, &project_dir(&config.path), true).await?,
    ))
}

/// The same, for commands that only read: a default bucket not made yet holds no state.
pub async fn store_to_read(config: &Config) -> Result<Arc<Store>, Failure> {
    Ok(Arc::new(
        Store::open(config, &project_dir(&config.path), false).await?,
    ))
}

/// A stage a run holds: its store, the clients it needs, and its lock.
pub struct Locked {
    pub store: Arc<Store>,
    pub clients: Clients,
    pub held: crate::state::Held,
}

impl Locked {
    /// The store, then the clients for what the stage has (recorded and declared), then the
    /// lock for `command`. The state is read again once the lock is held.
    pub async fn take(
        config: &Config,
        env: &EnvSource,
        stage: &str,
        command: &str,
        with_aws: bool,
    ) -> Result<Locked, Failure> {
        let store = store(config).await?;
        let recorded = load_state(&store, config, stage).await?;
        let clients = clients(config, env, &recorded, with_aws).await?;
        let held = store.lock(stage, command).await?;
        Ok(Locked {
            store,
            clients,
            held,
        })
    }

    pub async fn release(self) {
        self.held.release().await;
    }
}

/// The functions the stage recorded: logical name -> Lambda name; none is bad input.
pub fn stage_functions(
    state: &StageState,
    stage: &str,
) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    let out: std::collections::BTreeMap<String, String> = state
        .resources
        .iter()
        .filter(|(_, rs)| rs.kind == Kind::Function)
        .filter_map(|(name, rs)| {
            let ids: crate::resources::function::Ids = rs.ids_as(name).ok()?;
            Some((name.clone(), ids.function_name))
        })
        .collect();
    if out.is_empty() {
        return Err(
            Failure::bad_input(format!("stage `{stage}` has no function deployed"))
                .hint(format!("deploy it first: deployer deploy --stage {stage}")),
        );
    }
    Ok(out)
}

/// The stage's recorded state.
pub async fn load_state(
    store: &Store,
    config: &Config,
    stage: &str,
) -> Result<StageState, Failure> {
    Ok(store.load(&config.app, stage).await?)
}

/// The stage as a run plans it: infra.toml as this stage deploys it (a preview stage's
/// projects are its own branches of the base stage's) and its recorded state. Given a
/// Neon client, a preview branch Neon deleted (it expired) is forgotten first, with what
/// was on it, so the run makes it again.
pub async fn stage_view(
    config: &Config,
    store: &Store,
    stage: &str,
    neon: Option<&Neon>,
) -> Result<(Config, StageState), Failure> {
    let mut state = load_state(store, config, stage).await?;
    if let (Some(neon), Some(_)) = (neon, config.preview(stage)) {
        for name in crate::resources::preview::forget_expired(neon, &mut state).await? {
            eprintln!(
                "note: the branch of {name} is gone (it expired, or was deleted in Neon); it is created again"
            );
        }
    }
    let Some(preview) = config.preview(stage) else {
        return Ok((config.clone(), state));
    };
    let base = store.load_base(&config.app, &preview.base).await?;
    let config = crate::preview::for_stage(config, stage, &state, &base)?;
    Ok((config, state))
}

/// Which services a stage touches: what infra.toml declares and what its state recorded.
fn needs(config: &Config, state: &StageState) -> (bool, bool) {
    let kinds = config
        .resources
        .iter()
        .map(|r| r.kind)
        .chain(state.resources.values().map(|r| r.kind));
    let (mut neon, mut aws) = (false, false);
    for k in kinds {
        neon |= k.is_neon();
        aws |= k == Kind::Function;
    }
    (neon, aws)
}

/// Clients for the services the stage needs (`with_aws = false`: Neon only, for `dev`).
pub async fn clients(
    config: &Config,
    env: &EnvSource,
    state: &StageState,
    with_aws: bool,
) -> Result<Clients, Failure> {
    let (needs_neon, needs_aws) = needs(config, state);
    let neon = match env.get("NEON_API_KEY") {
        Some(key) => Some(Neon::new(
            &env.get("NEON_API_HOST")
                .unwrap_or_else(|| DEFAULT_API_HOST.to_owned()),
            &key,
        )),
        None if needs_neon => {
            return Err(Failure::bad_input(
                "NEON_API_KEY is not set, and this stage has Neon resources",
            )
            .hint("create an API key in the Neon console and export NEON_API_KEY=... (or put it in .env); `deployer dev` works without one"));
        }
        None => None,
    };
    let aws = if needs_aws && with_aws {
        let aws = Aws::connect(config.region.as_deref())
            .await
            .map_err(Failure::bad_input)?;
        // A region from the environment (AWS_REGION, the profile) is known only now; one
        // without function URLs is refused before any call, as infra.toml's is when read.
        let wants_url = config
            .resources
            .iter()
            .find(|r| matches!(&r.spec, crate::config::Spec::Function(f) if f.url));
        if let (Some(function), Some(region)) = (wants_url, aws.region.as_deref())
            && !crate::aws::url::offered_in(region)
        {
            return Err(Failure::bad_input(format!(
                "function URLs are not offered in {region} (the AWS configuration's region), and [function.{}] has url = true",
                function.name
            ))
            .hint(crate::aws::url::NO_URLS_HINT));
        }
        Some(aws)
    } else {
        None
    };
    Ok(Clients { neon, aws })
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
