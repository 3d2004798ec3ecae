//! A Neon compute endpoint (`[neon.endpoint.<Name>]`): create (or adopt the branch's
//! read-write one), import, read, delete. Neither setting can change in place (a change
//! replaces it), so there is no update.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Live, Recorded, Step, StepCause, Target, create_or_adopt};
use crate::config::EndpointSpec;
use crate::neon::models::{EndpointId, EndpointType, ProjectId};
use crate::neon::{Neon, NeonError};
use crate::state::{ResourceState, StateError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ids {
    pub project_id: ProjectId,
    pub endpoint_id: EndpointId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub id: EndpointId,
    pub host: String,
}

pub const REPLACED_BY: &[&str] = &["branch", "type"];

pub fn desired_inputs(e: &EndpointSpec) -> Value {
    json!({
        "branch": e.branch, "type": if e.read_write { "read_write" } else { "read_only" },
    })
}

pub fn import_id(name: &str, rs: &ResourceState) -> Result<String, StateError> {
    Ok(rs.ids_as::<Ids>(name)?.endpoint_id.0)
}

pub async fn converge(
    step: &Step<'_>,
    target: Target<'_>,
    spec: &EndpointSpec,
) -> Result<Recorded, StepCause> {
    let Target {
        recorded, import, ..
    } = target;
    let EndpointSpec { branch, read_write } = spec;
    if let Some(rs) = recorded {
        // Nothing of an endpoint changes in place: keep what is recorded.
        return Ok(Recorded::kept(rs));
    }
    let neon = step.neon()?;
    let super::branch::Ids {
        project_id: pid,
        branch_id: bid,
    } = step.ids_of(branch)?;
    let kind = if *read_write {
        EndpointType::ReadWrite
    } else {
        EndpointType::ReadOnly
    };
    let _held = step.hold_project(&pid).await;
    let endpoint = match import {
        Some(id) => neon.get_endpoint(&pid, &EndpointId::from(id)).await?,
        None => {
            let lookup = || async {
                // A branch has at most one read-write endpoint: that one is ours.
                if !read_write {
                    return Ok(None);
                }
                let all = neon.list_endpoints(&pid).await?;
                Ok::<_, NeonError>(
                    all.into_iter()
                        .find(|e| e.branch_id == bid && e.kind == EndpointType::ReadWrite),
                )
            };
            create_or_adopt(lookup, || neon.create_endpoint(&pid, &bid, &kind)).await?
        }
    };
    Ok(Recorded::typed(
        &Ids {
            project_id: pid,
            endpoint_id: endpoint.id.clone(),
        },
        &Outputs {
            id: endpoint.id,
            host: endpoint.host,
        },
    ))
}

pub async fn read(neon: &Neon, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    let Ids {
        project_id,
        endpoint_id,
    } = rs.ids_as(name)?;
    super::found(neon.get_endpoint(&project_id, &endpoint_id).await)
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let Ids {
        project_id: pid,
        endpoint_id: id,
    } = rs.ids_as(step.name)?;
    let _held = step.hold_project(&pid).await;
    step.neon()?.delete_endpoint(&pid, &id).await?;
    Ok(())
}
