//! A Neon branch: create (from the project's default branch or a declared parent) or adopt
//! by name, import by ID, rename, delete.

use serde_json::json;

use super::records::{BranchIds, BranchOutputs};
use super::{Recorded, Step, StepCause, Target, warn_import_differences};
use crate::config::Spec;
use crate::neon::models::{BranchId, ProjectId};
use crate::state::ResourceState;

pub async fn converge(step: &Step<'_>, target: Target<'_>) -> Result<Recorded, StepCause> {
    let Target {
        resource: r,
        recorded,
        import,
        inputs,
    } = target;
    let Spec::Branch {
        project,
        parent,
        copy,
        ..
    } = &r.spec
    else {
        unreachable!("branch::converge is called for branches")
    };
    let neon = step.neon()?;
    let name = inputs["name"].as_str().unwrap_or_default().to_owned();
    let pid = ProjectId(
        step.recorded(project)?
            .id(project, "project_id")?
            .to_owned(),
    );
    let _held = step.hold_project(&pid).await;
    let id = match (recorded, import) {
        (Some(rs), _) => {
            let id = BranchId(rs.id(&r.name, "branch_id")?.to_owned());
            let mut patch = json!({ "name": name });
            if let Some(expires_in) = copy.as_ref().and_then(|c| c.expires_in) {
                patch["expires_at"] = json!(super::preview::expires_at(expires_in));
            }
            neon.update_branch(&pid, &id, patch).await?;
            id
        }
        (None, Some(id)) => {
            let found = neon.get_branch(&pid, &BranchId::from(id)).await?;
            warn_import_differences(&r.name, inputs, &[("name", json!(found.name))]);
            found.id
        }
        (None, None) => {
            let mut body = json!({ "branch": { "name": name } });
            if let Some(parent) = parent {
                body["branch"]["parent_id"] =
                    json!(step.recorded(parent)?.id(parent, "branch_id")?);
            }
            // In a preview stage: a copy of the base stage's branch, marked and expiring as
            // the stage's own branch is.
            if let Some(copy) = copy {
                if let Some(of) = &copy.of {
                    body["branch"]["parent_id"] = json!(of);
                }
                if let Some(expires_in) = copy.expires_in {
                    body["branch"]["expires_at"] = json!(super::preview::expires_at(expires_in));
                }
                body["annotation_value"] = json!(copy.annotation);
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
                neon.create_branch(&pid, &body).await.map(|b| b.branch.id)
            })
            .await?
        }
    };
    Ok(Recorded::typed(
        &BranchIds {
            project_id: pid,
            branch_id: id.clone(),
        },
        &BranchOutputs { id },
    ))
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let pid = ProjectId(rs.id(step.name, "project_id")?.to_owned());
    let id = BranchId(rs.id(step.name, "branch_id")?.to_owned());
    let _held = step.hold_project(&pid).await;
    if rs.inputs.get("copy_of").is_some() {
        // A preview stage's copy lives in the base stage's project.
        return super::preview::delete_branch(step.neon()?, &pid, &id).await;
    }
    step.neon()?.delete_branch(&pid, &id).await?;
    Ok(())
}
