//! A Neon branch: create (from the project's default branch or a declared parent) or adopt
//! by name, import by ID, rename, delete.

use serde_json::json;

use super::records::{BranchIds, BranchOutputs};
use super::{Recorded, Step, StepCause, Target, create_or_adopt, warn_import_differences};
use crate::config::Spec;
use crate::neon::NeonError;
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
        project, parent, ..
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
            neon.update_branch(&pid, &id, json!({ "name": name }))
                .await?;
            id
        }
        (None, Some(id)) => {
            let found = neon.get_branch(&pid, &BranchId::from(id)).await?;
            warn_import_differences(&r.name, inputs, &[("name", json!(found.name))]);
            found.id
        }
        (None, None) => {
            let mut body = json!({ "name": name });
            if let Some(parent) = parent {
                body["parent_id"] = json!(step.recorded(parent)?.id(parent, "branch_id")?);
            }
            let lookup = || async {
                let branches = neon.list_branches(&pid).await?;
                Ok::<_, NeonError>(branches.into_iter().find(|b| b.name == name).map(|b| b.id))
            };
            create_or_adopt(lookup, || async {
                neon.create_branch(&pid, body.clone()).await.map(|b| b.id)
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
    step.neon()?.delete_branch(&pid, &id).await?;
    Ok(())
}
