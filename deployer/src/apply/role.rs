//! A Neon role on a branch: create (or adopt by name), import as
//! `project_id/branch_id/name`, delete. Its password is read back with `reveal_password`
//! when the create's answer is not ours to read (adopted or imported).

use serde_json::Value;

use super::records::{BranchObjectIds, RoleOutputs};
use super::{Recorded, Step, StepCause, Target, create_or_adopt};
use crate::config::Spec;
use crate::neon::models::{BranchId, ProjectId};
use crate::state::ResourceState;

/// (project, branch, name) of a role or database: from `import` (`project_id/branch_id/name`)
/// or from its branch's recorded IDs and its name.
pub fn place(
    step: &Step<'_>,
    branch: &str,
    import: Option<&str>,
    inputs: &Value,
) -> Result<(ProjectId, BranchId, String), StepCause> {
    if let Some(triple) = import {
        // The config checked the shape: three non-empty parts.
        let mut parts = triple.splitn(3, '/');
        let (p, b, n) = (parts.next(), parts.next(), parts.next());
        if let (Some(p), Some(b), Some(n)) = (p, b, n) {
            return Ok((ProjectId::from(p), BranchId::from(b), n.to_owned()));
        }
    }
    let recorded = step.recorded(branch)?;
    Ok((
        ProjectId(recorded.id(branch, "project_id")?.to_owned()),
        BranchId(recorded.id(branch, "branch_id")?.to_owned()),
        inputs["name"].as_str().unwrap_or_default().to_owned(),
    ))
}

pub async fn converge(step: &Step<'_>, target: Target<'_>) -> Result<Recorded, StepCause> {
    let Target {
        resource: r,
        recorded,
        import,
        inputs,
    } = target;
    let Spec::Role { branch, .. } = &r.spec else {
        unreachable!("role::converge is called for roles")
    };
    if let Some(rs) = recorded {
        // A role's settings are its branch and name, which replace it when they change.
        return Ok(Recorded {
            ids: rs.ids.clone(),
            outputs: rs.outputs.clone(),
        });
    }
    let neon = step.neon()?;
    let (pid, bid, name) = place(step, branch, import, inputs)?;
    let _held = step.hold_project(&pid).await;
    let created = if import.is_some() {
        neon.get_role(&pid, &bid, &name).await?;
        None
    } else {
        let lookup = || async {
            match neon.get_role(&pid, &bid, &name).await {
                Ok(_) => Ok(Some(None)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        };
        create_or_adopt(lookup, || async {
            neon.create_role(&pid, &bid, &name)
                .await
                .map(|role| role.password)
        })
        .await?
    };
    let password = match created {
        Some(p) => p,
        None => neon.reveal_password(&pid, &bid, &name).await?,
    };
    Ok(Recorded::typed(
        &BranchObjectIds {
            project_id: pid,
            branch_id: bid,
            name: name.clone(),
        },
        &RoleOutputs { name, password },
    ))
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let pid = ProjectId(rs.id(step.name, "project_id")?.to_owned());
    let bid = BranchId(rs.id(step.name, "branch_id")?.to_owned());
    let name = rs.id(step.name, "name")?;
    let _held = step.hold_project(&pid).await;
    step.neon()?.delete_role(&pid, &bid, name).await?;
    Ok(())
}
