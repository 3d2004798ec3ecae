//! A migration set (`migrations = "<dir>"` on a project or a database), named
//! `<Database>/migrations`: its inputs are the folder's migrations (file name -> SHA-384),
//! so the plan lists each pending one as a field, and the state knows which were applied.
//! `converge` applies the pending ones over the database's direct host as its owner
//! (`crate::migrate`), one line each; a deleted set does nothing remote (its database goes
//! or stays by the removal policy).
//!
//! Refused before any call: an applied migration whose file changed or is missing, and, on
//! a protected stage, a pending one that drops or rewrites data unless `--allow-data-loss`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Recorded, Step, StepCause, Target};
use crate::config::{Config, MigrationsSpec, Spec, StagePolicy};
use crate::migrate::{self, Options, RunError, statements};
use crate::state::{ResourceState, StageState};

/// What a set records: the database it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ids {
    pub database: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    /// The last migration applied (its file); empty for an empty folder.
    #[serde(default)]
    pub last: String,
}

/// The applied migrations: file name -> SHA-384 (hex).
pub type Inputs = BTreeMap<String, String>;

/// Its inputs are listed on create as well: a new set's migrations are what it does.
pub const FIELDS_ON_CREATE: bool = true;

pub fn desired_inputs(spec: &MigrationsSpec) -> Value {
    Value::Object(
        spec.migrations
            .iter()
            .map(|m| (m.file.clone(), Value::String(m.checksum_hex())))
            .collect::<Map<_, _>>(),
    )
}

/// How `diff` shows a field: a migration to apply is "pending".
pub fn describe(old: &Value, _new: &Value) -> Option<String> {
    old.is_null().then(|| "pending".to_owned())
}

/// The version of a migration file (`20260101120000_create_users.sql`).
fn version(file: &str) -> Option<i64> {
    file.split_once('_')?.0.parse().ok()
}

/// Why a deploy is refused before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{set}: migration `{file}` was applied on stage `{stage}`, and the file has changed since (its checksum differs)"
    )]
    Edited {
        set: String,
        stage: String,
        file: String,
    },
    #[error(
        "{set}: migration `{file}` was applied on stage `{stage}`, and its file is missing from {dir}"
    )]
    Missing {
        set: String,
        stage: String,
        file: String,
        dir: String,
    },
    #[error(
        "stage `{stage}` is protected, and pending migrations drop or rewrite data:\n{}",
        found.join("\n")
    )]
    DataLoss { stage: String, found: Vec<String> },
}

impl Refusal {
    pub fn hint(&self) -> &'static str {
        match self {
            Refusal::Edited { .. } => {
                "an applied migration never changes: restore the file (git checkout) and put the change in a new migration"
            }
            Refusal::Missing { .. } => {
                "restore the file, or pass --allow-missing to leave applied migrations that have no file alone (sqlx's --ignore-missing)"
            }
            Refusal::DataLoss { .. } => {
                "review the statements; pass --allow-data-loss if losing that data is intended (expand first, contract in a later deploy: docs/migrations.md)"
            }
        }
    }
}

/// Checks every declared set against what the stage recorded, before any call: applied
/// migrations unchanged and present; on a protected stage, pending ones that keep data.
pub fn check(
    config: &Config,
    state: &StageState,
    policy: StagePolicy,
    allow_data_loss: bool,
    allow_missing: bool,
) -> Result<(), Refusal> {
    let mut losses = Vec::new();
    for r in &config.resources {
        let Spec::Migrations(spec) = &r.spec else {
            continue;
        };
        let recorded: Inputs = state
            .resources
            .get(&r.name)
            .and_then(|rs| rs.inputs_as(&r.name).ok())
            .unwrap_or_default();
        for (file, checksum) in &recorded {
            let local = spec
                .migrations
                .iter()
                .find(|m| Some(m.version) == version(file));
            match local {
                Some(m) if &m.checksum_hex() != checksum => {
                    return Err(Refusal::Edited {
                        set: r.name.clone(),
                        stage: state.stage.clone(),
                        file: m.file.clone(),
                    });
                }
                Some(_) => {}
                None if allow_missing => {}
                None => {
                    return Err(Refusal::Missing {
                        set: r.name.clone(),
                        stage: state.stage.clone(),
                        file: file.clone(),
                        dir: spec.dir.clone(),
                    });
                }
            }
        }
        if !policy.protect || allow_data_loss {
            continue;
        }
        let applied: Vec<i64> = recorded.keys().filter_map(|f| version(f)).collect();
        for m in spec
            .migrations
            .iter()
            .filter(|m| !applied.contains(&m.version))
        {
            for s in statements::split(&m.sql) {
                match statements::risk(s.text) {
                    Some(statements::Risk::LosesData(what)) => {
                        losses.push(format!("  {}/{}:{}: {what}", spec.dir, m.file, s.line));
                    }
                    Some(statements::Risk::Unreadable(why)) => losses.push(format!(
                        "  {}/{}:{}: cannot be read to tell ({why})",
                        spec.dir, m.file, s.line
                    )),
                    None => {}
                }
            }
        }
    }
    if losses.is_empty() {
        Ok(())
    } else {
        Err(Refusal::DataLoss {
            stage: state.stage.clone(),
            found: losses,
        })
    }
}

/// Applies the set's pending migrations on its database, over the direct host.
pub async fn converge(
    step: &Step<'_>,
    target: Target<'_>,
    spec: &MigrationsSpec,
) -> Result<Recorded, StepCause> {
    // The direct URI, whatever a link uses: both kinds that carry migrations record it as
    // `connection_uri` (the pooled one is `connection_uri_pooler`).
    let uri = migrate::direct_uri(&step.output(&spec.database, "connection_uri")?);
    let opts = Options {
        lock_timeout: spec.lock_timeout,
        allow_missing: step.allow_missing,
        ..Options::default()
    };
    let outcome = apply(&uri, spec, &opts, target.resource.name.as_str()).await?;
    let last = outcome
        .applied
        .last()
        .map(|a| a.file.clone())
        .or_else(|| spec.migrations.last().map(|m| m.file.clone()))
        .unwrap_or_default();
    Ok(Recorded::typed(
        &Ids {
            database: spec.database.clone(),
        },
        &Outputs { last },
    ))
}

/// Connects and runs the set, printing one line per migration applied (`dry_run`: per
/// migration pending).
pub async fn apply(
    uri: &str,
    spec: &MigrationsSpec,
    opts: &Options,
    name: &str,
) -> Result<migrate::Outcome, RunError> {
    let client = migrate::runner::connect(uri).await?;
    migrate::runner::run(&client, &spec.migrations, opts, |a| {
        if opts.dry_run {
            println!("{:<9} {name} {}", "Pending", a.file);
        } else {
            crate::output::step("Migrated", name, &a.file, a.took);
        }
    })
    .await
}

/// A set leaving the stage undoes nothing: its database goes or stays by the removal
/// policy, and its schema with it.
pub fn delete(_rs: &ResourceState) {}
