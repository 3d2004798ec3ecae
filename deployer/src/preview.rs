//! Preview stages (`branch_from`): infra.toml as such a stage deploys it, where each
//! declared project is the stage's own branch of the base stage's project, and each
//! declared branch a copy of the base's. The base's IDs come from its recorded state.

use std::collections::BTreeMap;

use crate::config::{BranchCopy, Config, Kind, Part, PreviewBranch, Spec, Template};
use crate::error::Failure;
use crate::neon::Neon;
use crate::neon::models::{BranchId, ProjectId};
use crate::state::{StageState, Store};

/// The annotation keys that mark a branch as an app's stage's (Neon's annotations are
/// free string pairs, `AnnotationValueData`).
pub const APP_KEY: &str = "deployer-app";
pub const STAGE_KEY: &str = "deployer-stage";

/// The name of a preview stage's branch.
pub fn branch_name(stage: &str) -> String {
    format!("preview/{stage}")
}

pub fn annotation(app: &str, stage: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_KEY.to_owned(), app.to_owned()),
        (STAGE_KEY.to_owned(), stage.to_owned()),
    ])
}

/// infra.toml as `stage` deploys it: itself, unless the stage branches from another, whose
/// state is read from `store`.
pub async fn config_for(
    config: &Config,
    store: &Store,
    stage: &str,
    own: &StageState,
) -> Result<Config, Failure> {
    let Some(preview) = config.preview(stage) else {
        return Ok(config.clone());
    };
    let base = store.load(&config.app, &preview.base).await?;
    for_stage(config, stage, own, &base)
}

/// [`config_for`], given the base stage's state.
pub fn for_stage(
    config: &Config,
    stage: &str,
    own: &StageState,
    base: &StageState,
) -> Result<Config, Failure> {
    let Some(preview) = config.preview(stage) else {
        return Ok(config.clone());
    };
    let base_stage = &preview.base;
    let annotation = annotation(&config.app, stage);
    let mut out = config.clone();
    for r in &mut out.resources {
        match &r.spec {
            Spec::Project { .. } => {
                if let Some(mine) = own.resources.get(&r.name)
                    && mine.kind == Kind::Project
                    && !crate::apply::is_preview(mine)
                {
                    return Err(Failure::bad_input(format!(
                        "stage `{stage}` has its own Neon project `{}` recorded, so it cannot branch from `{base_stage}`",
                        r.name
                    ))
                    .hint(format!(
                        "`deployer remove --stage {stage}` first, or give [stages.{stage}] its own table without branch_from"
                    )));
                }
                let recorded = base
                    .resources
                    .get(&r.name)
                    .filter(|b| b.kind == Kind::Project && !crate::apply::is_preview(b));
                let Some(recorded) = recorded.and_then(|b| {
                    let id = b.ids.get("project_id")?;
                    Some((b, id))
                }) else {
                    return Err(Failure::bad_input(format!(
                        "stage `{stage}` branches from `{base_stage}`, which has not deployed `{}`",
                        r.name
                    ))
                    .hint(format!(
                        "run `deployer deploy --stage {base_stage}` first (and use the same [state] backend)"
                    )));
                };
                let (b, id) = recorded;
                r.spec = Spec::PreviewBranch(PreviewBranch {
                    base_stage: base_stage.clone(),
                    project_id: id.clone(),
                    project_name: b.outputs.get("name").cloned().unwrap_or_default(),
                    default_branch_id: b.outputs.get("default_branch_id").cloned(),
                    name: branch_name(stage),
                    parent: preview.parent.clone(),
                    expires_in: preview.expires_in,
                    schema_only: preview.schema_only,
                    annotation: annotation.clone(),
                });
                r.import = None;
            }
            Spec::Branch {
                project,
                name,
                parent,
                ..
            } => {
                // The base's branch of this name, copied; or a new branch of the stage's.
                let of = base
                    .resources
                    .get(&r.name)
                    .filter(|b| b.kind == Kind::Branch)
                    .and_then(|b| b.ids.get("branch_id").cloned());
                let mut prefixed = vec![Part::Text(format!("{}/", branch_name(stage)))];
                prefixed.extend(name.0.iter().cloned());
                let parent = match (&of, parent) {
                    (None, None) => Some(project.clone()),
                    _ => parent.clone(),
                };
                r.spec = Spec::Branch {
                    project: project.clone(),
                    name: Template(prefixed),
                    parent,
                    copy: Some(BranchCopy {
                        of,
                        expires_in: preview.expires_in,
                        annotation: annotation.clone(),
                    }),
                };
                r.import = None;
            }
            // Imports name the base's roles, databases and endpoints: the stage has copies.
            Spec::Endpoint { .. } | Spec::Role { .. } | Spec::Database { .. } => r.import = None,
            Spec::PreviewBranch(_) | Spec::Link { .. } | Spec::Function { .. } => {}
        }
    }
    Ok(out)
}

/// A preview stage's branch that Neon deleted (it expired) takes what was on it along:
/// the records of the branch and of everything on it are dropped before planning, so the
/// deploy creates them again. Returns the branch's name when it was gone.
pub async fn forget_expired(neon: &Neon, state: &mut StageState) -> Result<Vec<String>, Failure> {
    let mut gone = Vec::new();
    let branches: Vec<(String, String, String)> = state
        .resources
        .iter()
        .filter(|(_, r)| {
            (r.kind == Kind::Project && crate::apply::is_preview(r))
                || (r.kind == Kind::Branch && r.inputs.get("copy_of").is_some())
        })
        .filter_map(|(name, r)| {
            Some((
                name.clone(),
                r.ids.get("project_id")?.clone(),
                r.ids.get("branch_id")?.clone(),
            ))
        })
        .collect();
    for (name, pid, bid) in branches {
        match neon
            .get_branch(&ProjectId(pid.clone()), &BranchId(bid.clone()))
            .await
        {
            Ok(_) => continue,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let on_it: Vec<String> = state
            .resources
            .iter()
            .filter(|(n, r)| **n == name || r.ids.get("branch_id") == Some(&bid))
            .map(|(n, _)| n.clone())
            .collect();
        for n in on_it {
            state.resources.remove(&n);
        }
        gone.push(name);
    }
    Ok(gone)
}
