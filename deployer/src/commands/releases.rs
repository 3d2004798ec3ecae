//! `deployer releases` and `deployer rollback`: a stage's functions' releases (Lambda
//! versions the deployer published, each checked before it went out; `resources::version`)
//! and the alias `live` that serves one (`resources::alias`). Rollback points `live` at
//! another release with one `UpdateAlias`: no build, no upload, no Neon.

use std::collections::BTreeMap;
use std::path::Path;

use crate::aws::Aws;
use crate::cli::{ReleasesArgs, RollbackArgs};
use crate::error::Failure;
use crate::resources::{alias, version};
use crate::state::StageState;

async fn aws(config: &crate::config::Config) -> Result<Aws, Failure> {
    Aws::connect(config.region.as_deref())
        .await
        .map_err(Failure::bad_input)
}

pub async fn list(config_path: &Path, args: &ReleasesArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (_env, config) = super::load(config_path, &stage)?;
    let store = super::store_to_read(&config).await?;
    let state = super::load_state(&store, &config, &stage).await?;
    let functions = super::stage_functions(&state, &stage)?;
    let aws = aws(&config).await?;
    let mut all = BTreeMap::new();
    for (name, physical) in &functions {
        let live = alias::live_version(&aws.lambda, physical)
            .await
            .map_err(Failure::remote)?;
        let versions = version::list(&aws.lambda, physical)
            .await
            .map_err(Failure::remote)?;
        all.insert(name.clone(), version::releases(&versions, live.as_deref()));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("releases serialize")
        );
        return Ok(());
    }
    for (name, releases) in &all {
        println!("{name}:");
        if releases.is_empty() {
            println!("  no releases yet");
        }
        println!(
            "  {:<8} {:<29} {:<19} {:<12} {:<9} live",
            "version", "time", "commit", "code", "check"
        );
        for r in releases {
            println!(
                "  {:<8} {:<29} {:<19} {:<12} {:<9} {}",
                r.version,
                r.time,
                r.commit.as_deref().unwrap_or("-"),
                r.code_sha256.chars().take(10).collect::<String>(),
                r.check,
                if r.live { "live" } else { "" }
            );
        }
    }
    Ok(())
}

pub async fn rollback(config_path: &Path, args: &RollbackArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (_env, config) = super::load(config_path, &stage)?;
    let store = super::store(&config).await?;
    let held = store.lock(&stage, "rollback").await?;
    let result = rollback_locked(&config, &stage, &store, args).await;
    held.release().await;
    result
}

async fn rollback_locked(
    config: &crate::config::Config,
    stage: &str,
    store: &crate::state::Store,
    args: &RollbackArgs,
) -> Result<(), Failure> {
    let state = super::load_state(store, config, stage).await?;
    let functions = super::stage_functions(&state, stage)?;
    let aws = aws(config).await?;
    for (name, physical) in &functions {
        let Some(live) = alias::live_version(&aws.lambda, physical)
            .await
            .map_err(Failure::remote)?
        else {
            return Err(
                Failure::bad_input(format!("{name} has no release yet (no alias `live`)")).hint(
                    format!("deploy the stage first: deployer deploy --stage {stage}"),
                ),
            );
        };
        let versions = version::list(&aws.lambda, physical)
            .await
            .map_err(Failure::remote)?;
        let releases = version::releases(&versions, Some(&live));
        let live_n: u64 = live.parse().unwrap_or(0);
        let target = match &args.to {
            Some(v) => releases.iter().find(|r| &r.version == v).ok_or_else(|| {
                Failure::bad_input(format!("{name} has no release {v}"))
                    .hint("`deployer releases` lists them")
            })?,
            // The newest release before the live one that passed its check.
            None => releases
                .iter()
                .filter(|r| r.check == "passed" && r.version.parse::<u64>().unwrap_or(0) < live_n)
                .max_by_key(|r| r.version.parse::<u64>().unwrap_or(0))
                .ok_or_else(|| {
                    Failure::bad_input(format!(
                        "{name}: no release before version {live} to roll back to"
                    ))
                    .hint("`deployer releases` lists them; --to <version> picks one")
                })?,
        };
        if target.version == live {
            println!("{name}: version {live} is live already");
            continue;
        }
        alias::point(&aws.lambda, physical, &target.version)
            .await
            .map_err(Failure::remote)?;
        println!(
            "{name}: live is now version {} (release {}, {}), was {live}",
            target.version,
            target.commit.as_deref().unwrap_or("unknown"),
            target.time
        );
        let current = releases.iter().find(|r| r.version == live);
        for note in migrations_kept(
            current.map(|r| &r.migrations[..]),
            &target.migrations,
            &state,
        ) {
            println!("note: {note}");
        }
    }
    Ok(())
}

/// Migrations are not undone: for each set whose last migration at the release rolled
/// back from is past the one at the release rolled back to, the migrations that stay
/// applied (by file, from what the stage recorded of the set).
fn migrations_kept(from: Option<&[String]>, to: &[String], state: &StageState) -> Vec<String> {
    let parse = |list: &[String]| -> BTreeMap<String, i64> {
        list.iter()
            .filter_map(|m| {
                let (set, v) = m.split_once('=')?;
                Some((set.to_owned(), v.parse().ok()?))
            })
            .collect()
    };
    let (from, to) = (parse(from.unwrap_or_default()), parse(to));
    from.iter()
        .filter_map(|(set, v)| {
            let was = to.get(set).copied().unwrap_or(0);
            if *v <= was {
                return None;
            }
            let files: Vec<String> = state
                .resources
                .get(set)
                .and_then(|rs| rs.inputs.as_object())
                .map(|files| {
                    files
                        .keys()
                        .filter(|f| {
                            f.split('_')
                                .next()
                                .and_then(|n| n.parse::<i64>().ok())
                                .is_some_and(|n| n > was && n <= *v)
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let which = if files.is_empty() {
                format!("those after {was}, through {v}")
            } else {
                files.join(", ")
            };
            Some(format!(
                "{set}: migrations are not undone; {which} stay applied, and the release now live runs against that schema"
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rollback_says_which_migrations_stay_applied() {
        let from = vec!["MyAppProject/migrations=20260103000000".to_owned()];
        let to = vec!["MyAppProject/migrations=20260102000000".to_owned()];
        let mut state = crate::state::StageState::default();
        state.resources.insert(
            "MyAppProject/migrations".to_owned(),
            crate::state::ResourceState {
                kind: crate::config::Kind::Migrations,
                ids: Default::default(),
                inputs: serde_json::json!({
                    "20260102000000_add_author.sql": "a",
                    "20260103000000_index_author.sql": "b",
                }),
                outputs: Default::default(),
                imported: false,
            },
        );
        let notes = super::migrations_kept(Some(&from), &to, &state);
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("20260103000000_index_author.sql stay applied"),
            "{notes:?}"
        );
        assert!(!notes[0].contains("add_author"), "{notes:?}");
        assert!(super::migrations_kept(Some(&to), &to, &state).is_empty());
    }
}
