//! The resource kinds, one module each. A kind's module owns everything about it: the IDs
//! and outputs it records (typed, both ways), the inputs it is deployed with and which of
//! them replace it, how `converge` creates, adopts, imports or updates it, what `refresh`
//! reads of it, how it is deleted, and its request bodies. This file is the contract
//! ([`Step`], [`Target`], [`Recorded`], [`StepCause`]) and the one dispatch by kind that
//! the engine (`plan`, `apply`, `commands::refresh`) goes through; none of them names a
//! kind's field.
//!
//! Adding a kind: its module here, a `Kind` and `Spec` variant in `config`, and an arm in
//! each dispatch below.

pub mod alias;
pub mod branch;
pub mod database;
pub mod endpoint;
pub mod function;
pub mod link;
pub mod migrations;
pub mod preview;
pub mod project;
pub mod record;
pub mod role;
pub mod version;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::aws::{Aws, AwsError, NoRegion};
use crate::build::BuildError;
use crate::config::{Config, Kind, Part, Resource, Spec, Template};
use crate::neon::models::ProjectId;
use crate::neon::{Neon, NeonError};
use crate::state::{Recorder, ResourceState, StageState, StateError};

pub use record::Record;

/// What a value is shown as while it depends on an output not yet known.
pub const KNOWN_AFTER: &str = "(known after deploy)";

/// The clients a run may need; `None` where the stage needs no such service.
#[derive(Debug, Default)]
pub struct Clients {
    pub neon: Option<Neon>,
    pub aws: Option<Aws>,
}

/// What one step produced, for the state.
#[derive(Debug, Default)]
pub struct Recorded {
    pub ids: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
}

impl Recorded {
    /// A record from typed IDs and outputs.
    pub fn typed(ids: &impl Serialize, outputs: &impl Serialize) -> Recorded {
        Recorded {
            ids: crate::state::to_map(ids),
            outputs: crate::state::to_map(outputs),
        }
    }

    /// What is recorded already: a kind with nothing to change in place keeps it.
    pub fn kept(rs: &ResourceState) -> Recorded {
        Recorded {
            ids: rs.ids.clone(),
            outputs: rs.outputs.clone(),
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepCause {
    #[error(transparent)]
    Neon(#[from] NeonError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    NoRegion(#[from] NoRegion),
    #[error(transparent)]
    Migrate(#[from] crate::migrate::RunError),
    #[error(transparent)]
    Release(#[from] version::ReleaseError),
    #[error(transparent)]
    UrlForbidden(#[from] alias::UrlForbidden),
    #[error("NEON_API_KEY is not set, and infra.toml declares Neon resources")]
    NoNeonKey,
    #[error(
        "function `{function}`: its environment would be {size} bytes; Lambda allows {}",
        function::LAMBDA_ENV_LIMIT_BYTES
    )]
    EnvTooLarge { function: String, size: usize },
    #[error(
        "function `{function}`: its code goes through the state bucket `{bucket}`, which is in {bucket_region}; Lambda fetches code only from a bucket in the function's region, {region}"
    )]
    CodeBucketRegion {
        function: String,
        bucket: String,
        bucket_region: String,
        region: String,
    },
    #[error("this run has no AWS clients, yet a function step ran (a bug in deployer)")]
    NoAws,
    /// A preview stage's branch cannot be made or removed as asked.
    #[error("{0}")]
    Preview(String),
    #[error("`{0}` refers to an output that is not known")]
    Unresolved(String),
    #[error("a background task of the function step (its build or IAM role) stopped unexpectedly")]
    Join(#[from] tokio::task::JoinError),
}

/// One async lock per Neon project: its changes go one at a time (Neon runs one operation
/// per project and answers 423 to the rest).
#[derive(Debug, Default)]
pub struct ProjectLocks(Mutex<HashMap<ProjectId, Arc<tokio::sync::Mutex<()>>>>);

impl ProjectLocks {
    async fn hold(&self, project: &ProjectId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(project.clone())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// What a step needs: the run's settings and clients, the state as it was when the step
/// started (its prerequisites done), and the recorder.
pub struct Step<'a> {
    pub config: &'a Config,
    pub stage: &'a str,
    pub project_dir: &'a Path,
    pub clients: &'a Clients,
    pub recorder: &'a Recorder,
    pub locks: &'a ProjectLocks,
    pub prepared: &'a function::Prepared,
    /// `--allow-missing`: applied migrations with no file are left alone.
    pub allow_missing: bool,
    /// The state when the step started.
    pub state: StageState,
    pub name: &'a str,
}

impl Step<'_> {
    fn neon(&self) -> Result<&Neon, StepCause> {
        self.clients.neon.as_ref().ok_or(StepCause::NoNeonKey)
    }

    fn aws(&self) -> Result<&Aws, StepCause> {
        // Commands connect to AWS whenever a function is declared or recorded.
        self.clients.aws.as_ref().ok_or(StepCause::NoAws)
    }

    /// The recorded resource `name` (a prerequisite), or an error naming it.
    fn recorded(&self, name: &str) -> Result<&ResourceState, StepCause> {
        self.state
            .resources
            .get(name)
            .ok_or_else(|| StepCause::Unresolved(name.to_owned()))
    }

    /// The typed IDs recorded for the prerequisite `name`.
    fn ids_of<T: DeserializeOwned>(&self, name: &str) -> Result<T, StepCause> {
        Ok(self.recorded(name)?.ids_as(name)?)
    }

    fn output(&self, name: &str, key: &str) -> Result<String, StepCause> {
        self.recorded(name)?
            .outputs
            .get(key)
            .cloned()
            .ok_or_else(|| StepCause::Unresolved(format!("{name}.{key}")))
    }

    async fn hold_project(&self, project: &ProjectId) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.hold(project).await
    }
}

/// What one `converge` works towards: the declared resource, what the state recorded of
/// it (nothing for a create), the ID to adopt (`import`), and its desired inputs.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub resource: &'a Resource,
    pub recorded: Option<&'a ResourceState>,
    pub import: Option<&'a str>,
    pub inputs: &'a Value,
}

/// Where a Neon resource lives: its project and, for what sits on a branch, the branch.
/// Every Neon kind records these IDs under these names, so one type reads them all.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Place {
    pub project_id: Option<ProjectId>,
    pub branch_id: Option<crate::neon::models::BranchId>,
}

impl Place {
    pub fn of(rs: &ResourceState) -> Place {
        rs.ids_as("").unwrap_or_default()
    }
}

impl crate::state::KindRecord for ResourceState {
    fn migrate(&mut self, written_as: u32) {
        if self.kind == Kind::Project {
            project::migrate(self, written_as);
        }
    }

    fn project_id(&self) -> Option<String> {
        Place::of(self).project_id.map(|p| p.0)
    }

    fn check(&self, name: &str) -> Result<(), StateError> {
        Record::read(name, self).map(drop)
    }

    fn public(&self) -> Option<ResourceState> {
        match self.kind {
            Kind::Project => project::public(self),
            Kind::Branch => branch::public(self),
            _ => None,
        }
    }
}

// ---- the dispatch by kind -------------------------------------------------------------

/// Input fields that cannot change in place: a change replaces the resource.
pub fn replaced_by(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Project => project::REPLACED_BY,
        Kind::Preview => preview::REPLACED_BY,
        Kind::Branch => branch::REPLACED_BY,
        Kind::Endpoint => endpoint::REPLACED_BY,
        Kind::Role => role::REPLACED_BY,
        Kind::Database => database::REPLACED_BY,
        Kind::Migrations | Kind::Link | Kind::Function => &[],
    }
}

/// Input fields whose values are secrets: diffs say only that they changed.
pub fn secret_inputs(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Link => link::SECRET_INPUTS,
        Kind::Function => function::SECRET_INPUTS,
        _ => &[],
    }
}

/// Whether a create lists its inputs as changed fields (a migration set: its migrations).
pub fn fields_on_create(kind: Kind) -> bool {
    kind == Kind::Migrations && migrations::FIELDS_ON_CREATE
}

/// How `diff` shows one field's change, where a kind says it better than `old -> new`.
pub fn describe_field(kind: Kind, field: &str, old: &Value, new: &Value) -> Option<String> {
    match kind {
        Kind::Migrations => migrations::describe(old, new),
        Kind::Function => function::describe(field, old, new),
        _ => None,
    }
}

/// Whether an update of this kind changes its outputs (what references them changes too).
pub fn update_changes_outputs(kind: Kind) -> bool {
    matches!(kind, Kind::Branch | Kind::Database | Kind::Link)
}

/// The settings a resource should have, as recorded in state after a deploy; references
/// are filled from the state's outputs.
pub fn desired_inputs(r: &Resource, state: &StageState) -> Value {
    let resolve = |t: &Template| resolve_or_marker(t, state);
    match &r.spec {
        Spec::Project(p) => project::desired_inputs(p, resolve),
        Spec::PreviewBranch(p) => preview::desired_inputs(p),
        Spec::Branch(b) => branch::desired_inputs(b, resolve),
        Spec::Endpoint(e) => endpoint::desired_inputs(e),
        Spec::Role(ro) => role::desired_inputs(ro, resolve),
        Spec::Database(d) => database::desired_inputs(d, resolve),
        Spec::Migrations(m) => migrations::desired_inputs(m),
        Spec::Link(l) => link::desired_inputs(l, resolve),
        Spec::Function(f) => function::desired_inputs(f, state),
    }
}

/// Outputs recorded incomplete, or always moved by a deploy: each is planned as changing
/// to "known after deploy" (field, what is recorded).
pub fn outputs_to_compute(
    r: &Resource,
    recorded: &ResourceState,
) -> Vec<(&'static str, Option<Value>)> {
    match &r.spec {
        Spec::Project(_) => project::outputs_to_compute(recorded),
        Spec::PreviewBranch(p) => preview::outputs_to_compute(p, recorded),
        Spec::Database(_) => database::outputs_to_compute(recorded),
        _ => Vec::new(),
    }
}

/// Creates, adopts or updates `target`'s resource; what to record of it.
pub async fn converge(step: &Step<'_>, target: Target<'_>) -> Result<Recorded, StepCause> {
    let r = target.resource;
    match &r.spec {
        Spec::Project(_) => project::converge(step, target).await,
        Spec::PreviewBranch(p) => preview::converge(step, target, p).await,
        Spec::Branch(b) => branch::converge(step, target, b).await,
        Spec::Endpoint(e) => endpoint::converge(step, target, e).await,
        Spec::Role(ro) => role::converge(step, target, ro).await,
        Spec::Database(d) => database::converge(step, target, d).await,
        Spec::Migrations(m) => migrations::converge(step, target, m).await,
        Spec::Link(l) => link::converge(step, r, l),
        Spec::Function(_) => unreachable!("functions converge through function::converge"),
    }
}

/// Deletes the recorded resource `step.name` remotely. What sits on a project or branch
/// that leaves the stage in the same run goes with it: no call needed.
pub async fn delete(step: &Step<'_>) -> Result<(), StepCause> {
    let Some(rs) = step.state.resources.get(step.name) else {
        return Ok(());
    };
    if goes_with_its_parent(step, rs) {
        return Ok(());
    }
    match rs.kind {
        Kind::Project => project::delete(step, rs).await,
        Kind::Preview => preview::delete(step, rs).await,
        Kind::Branch => branch::delete(step, rs).await,
        Kind::Endpoint => endpoint::delete(step, rs).await,
        Kind::Role => role::delete(step, rs).await,
        Kind::Database => database::delete(step, rs).await,
        Kind::Migrations => {
            migrations::delete(rs);
            Ok(())
        }
        Kind::Link => Ok(()),
        Kind::Function => function::delete(step, rs).await,
    }
}

/// Whether `rs` is on a project (not a preview's, which is the base's) or a branch that
/// leaves the stage in this run, so that deleting it is part of deleting that.
fn goes_with_its_parent(step: &Step<'_>, rs: &ResourceState) -> bool {
    if !rs.kind.is_neon() || matches!(rs.kind, Kind::Project | Kind::Preview) {
        return false;
    }
    let place = Place::of(rs);
    let leaving = step
        .state
        .resources
        .iter()
        .filter(|(other, _)| *other != step.name && step.config.resource(other).is_none())
        .map(|(_, s)| (s.kind, Place::of(s)));
    for (kind, other) in leaving {
        let same_project = other.project_id.is_some() && other.project_id == place.project_id;
        let same_branch = other.branch_id.is_some() && other.branch_id == place.branch_id;
        let parent = match kind {
            Kind::Project => same_project,
            // A preview stage's branches live in its base's project: each is deleted
            // (copies of declared branches too); what is on a departing branch goes with it.
            Kind::Preview | Kind::Branch => rs.kind != Kind::Branch && same_branch,
            _ => false,
        };
        if parent {
            return true;
        }
    }
    false
}

/// What `refresh` found of a recorded resource: gone, or there with these drifts.
#[derive(Debug)]
pub enum Live {
    Gone,
    Found(Vec<String>),
}

/// Reads the recorded resource `name` where it lives.
pub async fn read(clients: &Clients, name: &str, rs: &ResourceState) -> Result<Live, StepCause> {
    let neon = || clients.neon.as_ref().ok_or(StepCause::NoNeonKey);
    match rs.kind {
        Kind::Project => project::read(neon()?, name, rs).await,
        Kind::Preview => preview::read(neon()?, name, rs).await,
        Kind::Branch => branch::read(neon()?, name, rs).await,
        Kind::Endpoint => endpoint::read(neon()?, name, rs).await,
        Kind::Role => role::read(neon()?, name, rs).await,
        Kind::Database => database::read(neon()?, name, rs).await,
        // What a database has applied is `deployer migrate --dry-run`'s to show: the set's
        // record holds no connection string to read it with.
        Kind::Migrations | Kind::Link => Ok(Live::Found(Vec::new())),
        Kind::Function => {
            let aws = clients.aws.as_ref().ok_or(StepCause::NoAws)?;
            function::read(aws, name, rs).await
        }
    }
}

/// The value to write as `import = "..."` to adopt a recorded resource again.
pub fn import_id(name: &str, rs: &ResourceState) -> String {
    let id = match rs.kind {
        Kind::Project => project::import_id(name, rs),
        Kind::Branch | Kind::Preview => branch::import_id(name, rs),
        Kind::Endpoint => endpoint::import_id(name, rs),
        Kind::Role | Kind::Database => role::import_id(name, rs),
        Kind::Migrations | Kind::Link | Kind::Function => Ok(String::new()),
    };
    id.unwrap_or_default()
}

/// A read's answer as what `refresh` shows: found (with no drift), gone (404), or a failure.
fn found<T>(read: Result<T, NeonError>) -> Result<Live, StepCause> {
    match read {
        Ok(_) => Ok(Live::Found(Vec::new())),
        Err(e) if e.is_not_found() => Ok(Live::Gone),
        Err(e) => Err(e.into()),
    }
}

// ---- templates --------------------------------------------------------------------------

/// Fills a template's references from `outputs`; `None` if one is not known.
pub fn resolve_template<'a>(
    t: &Template,
    outputs: impl Fn(&str) -> Option<&'a BTreeMap<String, String>>,
) -> Option<String> {
    let mut out = String::new();
    for p in &t.0 {
        match p {
            Part::Text(s) => out.push_str(s),
            Part::Ref { resource, output } => out.push_str(outputs(resource)?.get(output)?),
        }
    }
    Some(out)
}

/// The recorded outputs of `name`, if it was deployed.
pub fn outputs_of<'a>(state: &'a StageState, name: &str) -> Option<&'a BTreeMap<String, String>> {
    state.resources.get(name).map(|r| &r.outputs)
}

/// A template resolved from the state's outputs, or the "known after deploy" marker.
pub fn resolve_or_marker(t: &Template, state: &StageState) -> Value {
    resolve_template(t, |n| outputs_of(state, n))
        .map_or(Value::String(KNOWN_AFTER.to_owned()), Value::String)
}

// ---- shared by the Neon kinds -----------------------------------------------------------

/// Creates, unless `lookup` finds the resource already there. Names are unique within
/// their parent, so looking first resumes an interrupted run, and looking again after a 409
/// or an uncertain failure (5xx, no answer: the create may have happened) never duplicates.
async fn create_or_adopt<T, L, LF, C, CF>(lookup: L, create: C) -> Result<T, NeonError>
where
    L: Fn() -> LF,
    LF: std::future::Future<Output = Result<Option<T>, NeonError>>,
    C: Fn() -> CF,
    CF: std::future::Future<Output = Result<T, NeonError>>,
{
    crate::retry::retry(
        crate::retry::Policy::ADOPT,
        || async {
            if let Some(found) = lookup().await? {
                return Ok(found);
            }
            create().await
        },
        |e: &NeonError| {
            if e.status() == Some(409) || e.uncertain() {
                crate::retry::Verdict::Retry
            } else {
                crate::retry::Verdict::Stop
            }
        },
    )
    .await
}

/// Warns where an imported resource differs from infra.toml (the next deploy changes it).
fn warn_import_differences(name: &str, desired: &Value, found: &[(&str, Value)]) {
    for (field, f) in found {
        let d = &desired[*field];
        if !d.is_null() && d != f && d != &Value::String(KNOWN_AFTER.to_owned()) {
            eprintln!(
                "warning: {name}: imported `{field}` is {f}, infra.toml says {d}; the next deploy will change it (or replace, for fields that cannot change)"
            );
        }
    }
}

/// A drift line for `refresh`: `field: recorded (recorded) -> live (live)`.
fn drift(field: &str, recorded: impl std::fmt::Display, live: impl std::fmt::Display) -> String {
    format!("{field}: {recorded} (recorded) -> {live} (live)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neon::models::{BranchId, EndpointId};
    use crate::state::to_map;

    /// Every output infra.toml may reference is one the step for that kind produces.
    #[test]
    fn every_referenceable_output_is_produced() {
        let project = to_map(&project::Outputs {
            id: ProjectId::from("p"),
            name: "n".into(),
            default_branch_id: Some(BranchId::from("b")),
            branch_id: Some(BranchId::from("b")),
            expires_at: Some("2026-12-01T00:00:00Z".into()),
            database: Some(project::DefaultDatabase {
                connection_uri: "u".into(),
                connection_uri_pooler: "u".into(),
                database_host: "h".into(),
                database_name: "d".into(),
                database_user: "r".into(),
                database_password: "s".into(),
            }),
        });
        let cases = [
            (Kind::Project, project.clone()),
            (Kind::Preview, project),
            (
                Kind::Branch,
                to_map(&branch::Outputs {
                    id: BranchId::from("b"),
                }),
            ),
            (
                Kind::Endpoint,
                to_map(&endpoint::Outputs {
                    id: EndpointId::from("e"),
                    host: "h".into(),
                }),
            ),
            (
                Kind::Role,
                to_map(&role::Outputs {
                    name: "r".into(),
                    password: "s".into(),
                }),
            ),
            (
                Kind::Database,
                to_map(&database::Outputs {
                    name: "d".into(),
                    connection_uri: "u".into(),
                    connection_uri_pooler: "p".into(),
                }),
            ),
            (
                Kind::Function,
                to_map(&function::Outputs {
                    name: "f".into(),
                    arn: "a".into(),
                    url: Some("https://x".into()),
                    version: Some("1".into()),
                }),
            ),
        ];
        for (kind, produced) in cases {
            for output in kind.outputs() {
                assert!(
                    produced.contains_key(*output),
                    "{} declares `{output}`, but its step does not produce it: {produced:?}",
                    kind.label()
                );
            }
        }
    }

    #[test]
    fn absent_outputs_are_left_out_not_empty() {
        let map = to_map(&function::Outputs {
            name: "f".into(),
            arn: "a".into(),
            url: None,
            version: None,
        });
        assert!(!map.contains_key("url"));
    }
}
