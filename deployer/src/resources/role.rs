//! A Neon role on a branch (`[neon.role.<Name>]`): create (or adopt by name), import as
//! `project_id/branch_id/name`, read, delete. Its password is read back with
//! `reveal_password` when the create's answer is not ours to read (adopted or imported).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Live, Recorded, Step, StepCause, Target, create_or_adopt};
use crate::config::{RoleSpec, Template};
use crate::neon::Neon;
use crate::neon::models::{BranchId, ProjectId};
use crate::state::{ResourceState, StateError};

/// What a role or a database records as its IDs: where it is and its name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ids {
    pub project_id: ProjectId,
    pub branch_id: BranchId,
    pub name: String,
}

impl Ids {
    /// (project, branch, name) as recorded for the role or database `resource`.
    pub fn of(
        resource: &str,
        rs: &ResourceState,
    ) -> Result<(ProjectId, BranchId, String), StateError> {
        let Ids {
            project_id,
            branch_id,
            name,
        } = rs.ids_as(resource)?;
        Ok((project_id, branch_id, name))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub name: String,
    pub password: String,
}

/// The inputs of a role or database that its step reads back.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub name: Option<String>,
}

pub const REPLACED_BY: &[&str] = &["branch", "name"];

pub fn desired_inputs(ro: &RoleSpec, resolve: impl Fn(&Template) -> Value) -> Value {
    json!({ "branch": ro.branch, "name": resolve(&ro.name) })
}

/// `project_id/branch_id/name`, as `import` takes a role or a database.
pub fn import_id(name: &str, rs: &ResourceState) -> Result<String, StateError> {
    let (pid, bid, name) = Ids::of(name, rs)?;
    Ok(format!("{pid}/{bid}/{name}"))
}

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
    let super::branch::Ids {
        project_id,
        branch_id,
    } = step.ids_of(branch)?;
    let name = Named::deserialize(inputs).unwrap_or_default().name;
    Ok((project_id, branch_id, name.unwrap_or_default()))
}

pub async fn converge(
    step: &Step<'_>,
    target: Target<'_>,
    spec: &RoleSpec,
) -> Result<Recorded, StepCause> {
    let Target {
        recorded,
        import,
        inputs,
        ..
    } = target;
    let RoleSpec { branch, .. } = spec;
    if let Some(rs) = recorded {
        // A role's settings are its branch and name, which replace it when they change.
        return Ok(Recorded::kept(rs));
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
        &Ids {
            project_id: pid,
            branch_id: bid,
            name: name.clone(),
        },
        &Outputs { name, password },
    ))
}

pub async fn read(neon: &Neon, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    let (pid, bid, name) = Ids::of(name, rs)?;
    super::found(neon.get_role(&pid, &bid, &name).await)
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let (pid, bid, name) = Ids::of(step.name, rs)?;
    let _held = step.hold_project(&pid).await;
    step.neon()?.delete_role(&pid, &bid, &name).await?;
    Ok(())
}
