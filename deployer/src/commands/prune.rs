//! `deployer prune`: the cleanup that per-pull-request removal sometimes misses. Finds the
//! app's preview stages (from the recorded states) and preview branches (from Neon's branch
//! lists, by our annotation), and removes those whose branch expired, is gone, or is older
//! than `--older-than`: a recorded stage through `remove` (its function and branches), a
//! branch no stage records by deleting it. Lists first and asks unless `--yes`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::cli::PruneArgs;
use crate::config::{Kind, parse_duration};
use crate::error::Failure;
use crate::neon::Neon;
use crate::neon::models::{BranchId, ProjectId};
use crate::output::{now_unix, parse_rfc3339};
use crate::preview::{APP_KEY, STAGE_KEY};
use crate::resources::Place;
use crate::resources::preview::{self, delete_branch as delete_preview_branch};

/// One thing to prune.
struct Candidate {
    stage: String,
    project: ProjectId,
    branch: BranchId,
    branch_name: String,
    /// Whether a stage's state records it (removed with `remove`) or not (branch only).
    recorded: bool,
    why: String,
}

pub async fn run(config_path: &Path, args: &PruneArgs) -> Result<(), Failure> {
    let older_than = match &args.older_than {
        None => None,
        Some(text) => Some(parse_duration(text).ok_or_else(|| {
            Failure::bad_input(format!("--older-than {text} is not a duration"))
                .hint("write a whole number and m, h or d, e.g. --older-than 7d")
        })?),
    };
    for keep in &args.keep {
        if !crate::config::valid_stage_name(keep) {
            return Err(
                Failure::bad_input(format!("--keep {keep} is not a stage name"))
                    .hint("use lowercase letters, digits and `-`, starting with a letter"),
            );
        }
    }
    // The environment of no stage in particular: NEON_API_KEY and the [state] settings.
    let (env, config) = super::load(config_path, "prune")?;
    let Some(key) = env.get("NEON_API_KEY") else {
        return Err(Failure::bad_input(
            "NEON_API_KEY is not set; prune reads the branches from Neon",
        )
        .hint("export NEON_API_KEY=... (or put it in .env)"));
    };
    let neon = Neon::new(
        &env.get("NEON_API_HOST")
            .unwrap_or_else(|| crate::neon::DEFAULT_API_HOST.to_owned()),
        &key,
    );
    let store = super::store_to_read(&config).await?;
    let stages = store.stages(&config.app).await?;

    let now = now_unix() as i64;
    let limit = older_than.map(|secs| now - secs as i64);
    let judge = |created_at: &str, expires_at: Option<&str>| -> Option<String> {
        if let Some(at) = expires_at.and_then(parse_rfc3339)
            && at <= now
        {
            return Some(format!("expired at {}", expires_at.unwrap_or_default()));
        }
        match (limit, parse_rfc3339(created_at)) {
            (Some(limit), Some(created)) if created < limit => {
                Some(format!("created {created_at}"))
            }
            _ => None,
        }
    };

    // Every project any stage records: where the app's preview branches live.
    let mut projects: BTreeSet<String> = BTreeSet::new();
    // Preview branches the states record, by branch ID: (stage, project).
    let mut recorded: BTreeMap<String, (String, String)> = BTreeMap::new();
    for state in &stages {
        for (name, rs) in &state.resources {
            match rs.kind {
                Kind::Project => {
                    if let Some(pid) = Place::of(rs).project_id {
                        projects.insert(pid.0);
                    }
                }
                Kind::Preview => {
                    if let Ok(ids) = preview::ids(name, rs) {
                        projects.insert(ids.project_id.0.clone());
                        recorded.insert(ids.branch_id.0, (state.stage.clone(), ids.project_id.0));
                    }
                }
                _ => {}
            }
        }
    }

    let mut candidates = Vec::new();
    let mut seen = BTreeSet::new();
    for pid in &projects {
        let pid = ProjectId(pid.clone());
        let (branches, annotations) = match neon.list_annotated_branches(&pid).await {
            Ok(found) => found,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        for b in branches {
            let ours = annotations.get(&b.id.0).and_then(|a| {
                (a.value.get(APP_KEY) == Some(&config.app))
                    .then(|| a.value.get(STAGE_KEY).cloned())
                    .flatten()
            });
            let record = recorded.get(&b.id.0);
            let stage = match (record, ours) {
                (Some((stage, _)), _) => stage.clone(),
                (None, Some(stage)) => stage,
                (None, None) => continue,
            };
            seen.insert(b.id.0.clone());
            if b.default || b.protected {
                continue;
            }
            if let Some(why) = judge(&b.created_at, b.expires_at.as_deref()) {
                // A copy of a declared branch goes with its stage when the stage is recorded.
                let recorded_stage = stages.iter().any(|s| s.stage == stage);
                candidates.push(Candidate {
                    stage,
                    project: pid.clone(),
                    branch: b.id,
                    branch_name: b.name,
                    recorded: recorded_stage,
                    why,
                });
            }
        }
    }
    // Recorded preview stages whose branch is gone: Neon deleted it when it expired.
    for (bid, (stage, pid)) in &recorded {
        if !seen.contains(bid) {
            candidates.push(Candidate {
                stage: stage.clone(),
                project: ProjectId(pid.clone()),
                branch: BranchId(bid.clone()),
                branch_name: crate::preview::branch_name(stage),
                recorded: true,
                why: "its branch is gone (expired)".to_owned(),
            });
        }
    }
    candidates.retain(|c| {
        let keep = args.keep.contains(&c.stage) || config.policy(&c.stage).protect;
        if keep {
            println!("keeping {} (--keep or protected)", c.stage);
        }
        !keep
    });
    if candidates.is_empty() {
        println!("Nothing to prune.");
        return Ok(());
    }
    println!("Pruning preview stages of {}:", config.app);
    for c in &candidates {
        let what = if c.recorded {
            "stage and branch"
        } else {
            "branch (no stage records it)"
        };
        println!(
            "  {:<16} {what} {} ({}): {}",
            c.stage, c.branch_name, c.branch, c.why
        );
    }
    if !args.yes && !confirm()? {
        println!("Nothing pruned.");
        return Ok(());
    }

    let mut failures = Vec::new();
    let mut removed_stages = BTreeSet::new();
    for c in &candidates {
        let result = if c.recorded {
            if !removed_stages.insert(c.stage.clone()) {
                continue;
            }
            let (env, config) = super::load(config_path, &c.stage)?;
            super::remove::remove_stage(&config, &env, &c.stage, true).await
        } else {
            delete_preview_branch(&neon, &c.project, &c.branch)
                .await
                .map(|()| println!("Deleted   branch {} ({})", c.branch_name, c.branch))
                .map_err(|e| Failure::remote(e.to_string()))
        };
        if let Err(e) = result {
            failures.push(e);
        }
    }
    match Failure::many(failures) {
        None => Ok(()),
        Some(f) => Err(f),
    }
}

/// Asks on a terminal; elsewhere refuses (exit 2) without `--yes`.
fn confirm() -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::bad_input("refusing to prune without confirmation").hint("pass --yes"));
    }
    print!("Prune? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
