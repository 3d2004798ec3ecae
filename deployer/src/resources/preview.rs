//! A preview stage's own branch of its base stage's project (`branch_from`): created with
//! a read-write endpoint, an annotation naming the app and stage, and an expiry pushed
//! forward on every deploy; adopted by name (and annotation) on a rerun; deleted alone on
//! `remove`, never the project, its default branch or a protected branch.
//!
//! Neon's API, as its OpenAPI spec describes `createProjectBranch`: `branch.parent_id`,
//! `parent_lsn`, `parent_timestamp`, `init_source: "schema-only"` and `expires_at`, a
//! top-level `endpoints` and `annotation_value`; `listProjectBranches` answers the
//! annotations beside the branches, by branch ID.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Live, Recorded, Step, StepCause, Target};
use crate::config::{Kind, ParentRef, PreviewBranch};
use crate::neon::models::{Annotation, Branch, BranchId, EndpointType, ProjectId};
use crate::neon::{
    BranchCreateRequest, BranchUpdate, Neon, NeonError, NewBranch, NewBranchEndpoint,
};
use crate::retry::{self, Policy, Verdict};
use crate::state::{ResourceState, StageState};

/// What a preview stage's branch records as its IDs: the base stage's project and its own
/// branch, as a branch records them. Its outputs are a project's
/// ([`super::project::Outputs`]).
pub type Ids = super::branch::Ids;

/// The input naming the stage it branches from (state version 1 told previews by it).
pub const BASE_STAGE_INPUT: &str = "branch_from";

/// Made again when where it starts changes.
pub const REPLACED_BY: &[&str] = &[BASE_STAGE_INPUT, "project_id", "parent", "schema_only"];

pub fn desired_inputs(p: &PreviewBranch) -> Value {
    json!({
        BASE_STAGE_INPUT: p.base_stage,
        "project_id": p.project_id,
        "name": p.name,
        "parent": p.parent.as_written(),
        "schema_only": p.schema_only,
        "expires_in": p.expires_in,
    })
}

/// Its expiry moves forward on every deploy.
pub fn outputs_to_compute(
    p: &PreviewBranch,
    recorded: &ResourceState,
) -> Vec<(&'static str, Option<Value>)> {
    if p.expires_in.is_none() {
        return Vec::new();
    }
    vec![(
        "expires_at",
        recorded.outputs.get("expires_at").map(|e| json!(e)),
    )]
}

/// The branch's IDs, for the commands that look after previews (`prune`, expiry).
pub fn ids(name: &str, rs: &ResourceState) -> Result<Ids, crate::state::StateError> {
    rs.ids_as(name)
}

/// Whether the branch is still there (Neon deletes an expired one): read as any branch.
pub async fn read(neon: &Neon, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    super::branch::read(neon, name, rs).await
}

/// `expires_in` seconds from now, as Neon wants `expires_at`: RFC 3339 to the second.
pub fn expires_at(expires_in: u64) -> String {
    crate::output::rfc3339(crate::output::now_unix() + expires_in)
}

/// A branch found by name is ours to adopt unless its annotation names another app or
/// stage (a branch made by hand has none: adopted).
pub fn check_ours(
    name: &str,
    found: Option<&Annotation>,
    ours: &BTreeMap<String, String>,
) -> Result<(), StepCause> {
    let Some(found) = found else {
        return Ok(());
    };
    let other = ours
        .iter()
        .find(|(k, v)| found.value.get(*k).is_some_and(|f| f != *v));
    match other {
        None => Ok(()),
        Some((key, _)) => Err(StepCause::Preview(format!(
            "branch `{name}` already exists and its annotation says {key} = {:?}, not this stage's",
            found.value[key]
        ))),
    }
}

/// [`super::create_or_adopt`], where looking may also find a branch that is not ours.
pub async fn create_or_adopt<T, L, LF, C, CF>(lookup: L, create: C) -> Result<T, StepCause>
where
    L: Fn() -> LF,
    LF: std::future::Future<Output = Result<Option<T>, StepCause>>,
    C: Fn() -> CF,
    CF: std::future::Future<Output = Result<T, NeonError>>,
{
    retry::retry(
        Policy::ADOPT,
        || async {
            if let Some(found) = lookup().await? {
                return Ok(found);
            }
            Ok(create().await?)
        },
        |e: &StepCause| match e {
            StepCause::Neon(n) if n.status() == Some(409) || n.uncertain() => Verdict::Retry,
            _ => Verdict::Stop,
        },
    )
    .await
}

pub async fn converge(
    step: &Step<'_>,
    target: Target<'_>,
    preview: &PreviewBranch,
) -> Result<Recorded, StepCause> {
    let neon = step.neon()?;
    let pid = ProjectId(preview.project_id.clone());
    let _held = step.hold_project(&pid).await;
    let recorded = target
        .recorded
        .and_then(|rs| rs.ids_as::<Ids>(target.resource.name.as_str()).ok())
        .map(|ids| ids.branch_id);
    let existing = match recorded {
        Some(id) => match neon.get_branch(&pid, &id).await {
            Ok(b) => Some(b),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let (branch, created) = match existing {
        Some(b) => (b, false),
        None => find_or_create(neon, &pid, preview).await?,
    };
    let expires_at = match preview.expires_in {
        // Pushed forward on every deploy; a fresh branch already has it.
        Some(secs) if !created => {
            let at = expires_at(secs);
            let patch = BranchUpdate {
                expires_at: Some(Some(at.clone())),
                ..BranchUpdate::default()
            };
            neon.update_branch(&pid, &branch.id, &patch).await?;
            Some(at)
        }
        Some(_) => branch.expires_at.clone(),
        // No longer asked for: Neon removes it when set to null (`BranchUpdateRequest`).
        None if branch.expires_at.is_some() => {
            let patch = BranchUpdate {
                expires_at: Some(None),
                ..BranchUpdate::default()
            };
            neon.update_branch(&pid, &branch.id, &patch).await?;
            None
        }
        None => None,
    };
    // A branch adopted without a read-write endpoint gets one: its URI goes through it.
    let endpoints = neon.list_endpoints(&pid).await?;
    if !endpoints
        .iter()
        .any(|e| e.branch_id == branch.id && e.kind == EndpointType::ReadWrite)
    {
        neon.create_endpoint(&pid, &branch.id, &EndpointType::ReadWrite)
            .await?;
    }
    let mut outputs = super::project::outputs(
        neon,
        &pid,
        preview.project_name.clone(),
        preview.default_branch_id.clone().map(BranchId),
        Some(branch.id.clone()),
    )
    .await?;
    outputs.expires_at = expires_at;
    Ok(Recorded::typed(
        &Ids {
            project_id: pid,
            branch_id: branch.id,
        },
        &outputs,
    ))
}

/// The stage's branch by name (checking its annotation), else a new one.
async fn find_or_create(
    neon: &Neon,
    pid: &ProjectId,
    preview: &PreviewBranch,
) -> Result<(Branch, bool), StepCause> {
    let created = std::cell::Cell::new(false);
    let body = create_body(neon, pid, preview).await?;
    let lookup = || async {
        let (branches, annotations) = neon.list_annotated_branches(pid).await?;
        let found = branches.into_iter().find(|b| b.name == preview.name);
        if let Some(b) = &found {
            check_ours(&preview.name, annotations.get(&b.id.0), &preview.annotation)?;
        }
        Ok(found)
    };
    let branch = create_or_adopt(lookup, || async {
        let b = neon.create_branch(pid, &body).await?;
        created.set(true);
        Ok(b.branch)
    })
    .await?;
    Ok((branch, created.get()))
}

/// Neon's create request for the stage's branch.
async fn create_body(
    neon: &Neon,
    pid: &ProjectId,
    preview: &PreviewBranch,
) -> Result<BranchCreateRequest, StepCause> {
    let mut branch = NewBranch {
        name: preview.name.clone(),
        // Neon starts a branch from the default branch when `parent_id` is left out; a
        // schema-only branch names its source explicitly (`init_source` in the spec).
        parent_id: preview.default_branch_id.clone().map(BranchId),
        ..NewBranch::default()
    };
    match &preview.parent {
        ParentRef::Default => {}
        ParentRef::Branch(wanted) => {
            let branches = neon.list_branches(pid).await?;
            let found = branches
                .iter()
                .find(|b| &b.id.0 == wanted)
                .or_else(|| branches.iter().find(|b| &b.name == wanted));
            let Some(found) = found else {
                return Err(StepCause::Preview(format!(
                    "branch_parent = \"{wanted}\": the base stage's project has no branch with that name or ID"
                )));
            };
            branch.parent_id = Some(found.id.clone());
        }
        ParentRef::Lsn(lsn) => branch.parent_lsn = Some(lsn.clone()),
        ParentRef::At(at) => branch.parent_timestamp = Some(at.clone()),
    }
    if preview.schema_only {
        branch.init_source = Some("schema-only".to_owned());
    }
    branch.expires_at = preview.expires_in.map(expires_at);
    Ok(BranchCreateRequest {
        branch,
        endpoints: vec![NewBranchEndpoint {
            kind: EndpointType::ReadWrite,
        }],
        annotation_value: Some(preview.annotation.clone()),
    })
}

/// A preview stage's branch that Neon deleted (it expired) takes what was on it along:
/// the records of the branch and of everything on it are dropped before planning, so the
/// deploy creates them again. Returns the branch's name when it was gone.
pub async fn forget_expired(neon: &Neon, state: &mut StageState) -> Result<Vec<String>, NeonError> {
    let mut gone = Vec::new();
    let branches: Vec<(String, super::branch::Ids)> = state
        .resources
        .iter()
        .filter(|(name, r)| {
            r.kind == Kind::Preview || (r.kind == Kind::Branch && super::branch::is_copy(name, r))
        })
        .filter_map(|(name, r)| Some((name.clone(), r.ids_as::<super::branch::Ids>(name).ok()?)))
        .collect();
    for (name, ids) in branches {
        match neon.get_branch(&ids.project_id, &ids.branch_id).await {
            Ok(_) => continue,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let on_it: Vec<String> = state
            .resources
            .iter()
            .filter(|(n, r)| {
                **n == name || super::Place::of(r).branch_id.as_ref() == Some(&ids.branch_id)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in on_it {
            state.resources.remove(&n);
        }
        gone.push(name);
    }
    Ok(gone)
}

/// Deletes the stage's branch, never the project.
pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let Ids {
        project_id,
        branch_id,
    } = rs.ids_as(step.name)?;
    let _held = step.hold_project(&project_id).await;
    delete_branch(step.neon()?, &project_id, &branch_id).await
}

/// Deletes a preview branch after checking it is neither the project's default branch nor
/// protected: whatever the state says, a preview stage never deletes what its base owns.
/// One that expired (Neon deleted it) counts as deleted.
pub async fn delete_branch(neon: &Neon, pid: &ProjectId, id: &BranchId) -> Result<(), StepCause> {
    let branch = match neon.get_branch(pid, id).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if branch.default || branch.protected {
        let what = if branch.default {
            "the project's default branch"
        } else {
            "protected"
        };
        return Err(StepCause::Preview(format!(
            "branch `{}` ({id}) is {what}; a preview stage never deletes it",
            branch.name
        )));
    }
    neon.delete_branch(pid, id).await?;
    Ok(())
}
