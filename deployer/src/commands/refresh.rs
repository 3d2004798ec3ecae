//! `deployer refresh`: reads every recorded resource where it lives (Neon, Lambda) and shows
//! how it drifted from the stage's state. Settings changed outside the deployer are put
//! back by the next deploy (it compares with the live function, its URL and policy); a
//! resource deleted outside is forgotten here, under the stage's lock, so the next deploy
//! creates it again and says so ("Created").

use std::path::Path;

use serde::Serialize;

use crate::apply::StepError;
use crate::cli::RefreshArgs;
use crate::error::Failure;
use crate::resources::{self, Clients, Live};
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

pub async fn run(config_path: &Path, args: &RefreshArgs) -> Result<(), Failure> {
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
    match resources::read(clients, name, rs).await {
        Ok(Live::Gone) => Ok((true, Vec::new())),
        Ok(Live::Found(changes)) => Ok((false, changes)),
        Err(cause) => Err(StepError {
            verb: "read",
            resource: name.to_owned(),
            kind: rs.kind,
            cause,
        }
        .into()),
    }
}
