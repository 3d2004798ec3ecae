//! A Neon database on a branch: create (or adopt by name), import as
//! `project_id/branch_id/name`, rename or change owner, delete. Its connection URI goes
//! through the branch's read-write endpoint.

use serde_json::json;

use super::records::{BranchObjectIds, DatabaseOutputs};
use super::role::place;
use super::{Recorded, Step, StepCause, Target, create_or_adopt};
use crate::config::Spec;
use crate::neon::models::{BranchId, ProjectId};
use crate::neon::{Neon, NeonError};
use crate::state::ResourceState;

pub async fn converge(step: &Step<'_>, target: Target<'_>) -> Result<Recorded, StepCause> {
    let Target {
        resource: r,
        recorded,
        import,
        inputs,
    } = target;
    let Spec::Database { branch, owner, .. } = &r.spec else {
        unreachable!("database::converge is called for databases")
    };
    let neon = step.neon()?;
    let owner_name = step.output(owner, "name")?;
    let (pid, bid, name) = place(step, branch, import, inputs)?;
    let _held = step.hold_project(&pid).await;
    match (recorded, import) {
        (Some(rs), _) => {
            let current = rs.id(&r.name, "name")?;
            neon.update_database(
                &pid,
                &bid,
                current,
                json!({ "name": name, "owner_name": owner_name }),
            )
            .await?;
        }
        (None, Some(_)) => {
            let found = neon.get_database(&pid, &bid, &name).await?;
            if found.owner_name != owner_name {
                eprintln!(
                    "warning: {}: imported database is owned by `{}`, infra.toml says `{owner_name}`; the next deploy changes the owner",
                    r.name, found.owner_name
                );
            }
        }
        (None, None) => {
            let lookup = || async {
                match neon.get_database(&pid, &bid, &name).await {
                    Ok(_) => Ok(Some(())),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            };
            create_or_adopt(lookup, || async {
                neon.create_database(&pid, &bid, &name, &owner_name)
                    .await
                    .map(drop)
            })
            .await?;
        }
    }
    let (uri, pooled) = tokio::try_join!(
        connection_uri(neon, &pid, &bid, &name, &owner_name, false),
        connection_uri(neon, &pid, &bid, &name, &owner_name, true),
    )?;
    Ok(Recorded::typed(
        &BranchObjectIds {
            project_id: pid,
            branch_id: bid,
            name: name.clone(),
        },
        &DatabaseOutputs {
            name,
            connection_uri: uri,
            connection_uri_pooler: pooled,
        },
    ))
}

/// The URI through the branch's read-write endpoint (`pooled`: its pooler host); empty
/// while the branch has none.
async fn connection_uri(
    neon: &Neon,
    pid: &ProjectId,
    bid: &BranchId,
    name: &str,
    owner: &str,
    pooled: bool,
) -> Result<String, NeonError> {
    match neon.connection_uri(pid, bid, name, owner, pooled).await {
        Ok(uri) => Ok(uri),
        Err(e) if e.is_not_found() => Ok(String::new()),
        Err(e) => Err(e),
    }
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let pid = ProjectId(rs.id(step.name, "project_id")?.to_owned());
    let bid = BranchId(rs.id(step.name, "branch_id")?.to_owned());
    let name = rs.id(step.name, "name")?;
    let _held = step.hold_project(&pid).await;
    step.neon()?.delete_database(&pid, &bid, name).await?;
    Ok(())
}
