//! A Neon database on a branch (`[neon.database.<Name>]`): create (or adopt by name),
//! import as `project_id/branch_id/name`, rename or change owner, read, delete. Its
//! connection URI goes through the branch's read-write endpoint.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::role::{Ids, place};
use super::{Live, Recorded, Step, StepCause, Target, create_or_adopt};
use crate::config::{DatabaseSpec, Template};
use crate::neon::models::{BranchId, ProjectId};
use crate::neon::{DatabaseUpdate, Neon, NeonError};
use crate::state::ResourceState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub name: String,
    /// Empty while the branch has no read-write endpoint.
    #[serde(default)]
    pub connection_uri: String,
    /// Through Neon's pooler (PgBouncer, transaction mode); empty like `connection_uri`.
    #[serde(default)]
    pub connection_uri_pooler: String,
}

/// The inputs a database's update compares with.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Inputs {
    /// The logical name of the owner role in infra.toml.
    #[serde(default)]
    pub owner: Option<String>,
}

pub const REPLACED_BY: &[&str] = &["branch"];

pub fn desired_inputs(d: &DatabaseSpec, resolve: impl Fn(&Template) -> Value) -> Value {
    json!({ "branch": d.branch, "name": resolve(&d.name), "owner": d.owner })
}

/// Recorded while its branch had no read-write endpoint (or by a version without the
/// pooler's URI): the URIs are computed again, not left empty forever.
pub fn outputs_to_compute(recorded: &ResourceState) -> Vec<(&'static str, Option<Value>)> {
    let complete = recorded
        .outputs_as::<Outputs>("")
        .is_ok_and(|o| !o.connection_uri.is_empty() && !o.connection_uri_pooler.is_empty());
    if complete {
        Vec::new()
    } else {
        vec![(
            "connection_uri",
            Some(Value::String("(not computed)".to_owned())),
        )]
    }
}

pub async fn converge(
    step: &Step<'_>,
    target: Target<'_>,
    spec: &DatabaseSpec,
) -> Result<Recorded, StepCause> {
    let Target {
        resource: r,
        recorded,
        import,
        inputs,
    } = target;
    let DatabaseSpec { branch, owner, .. } = spec;
    let neon = step.neon()?;
    let owner_name = step.output(owner, "name")?;
    let (pid, bid, name) = place(step, branch, import, inputs)?;
    let _held = step.hold_project(&pid).await;
    match (recorded, import) {
        (Some(rs), _) => {
            // Only what changed is sent: a new name, or a new owner role.
            let current = rs.ids_as::<Ids>(&r.name)?.name;
            let before: Inputs = rs.inputs_as(&r.name).unwrap_or_default();
            let patch = DatabaseUpdate {
                name: (current != name).then(|| name.clone()),
                owner_name: (before.owner.as_deref() != Some(owner.as_str()))
                    .then(|| owner_name.clone()),
            };
            if patch.name.is_some() || patch.owner_name.is_some() {
                neon.update_database(&pid, &bid, &current, &patch).await?;
            }
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
        &Ids {
            project_id: pid,
            branch_id: bid,
            name: name.clone(),
        },
        &Outputs {
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

pub async fn read(neon: &Neon, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    let (pid, bid, name) = Ids::of(name, rs)?;
    super::found(neon.get_database(&pid, &bid, &name).await)
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let (pid, bid, name) = Ids::of(step.name, rs)?;
    let _held = step.hold_project(&pid).await;
    step.neon()?.delete_database(&pid, &bid, &name).await?;
    Ok(())
}
