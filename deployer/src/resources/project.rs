//! A Neon project (`[neon.project.<Name>]`): create (or adopt the one an interrupted run
//! created), import, update its name and history retention, read, delete. Its outputs
//! describe the default branch's database.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Live, Recorded, Step, StepCause, Target, warn_import_differences};
use crate::config::{ProjectSpec, Resource, Template};
use crate::neon::models::{BranchId, Project, ProjectId};
use crate::neon::{Neon, NeonError, NewProject, ProjectUpdate};
use crate::retry::{self, Policy, Verdict};
use crate::state::{Pending, ResourceState};

/// What a project records as its IDs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ids {
    pub project_id: ProjectId,
}

/// A project's outputs: its ID and name, its default branch, and the connection to the
/// default branch's first database (Neon's `neondb` as `neondb_owner`), when there is one.
/// A preview stage's branch has the same outputs, read on its own branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub id: ProjectId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch_id: Option<BranchId>,
    /// The branch the outputs describe: the default branch, or a preview stage's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<BranchId>,
    /// A preview branch's expiry (RFC 3339), as Neon last confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub database: Option<DefaultDatabase>,
}

/// The default database of a project, as its outputs show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefaultDatabase {
    pub connection_uri: String,
    pub connection_uri_pooler: String,
    pub database_host: String,
    pub database_name: String,
    pub database_user: String,
    pub database_password: String,
}

/// The inputs a project is deployed with (as recorded: templates resolved).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inputs {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pg_version: Option<i64>,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub history_retention_seconds: Option<i64>,
}

/// Fields that cannot change in place: Neon has no way to move a project's Postgres
/// version, region or organization.
pub const REPLACED_BY: &[&str] = &["pg_version", "region_id", "org_id"];

pub fn desired_inputs(p: &ProjectSpec, resolve: impl Fn(&Template) -> Value) -> Value {
    json!({
        "name": resolve(&p.name),
        "pg_version": p.pg_version,
        "region_id": resolve(&p.region_id),
        "org_id": p.org_id.as_ref().map(&resolve),
        "history_retention_seconds": p.history_retention_seconds,
    })
}

/// Recorded by IDs only (created, then an operation failed): finished by an update that
/// reads its outputs.
pub fn outputs_to_compute(recorded: &ResourceState) -> Vec<(&'static str, Option<Value>)> {
    if recorded.outputs.is_empty() {
        vec![("outputs", Some(Value::String("(not recorded)".to_owned())))]
    } else {
        Vec::new()
    }
}

/// Brings a project recorded by an older format to this one.
pub fn migrate(r: &mut ResourceState, written_as: u32) {
    // Before projects had a `branch_id` output, its connection outputs described its
    // default branch, so that is its `branch_id` (no deploy needed for it).
    if !r.outputs.contains_key("branch_id")
        && let Some(default) = r.outputs.get("default_branch_id").cloned()
    {
        r.outputs.insert("branch_id".to_owned(), default);
    }
    // Version 1 recorded a preview stage's branch as a project whose inputs said which
    // stage it branches from.
    if written_as < 2
        && r.inputs
            .get(super::preview::BASE_STAGE_INPUT)
            .is_some_and(Value::is_string)
    {
        r.kind = crate::config::Kind::Preview;
    }
}

/// What a preview of the stage reads of the project: its IDs, name and default branch; not
/// its default database's connection (a password).
pub fn public(rs: &ResourceState) -> Option<ResourceState> {
    let outputs = rs.outputs_as::<Outputs>("").ok().map(|o| Outputs {
        database: None,
        expires_at: None,
        ..o
    });
    Some(ResourceState {
        kind: rs.kind,
        ids: rs.ids.clone(),
        inputs: Value::Null,
        outputs: outputs
            .map(|o| crate::state::to_map(&o))
            .unwrap_or_default(),
        imported: rs.imported,
    })
}

pub fn import_id(name: &str, rs: &ResourceState) -> Result<String, crate::state::StateError> {
    Ok(rs.ids_as::<Ids>(name)?.project_id.0)
}

/// A project found by name counts as the one an earlier attempt created only if Neon says
/// it was created no earlier than this before the attempt (clock skew between us and Neon).
const CLOCK_SKEW_SECS: i64 = 120;

pub async fn converge(step: &Step<'_>, target: Target<'_>) -> Result<Recorded, StepCause> {
    let Target {
        resource: r,
        recorded,
        import,
        inputs,
    } = target;
    let neon = step.neon()?;
    let wanted: Inputs = Inputs::deserialize(inputs).unwrap_or_default();
    let name = wanted.name.clone().unwrap_or_default();
    let id = match (recorded, import) {
        (Some(rs), _) => {
            let id = rs.ids_as::<Ids>(&r.name)?.project_id;
            let _held = step.hold_project(&id).await;
            // Only what changed is sent: a field Neon is not asked to change keeps its value.
            let before: Inputs = rs.inputs_as(&r.name).unwrap_or_default();
            let patch = ProjectUpdate {
                name: (before.name.as_ref() != Some(&name)).then(|| name.clone()),
                history_retention_seconds: wanted
                    .history_retention_seconds
                    .filter(|h| before.history_retention_seconds != Some(*h)),
            };
            if patch.name.is_some() || patch.history_retention_seconds.is_some() {
                neon.update_project(&id, &patch).await?;
            }
            id
        }
        (None, Some(id)) => {
            let found = neon.get_project(&ProjectId::from(id)).await?;
            warn_import_differences(
                &r.name,
                inputs,
                &[
                    ("name", json!(found.name)),
                    ("pg_version", json!(found.pg_version)),
                    ("region_id", json!(found.region_id)),
                    ("org_id", json!(found.org_id)),
                    (
                        "history_retention_seconds",
                        json!(found.history_retention_seconds),
                    ),
                ],
            );
            found.id
        }
        (None, None) => create(step, r, neon, &wanted, inputs).await?,
    };
    let branches = neon.list_branches(&id).await?;
    let default = branches
        .iter()
        .find(|b| b.default)
        .or(branches.first())
        .map(|b| b.id.clone());
    let outputs = outputs(neon, &id, name, default.clone(), default).await?;
    Ok(Recorded::typed(&Ids { project_id: id }, &outputs))
}

async fn create(
    step: &Step<'_>,
    r: &Resource,
    neon: &Neon,
    wanted: &Inputs,
    inputs: &Value,
) -> Result<ProjectId, StepCause> {
    let name = wanted.name.as_deref().unwrap_or_default();
    let org_id = wanted.org_id.as_deref();
    let body = NewProject {
        name: name.to_owned(),
        pg_version: wanted.pg_version,
        region_id: wanted.region_id.clone(),
        org_id: wanted.org_id.clone(),
        history_retention_seconds: wanted.history_retention_seconds,
    };
    // A create recorded as pending was sent by an interrupted run: look for it first.
    // Project names are not unique (every stage may use the same one), so a candidate must
    // be new since the first attempt and claimed by no stage.
    let previous = step.recorder.pending(&r.name);
    let (since, existing) = match &previous {
        Some(p) => (p.since_unix as i64, p.existing.clone()),
        None => {
            let existing: Vec<String> = neon
                .find_projects(name, org_id)
                .await?
                .into_iter()
                .map(|p| p.id.0)
                .collect();
            step.recorder
                .mark_pending(
                    &r.name,
                    Pending {
                        kind: r.kind,
                        name: name.to_owned(),
                        since_unix: crate::output::now_unix(),
                        existing: existing.clone(),
                    },
                )
                .await?;
            (crate::output::now_unix() as i64, existing)
        }
    };
    let claimed = step.recorder.store().claimed_project_ids().await?;
    let ours = |p: &Project| {
        p.name == name
            && !existing.contains(&p.id.0)
            && !claimed.contains(&p.id.0)
            && crate::output::parse_rfc3339(&p.created_at)
                .is_some_and(|t| t + CLOCK_SKEW_SECS >= since)
    };
    let lookup = || async {
        let found = neon.find_projects(name, org_id).await?;
        let candidates: Vec<&Project> = found.iter().filter(|p| ours(p)).collect();
        Ok::<_, NeonError>(match candidates.as_slice() {
            [one] => Some(one.id.clone()),
            _ => None,
        })
    };
    let resumed = std::cell::Cell::new(previous.is_some());
    // Created, but an operation failed: the project exists and is recorded (IDs only), so
    // the next deploy finishes it and `remove` finds it.
    let created_but_failed = std::cell::RefCell::new(None);
    // Project names are not unique: a create from a run that lost the stage (paused, then
    // unlocked by force) would leave a second project. Its state write is refused first.
    step.recorder.confirm().await?;
    let id = retry::retry(
        Policy::ADOPT,
        || async {
            if resumed.get()
                && let Some(id) = lookup().await?
            {
                return Ok(id);
            }
            neon.create_project(&body)
                .await
                .map(|c| c.project.id)
                .map_err(|(created, e)| {
                    if created.is_some() {
                        *created_but_failed.borrow_mut() = created;
                    }
                    e
                })
        },
        |e: &NeonError| {
            if created_but_failed.borrow().is_some() {
                Verdict::Stop
            } else if e.uncertain() {
                tracing::debug!(error = %e, "create project uncertain; looking before retrying");
                resumed.set(true);
                Verdict::Retry
            } else {
                Verdict::Stop
            }
        },
    )
    .await;
    let id = match (id, created_but_failed.into_inner()) {
        (Ok(id), _) => id,
        (Err(e), Some(created)) => {
            step.recorder
                .record(
                    &r.name,
                    ResourceState {
                        kind: r.kind,
                        ids: crate::state::to_map(&Ids {
                            project_id: created,
                        }),
                        inputs: inputs.clone(),
                        outputs: std::collections::BTreeMap::new(),
                        imported: false,
                    },
                )
                .await?;
            return Err(e.into());
        }
        (Err(e), None) => return Err(e.into()),
    };
    Ok(id)
}

/// The project's outputs: its ID, default branch, and the connection to the first database
/// of `branch` (the default branch, or a preview stage's own branch).
pub(super) async fn outputs(
    neon: &Neon,
    id: &ProjectId,
    name: String,
    default_branch: Option<BranchId>,
    branch: Option<BranchId>,
) -> Result<Outputs, NeonError> {
    let mut outputs = Outputs {
        id: id.clone(),
        name,
        default_branch_id: default_branch,
        branch_id: branch.clone(),
        expires_at: None,
        database: None,
    };
    let Some(default) = branch else {
        return Ok(outputs);
    };
    let mut dbs = neon.list_databases(id, &default).await?;
    dbs.sort_by_key(|d| d.id);
    if let Some(db) = dbs.first() {
        let uri = neon
            .connection_uri(id, &default, &db.name, &db.owner_name, false)
            .await?;
        let pooled = neon
            .connection_uri(id, &default, &db.name, &db.owner_name, true)
            .await?;
        let info = pgconn::conninfo::parse(&uri).ok();
        let config = info.as_ref().map(|i| &i.config);
        outputs.database = Some(DefaultDatabase {
            database_host: host_of(&uri),
            database_name: config
                .and_then(|c| c.get_dbname())
                .unwrap_or(&db.name)
                .to_owned(),
            database_user: config
                .and_then(|c| c.get_user())
                .unwrap_or(&db.owner_name)
                .to_owned(),
            database_password: config
                .and_then(|c| c.get_password())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            connection_uri: uri,
            connection_uri_pooler: pooled,
        });
    }
    Ok(outputs)
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let id = rs.ids_as::<Ids>(step.name)?.project_id;
    let _held = step.hold_project(&id).await;
    step.neon()?.delete_project(&id).await?;
    Ok(())
}

/// What `refresh` shows: the name and history retention as Neon has them now.
pub async fn read(neon: &Neon, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    let id = rs.ids_as::<Ids>(name)?.project_id;
    let recorded: Inputs = rs.inputs_as(name).unwrap_or_default();
    let live = match neon.get_project(&id).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(Live::Gone),
        Err(e) => return Err(e.into()),
    };
    let mut changes = Vec::new();
    if let Some(recorded) = recorded.name
        && recorded != live.name
    {
        changes.push(super::drift("name", recorded, &live.name));
    }
    if let (Some(recorded), Some(live)) = (
        recorded.history_retention_seconds,
        live.history_retention_seconds,
    ) && recorded != live
    {
        changes.push(super::drift("history_retention_seconds", recorded, live));
    }
    Ok(Live::Found(changes))
}

/// The host of a `postgresql://user:pw@host[:port]/db?...` URI.
fn host_of(uri: &str) -> String {
    let after = uri.split_once('@').map_or(uri, |(_, h)| h);
    after
        .split(['/', '?', ':'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_a_neon_uri() {
        assert_eq!(
            super::host_of("postgresql://u:p@ep-x.aws.neon.tech/db?sslmode=require"),
            "ep-x.aws.neon.tech"
        );
    }
}
