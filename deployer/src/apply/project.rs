//! A Neon project: create (or adopt the one an interrupted run created), import, update its
//! name and history retention, delete. Its outputs describe the default branch's database.

use serde_json::{Value, json};

use super::records::{DefaultDatabase, ProjectIds, ProjectOutputs};
use super::{Recorded, Step, StepCause, Target, warn_import_differences};
use crate::config::Resource;
use crate::neon::models::{BranchId, Project, ProjectId};
use crate::neon::{Neon, NeonError};
use crate::retry::{self, Policy, Verdict};
use crate::state::{Pending, ResourceState};

/// A project found by name counts as the one an earlier attempt created only if Neon says
/// it was created no earlier than this before the attempt (clock skew between us and Neon).
const CLOCK_SKEW_SECS: i64 = 120;

pub async fn converge(step: &Step<'_>, target: Target<'_>) -> Result<Recorded, StepCause> {
    if let crate::config::Spec::PreviewBranch(preview) = &target.resource.spec {
        return super::preview::converge(step, target, preview).await;
    }
    let Target {
        resource: r,
        recorded,
        import,
        inputs,
    } = target;
    let neon = step.neon()?;
    let name = inputs["name"].as_str().unwrap_or_default().to_owned();
    let id = match (recorded, import) {
        (Some(rs), _) => {
            let id = ProjectId(rs.id(&r.name, "project_id")?.to_owned());
            let _held = step.hold_project(&id).await;
            let mut patch = json!({ "name": name });
            if let Some(h) = inputs["history_retention_seconds"].as_i64() {
                patch["history_retention_seconds"] = json!(h);
            }
            neon.update_project(&id, patch).await?;
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
        (None, None) => create(step, r, neon, &name, inputs).await?,
    };
    let branches = neon.list_branches(&id).await?;
    let default = branches
        .iter()
        .find(|b| b.default)
        .or(branches.first())
        .map(|b| b.id.clone());
    let outputs = outputs(neon, &id, name, default.clone(), default).await?;
    Ok(Recorded::typed(&ProjectIds { project_id: id }, &outputs))
}

async fn create(
    step: &Step<'_>,
    r: &Resource,
    neon: &Neon,
    name: &str,
    inputs: &Value,
) -> Result<ProjectId, StepCause> {
    let mut body = json!({ "name": name, "pg_version": inputs["pg_version"], "region_id": inputs["region_id"] });
    if let Some(org) = inputs["org_id"].as_str() {
        body["org_id"] = json!(org);
    }
    if let Some(h) = inputs["history_retention_seconds"].as_i64() {
        body["history_retention_seconds"] = json!(h);
    }
    // A create recorded as pending was sent by an interrupted run: look for it first.
    // Project names are not unique (every stage may use the same one), so a candidate must
    // be new since the first attempt and claimed by no stage.
    let previous = step.recorder.pending(&r.name);
    let (since, existing) = match &previous {
        Some(p) => (p.since_unix as i64, p.existing.clone()),
        None => {
            let existing: Vec<String> = neon
                .find_projects(name, inputs["org_id"].as_str())
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
        let found = neon.find_projects(name, inputs["org_id"].as_str()).await?;
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
            neon.create_project(body.clone())
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
                        ids: std::collections::BTreeMap::from([(
                            "project_id".to_owned(),
                            created.0,
                        )]),
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
) -> Result<ProjectOutputs, NeonError> {
    let mut outputs = ProjectOutputs {
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
    if super::preview::is_preview(rs) {
        return super::preview::delete(step, rs).await;
    }
    let id = ProjectId(rs.id(step.name, "project_id")?.to_owned());
    let _held = step.hold_project(&id).await;
    step.neon()?.delete_project(&id).await?;
    Ok(())
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
