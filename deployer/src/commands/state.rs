//! `deployer state`: look at and repair what the deployer recorded. `list` and `pull` read;
//! `push`, `migrate` and `rm` write under the stage's lock (S3: fenced writes too).

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::cli::StateCommand;
use crate::config::{Config, StateBackend};
use crate::error::{Failure, because};
use crate::state::{StageState, StateError, Store};

pub async fn run(config_path: &Path, command: &StateCommand) -> Result<(), Failure> {
    match command {
        StateCommand::List => list(config_path).await,
        StateCommand::Pull { stage, out } => {
            let stage = super::resolve_stage(stage)?;
            let (_, config) = super::load(config_path, &stage)?;
            let store = super::store_to_read(&config).await?;
            let state = super::load_state(&store, &config, &stage).await?;
            let out = out
                .clone()
                .unwrap_or_else(|| format!("{stage}.state.json").into());
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&out)
                .and_then(|mut f| {
                    f.write_all(&serde_json::to_vec_pretty(&state).unwrap_or_default())
                });
            written.map_err(|source| {
                Failure::remote(StateError::Write {
                    path: out.clone(),
                    source,
                })
            })?;
            println!(
                "Wrote {} (stage `{stage}`, serial {}, {} resources).",
                out.display(),
                state.serial,
                state.resources.len()
            );
            Ok(())
        }
        StateCommand::Push { stage, file } => {
            let stage = super::resolve_stage(stage)?;
            let (_, config) = super::load(config_path, &stage)?;
            push(&config, &stage, file).await
        }
        StateCommand::Migrate { stage, to } => {
            let stage = super::resolve_stage(stage)?;
            let (_, config) = super::load(config_path, &stage)?;
            migrate(&config, &stage, to).await
        }
        StateCommand::Rm {
            stage,
            resource,
            yes,
        } => {
            let stage = super::resolve_stage(stage)?;
            let (_, config) = super::load(config_path, &stage)?;
            rm(&config, &stage, resource, *yes).await
        }
    }
}

async fn list(config_path: &Path) -> Result<(), Failure> {
    // No stage: `${env.VAR}` that only a stage's .env sets reads as empty here.
    let (_, config) = super::load_with(config_path, "default", true)?;
    let store = super::store_to_read(&config).await?;
    let stages = store.stages(&config.app).await?;
    if stages.is_empty() {
        println!("No stage of {} has a state.", config.app);
        return Ok(());
    }
    println!("Stages of {}:", config.app);
    for s in stages {
        let names: Vec<&str> = s.resources.keys().map(String::as_str).collect();
        println!(
            "  {:<16} serial {:<4} {} resource(s): {}",
            s.stage,
            s.serial,
            names.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// Runs `work` while holding the stage's lock in `store`.
async fn locked<T>(
    store: &Store,
    stage: &str,
    command: &str,
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let held = store.lock(stage, command).await?;
    let result = work.await;
    held.release().await;
    result
}

async fn push(config: &Config, stage: &str, file: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(file).map_err(|e| {
        Failure::bad_input(because(format!("cannot read `{}`", file.display()), e))
            .hint("give a file written by `deployer state pull`")
    })?;
    let mut pushed = crate::state::parse_state(&bytes, &file.display().to_string())?;
    if pushed.app != config.app || pushed.stage != stage {
        return Err(Failure::bad_input(format!(
            "`{}` is the state of stage `{}` of {}, not of stage `{stage}` of {}",
            file.display(),
            pushed.stage,
            pushed.app,
            config.app
        ))
        .hint("pass the --stage the file was pulled from"));
    }
    let store = super::store(config).await?;
    locked(&store, stage, "state push", async {
        let current = super::load_state(&store, config, stage).await?;
        if pushed.serial < current.serial {
            return Err(Failure::bad_input(format!(
                "`{}` has serial {}, older than the stage's state (serial {}): it would undo later deploys",
                file.display(),
                pushed.serial,
                current.serial
            ))
            .hint(format!("pull it again (`deployer state pull --stage {stage}`) and redo the change")));
        }
        pushed.serial = current.serial + 1;
        store.save(&pushed).await?;
        println!(
            "Pushed {} to {} (serial {}).",
            file.display(),
            store.location(stage),
            pushed.serial
        );
        Ok(())
    })
    .await
}

async fn migrate(config: &Config, stage: &str, to: &str) -> Result<(), Failure> {
    let StateBackend::S3 { .. } = &config.state else {
        return Err(Failure::bad_input(format!(
            "`state migrate --to {to}` moves state between .deployer/ and the S3 bucket that [state] names, and infra.toml has no backend = \"s3\""
        ))
        .hint(match to {
            "s3" => "add [state] backend = \"s3\" (and bucket/prefix if you like) to infra.toml first",
            _ => "put back the [state] backend = \"s3\" the state was in, migrate, then remove it",
        }));
    };
    let dir = super::project_dir(&config.path);
    let local = Store::open_backend(config, &dir, &StateBackend::Local, false).await?;
    let s3 = super::store(config).await?;
    let (from, into) = if to == "s3" {
        (&local, &*s3)
    } else {
        (&*s3, &local)
    };
    for store in [from, into] {
        if let Some(holder) = store.holder(stage).await? {
            return Err(StateError::Locked {
                stage: stage.to_owned(),
                holder,
            }
            .into());
        }
    }
    locked(from, stage, "state migrate", async {
        let state = from.load(&config.app, stage).await?;
        if state.resources.is_empty() && state.pending.is_empty() {
            return Err(Failure::bad_input(format!(
                "stage `{stage}` has no state at {}",
                from.location(stage)
            ))
            .hint("nothing to move"));
        }
        locked(into, stage, "state migrate", async {
            let existing = into.load(&config.app, stage).await?;
            if !existing.resources.is_empty() {
                return Err(Failure::bad_input(format!(
                    "{} already holds a state of stage `{stage}` ({} resources)",
                    into.location(stage),
                    existing.resources.len()
                ))
                .hint("nothing was moved; compare the two with `deployer state pull`, and remove the one you do not want"));
            }
            into.save(&state).await?;
            from.forget(stage).await?;
            println!(
                "Moved the state of stage `{stage}` ({} resources) from {} to {}.",
                state.resources.len(),
                from.location(stage),
                into.location(stage)
            );
            Ok(())
        })
        .await
    })
    .await
}

async fn rm(config: &Config, stage: &str, resource: &str, yes: bool) -> Result<(), Failure> {
    let store = super::store(config).await?;
    locked(&store, stage, "state rm", async {
        let mut state: StageState = super::load_state(&store, config, stage).await?;
        let Some(recorded) = state.resources.get(resource) else {
            let names: Vec<&str> = state.resources.keys().map(String::as_str).collect();
            return Err(Failure::bad_input(format!(
                "stage `{stage}` has no resource `{resource}`"
            ))
            .hint(format!("it has: {}", names.join(", "))));
        };
        println!(
            "Forget {resource} ({}) in stage `{stage}`? It stays as it is in Neon or AWS; the next deploy creates it again if infra.toml still declares it.",
            recorded.kind.label()
        );
        if !yes {
            if !std::io::stdin().is_terminal() {
                return Err(Failure::bad_input("refusing to forget a resource without confirmation")
                    .hint("pass --yes"));
            }
            print!("Forget? [y/N] ");
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                println!("Nothing forgotten.");
                return Ok(());
            }
        }
        state.resources.remove(resource);
        state.pending.remove(resource);
        state.serial += 1;
        store.save(&state).await?;
        println!("Forgot {resource}.");
        Ok(())
    })
    .await
}
