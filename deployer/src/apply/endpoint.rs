//! A Neon compute endpoint: create (or adopt the branch's read-write one), import, delete.
//! Neither setting can change in place (a change replaces it), so there is no update.

use super::records::{EndpointIds, EndpointOutputs};
use super::{Recorded, Step, StepCause, Target, create_or_adopt};
use crate::config::Spec;
use crate::neon::NeonError;
use crate::neon::models::{BranchId, EndpointId, EndpointType, ProjectId};
use crate::state::ResourceState;

pub async fn converge(step: &Step<'_>, target: Target<'_>) -> Result<Recorded, StepCause> {
    let Target {
        resource: r,
        recorded,
        import,
        ..
    } = target;
    let Spec::Endpoint { branch, read_write } = &r.spec else {
        unreachable!("endpoint::converge is called for endpoints")
    };
    if let Some(rs) = recorded {
        // Nothing of an endpoint changes in place: keep what is recorded.
        return Ok(Recorded {
            ids: rs.ids.clone(),
            outputs: rs.outputs.clone(),
        });
    }
    let neon = step.neon()?;
    let pid = step.project_of(branch)?;
    let bid = BranchId(step.recorded(branch)?.id(branch, "branch_id")?.to_owned());
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
        &EndpointIds {
            project_id: pid,
            endpoint_id: endpoint.id.clone(),
        },
        &EndpointOutputs {
            id: endpoint.id,
            host: endpoint.host,
        },
    ))
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let pid = ProjectId(rs.id(step.name, "project_id")?.to_owned());
    let id = EndpointId(rs.id(step.name, "endpoint_id")?.to_owned());
    let _held = step.hold_project(&pid).await;
    step.neon()?.delete_endpoint(&pid, &id).await?;
    Ok(())
}
