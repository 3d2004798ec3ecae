//! A Neon branch (`[neon.branch.<Name>]`): create (from the project's default branch or a
//! declared parent) or adopt by name, import by ID, rename, read, delete. In a preview
//! stage, a copy of the base stage's branch of the same name.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Live, Recorded, Step, StepCause, Target, warn_import_differences};
use crate::config::{BranchSpec, Template};
use crate::neon::models::{BranchId, ProjectId};
use crate::neon::{BranchCreateRequest, BranchUpdate, Neon, NewBranch};
use crate::state::{ResourceState, StateError};

/// What a branch records as its IDs (a preview stage's branch records the same).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ids {
    pub project_id: ProjectId,
    pub branch_id: BranchId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub id: BranchId,
}

/// The inputs a branch is deployed with, as recorded.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Inputs {
    #[serde(default)]
    pub name: Option<String>,
    /// In a preview stage: the base stage's branch it copies (`null`: a new branch).
    #[serde(default, deserialize_with = "present")]
    pub copy_of: Option<Value>,
}

/// `copy_of` recorded, even as `null`, marks a preview stage's copy.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Some(Value::deserialize(d)?))
}

pub const REPLACED_BY: &[&str] = &["project", "parent", "copy_of"];

pub fn desired_inputs(b: &BranchSpec, resolve: impl Fn(&Template) -> Value) -> Value {
    let mut inputs = json!({ "project": b.project, "name": resolve(&b.name), "parent": b.parent });
    if let Some(copy) = &b.copy {
        inputs["copy_of"] = json!(copy.of);
        inputs["expires_in"] = json!(copy.expires_in);
    }
    inputs
}

/// Whether a recorded branch is a preview stage's copy (it lives in the base's project).
pub fn is_copy(name: &str, rs: &ResourceState) -> bool {
    rs.inputs_as::<Inputs>(name)
        .is_ok_and(|i| i.copy_of.is_some())
}

/// What a preview of the stage reads of the branch (the one it copies): its IDs and its
/// one output, its ID; a branch holds no secret.
pub fn public(rs: &ResourceState) -> Option<ResourceState> {
    Some(ResourceState {
        kind: rs.kind,
        ids: rs.ids.clone(),
        inputs: Value::Null,
        outputs: rs.outputs.clone(),
        imported: rs.imported,
    })
}

pub fn import_id(name: &str, rs: &ResourceState) -> Result<String, StateError> {
    Ok(rs.ids_as::<Ids>(name)?.branch_id.0)
}

pub async fn converge(
    step: &Step<'_>,
    target: Target<'_>,
    spec: &BranchSpec,
) -> Result<Recorded, StepCause> {
    let Target {
        resource: r,
        recorded,
        import,
        inputs,
    } = target;
    let BranchSpec {
        project,
        parent,
        copy,
        ..
    } = spec;
    let neon = step.neon()?;
    let wanted: Inputs = Inputs::deserialize(inputs).unwrap_or_default();
    let name = wanted.name.unwrap_or_default();
    let pid = step.ids_of::<super::project::Ids>(project)?.project_id;
    let _held = step.hold_project(&pid).await;
    let id = match (recorded, import) {
        (Some(rs), _) => {
            let id = rs.ids_as::<Ids>(&r.name)?.branch_id;
            // Only what changed is sent; a copy's expiry moves forward on every deploy.
            let before: Inputs = rs.inputs_as(&r.name).unwrap_or_default();
            let patch = BranchUpdate {
                name: (before.name.as_ref() != Some(&name)).then(|| name.clone()),
                expires_at: copy
                    .as_ref()
                    .and_then(|c| c.expires_in)
                    .map(|secs| Some(super::preview::expires_at(secs))),
            };
            if patch.name.is_some() || patch.expires_at.is_some() {
                neon.update_branch(&pid, &id, &patch).await?;
            }
            id
        }
        (None, Some(id)) => {
            let found = neon.get_branch(&pid, &BranchId::from(id)).await?;
            warn_import_differences(&r.name, inputs, &[("name", json!(found.name))]);
            found.id
        }
        (None, None) => {
            let mut request = BranchCreateRequest {
                branch: NewBranch {
                    name: name.clone(),
                    ..NewBranch::default()
                },
                ..BranchCreateRequest::default()
            };
            if let Some(parent) = parent {
                request.branch.parent_id = Some(step.ids_of::<Ids>(parent)?.branch_id);
            }
            // In a preview stage: a copy of the base stage's branch, marked and expiring as
            // the stage's own branch is.
            if let Some(copy) = copy {
                if let Some(of) = &copy.of {
                    request.branch.parent_id = Some(BranchId(of.clone()));
                }
                request.branch.expires_at = copy.expires_in.map(super::preview::expires_at);
                request.annotation_value = Some(copy.annotation.clone());
            }
            let lookup = || async {
                let (branches, annotations) = neon.list_annotated_branches(&pid).await?;
                let found = branches.into_iter().find(|b| b.name == name);
                if let (Some(b), Some(copy)) = (&found, copy) {
                    super::preview::check_ours(&name, annotations.get(&b.id.0), &copy.annotation)?;
                }
                Ok::<_, StepCause>(found.map(|b| b.id))
            };
            super::preview::create_or_adopt(lookup, || async {
                neon.create_branch(&pid, &request)
                    .await
                    .map(|b| b.branch.id)
            })
            .await?
        }
    };
    Ok(Recorded::typed(
        &Ids {
            project_id: pid,
            branch_id: id.clone(),
        },
        &Outputs { id },
    ))
}

pub async fn read(neon: &Neon, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    let Ids {
        project_id,
        branch_id,
    } = rs.ids_as(name)?;
    super::found(neon.get_branch(&project_id, &branch_id).await)
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let Ids {
        project_id: pid,
        branch_id: id,
    } = rs.ids_as(step.name)?;
    let _held = step.hold_project(&pid).await;
    if is_copy(step.name, rs) {
        // A preview stage's copy lives in the base stage's project.
        return super::preview::delete_branch(step.neon()?, &pid, &id).await;
    }
    step.neon()?.delete_branch(&pid, &id).await?;
    Ok(())
}
