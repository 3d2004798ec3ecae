//! `deployer refresh`: reads every recorded resource where it lives (Neon, Lambda) and shows
//! how it drifted from the stage's state. Settings changed outside the deployer are put
//! back by the next deploy (it compares with the live function, its URL and policy); a
//! resource deleted outside is forgotten here, under the stage's lock, so the next deploy
//! creates it again and says so ("Created").

use std::path::Path;

use serde::Serialize;

use crate::apply::Clients;
use crate::aws::is_code;
use crate::cli::DiffArgs;
use crate::config::Kind;
use crate::error::Failure;
use crate::neon::NeonError;
use crate::neon::models::{BranchId, EndpointId, ProjectId};
use crate::state::{ResourceState, StageState, Store};

/// One resource's drift.
#[derive(Debug, Serialize)]
struct Drift {
    resource: String,
    kind: &'static str,
    /// Gone from Neon or AWS: forgotten, so the next deploy creates it.
    deleted: bool,
    changes: Vec<String>,
}

pub async fn run(config_path: &Path, args: &DiffArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (env, config) = super::load(config_path, &stage)?;
    let store = super::store(&config).await?;
    let state = super::load_state(&store, &config, &stage).await?;
    if state.resources.is_empty() {
        return Err(
            Failure::bad_input(format!("stage `{stage}` has not been deployed"))
                .hint(format!("deployer deploy --stage {stage}")),
        );
    }
    let clients = super::clients(&config, &env, &state, true).await?;
    let held = store.lock(&stage, "refresh").await?;
    let result = refresh_locked(&config.app, &stage, &store, &clients, args.json).await;
    held.release().await;
    result
}

async fn refresh_locked(
    app: &str,
    stage: &str,
    store: &Store,
    clients: &Clients,
    json: bool,
) -> Result<(), Failure> {
    let mut state = store.load(app, stage).await?;
    let mut drifts = Vec::new();
    for (name, rs) in &state.resources {
        let (deleted, changes) = read(name, rs, clients).await?;
        if deleted || !changes.is_empty() {
            drifts.push(Drift {
                resource: name.clone(),
                kind: rs.kind.label(),
                deleted,
                changes,
            });
        }
    }
    let deleted: Vec<&str> = drifts
        .iter()
        .filter(|d| d.deleted)
        .map(|d| d.resource.as_str())
        .collect();
    if !deleted.is_empty() {
        forget(&mut state, &deleted);
        store.save(&state).await?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&drifts).expect("drift serializes")
        );
        return Ok(());
    }
    if drifts.is_empty() {
        println!("No drift: stage `{stage}` is as recorded.");
        return Ok(());
    }
    println!("Drift in stage `{stage}`:");
    for d in &drifts {
        if d.deleted {
            println!(
                "  - {} {}: deleted outside the deployer; forgotten, `deployer deploy` creates it again",
                d.resource, d.kind
            );
        }
        for c in &d.changes {
            println!("  ~ {} {}: {c}", d.resource, d.kind);
        }
    }
    if drifts.iter().any(|d| !d.changes.is_empty()) {
        println!("`deployer deploy --stage {stage}` puts the changed settings back.");
    }
    Ok(())
}

/// Forgets `deleted`, and with them pending creates of the same names.
fn forget(state: &mut StageState, deleted: &[&str]) {
    for name in deleted {
        state.resources.remove(*name);
        state.pending.remove(*name);
    }
    state.serial += 1;
}

/// Whether the resource is gone, and what differs from the recorded inputs.
async fn read(
    name: &str,
    rs: &ResourceState,
    clients: &Clients,
) -> Result<(bool, Vec<String>), Failure> {
    let gone = |e: &NeonError| e.is_not_found();
    let id = |key: &'static str| rs.id(name, key).map(str::to_owned);
    let neon = || {
        clients.neon.as_ref().ok_or_else(|| {
            Failure::bad_input("NEON_API_KEY is not set, and this stage has Neon resources")
        })
    };
    let mut changes = Vec::new();
    let found = match rs.kind {
        Kind::Link => true,
        // A preview stage's project is its branch of the base's project.
        Kind::Project if crate::apply::is_preview(rs) => found(
            neon()?
                .get_branch(&ProjectId(id("project_id")?), &BranchId(id("branch_id")?))
                .await
                .map(drop),
        )?,
        Kind::Project => match neon()?.get_project(&ProjectId(id("project_id")?)).await {
            Ok(p) => {
                if let Some(recorded) = rs.inputs["name"].as_str()
                    && recorded != p.name
                {
                    changes.push(format!("name: {recorded} (recorded) -> {} (live)", p.name));
                }
                if let (Some(recorded), Some(live)) = (
                    rs.inputs["history_retention_seconds"].as_i64(),
                    p.history_retention_seconds,
                ) && recorded != live
                {
                    changes.push(format!(
                        "history_retention_seconds: {recorded} (recorded) -> {live} (live)"
                    ));
                }
                true
            }
            Err(e) if gone(&e) => false,
            Err(e) => return Err(e.into()),
        },
        Kind::Branch => found(
            neon()?
                .get_branch(&ProjectId(id("project_id")?), &BranchId(id("branch_id")?))
                .await
                .map(drop),
        )?,
        Kind::Endpoint => found(
            neon()?
                .get_endpoint(
                    &ProjectId(id("project_id")?),
                    &EndpointId(id("endpoint_id")?),
                )
                .await
                .map(drop),
        )?,
        Kind::Role | Kind::Database => {
            let (neon, pid, bid, name) = (
                neon()?,
                ProjectId(id("project_id")?),
                BranchId(id("branch_id")?),
                id("name")?,
            );
            found(match rs.kind {
                Kind::Role => neon.get_role(&pid, &bid, &name).await.map(drop),
                _ => neon.get_database(&pid, &bid, &name).await.map(drop),
            })?
        }
        Kind::Function => {
            let aws = clients.aws.as_ref().ok_or_else(|| {
                Failure::bad_input("no AWS configuration for this stage's function")
            })?;
            let function = id("function_name")?;
            match aws
                .lambda
                .get_function_configuration()
                .function_name(&function)
                .send()
                .await
            {
                Ok(conf) => {
                    for (key, live) in [("memory", conf.memory_size()), ("timeout", conf.timeout())]
                    {
                        if let (Some(recorded), Some(live)) = (rs.inputs[key].as_i64(), live)
                            && recorded != i64::from(live)
                        {
                            changes.push(format!("{key}: {recorded} (recorded) -> {live} (live)"));
                        }
                    }
                    let wanted = rs.inputs["url"].as_bool().unwrap_or(false);
                    let url = crate::aws::url::UrlState::read(&aws.lambda, &function)
                        .await
                        .map_err(Failure::remote)?;
                    changes.extend(url.drift(wanted));
                    true
                }
                Err(e) if is_code(&e, "ResourceNotFoundException") => false,
                Err(e) => {
                    return Err(Failure::remote(crate::aws::AwsError::sdk(
                        format!("read function `{function}`"),
                        &e,
                    )));
                }
            }
        }
    };
    Ok((!found, changes))
}

/// A read's answer: found, gone (404), or a failure.
fn found(read: Result<(), NeonError>) -> Result<bool, Failure> {
    match read {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}
