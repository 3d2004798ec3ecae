//! Carrying out a plan: every step whose prerequisites are done runs, up to `concurrency`
//! at once; each finished step is recorded in the state (saved at once, so a run killed at
//! any moment resumes), and reported as one line in completion order. A failed step lets the
//! steps already running finish and record; then the run stops and reports every failure.
//!
//! One module per resource kind does the remote work (`converge` and `delete`); Neon calls on
//! one project are serialized ([`ProjectLocks`]), since a project runs one operation at a
//! time and answers 423 to the rest.

mod branch;
mod database;
mod endpoint;
mod function;

pub use function::{LAMBDA_ENV_LIMIT_BYTES, environment_size};
mod link;
mod preview;
mod project;
mod recorder;
mod records;
mod role;

pub use preview::{delete_branch as delete_preview_branch, is_preview};
pub use recorder::Recorder;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::aws::{Aws, AwsError, NoRegion};
use crate::build::BuildError;
use crate::config::{Config, Kind, Resource};
use crate::error::Failure;
use crate::neon::models::ProjectId;
use crate::neon::{Neon, NeonError};
use crate::plan::{self, Action, Change, Plan};
use crate::state::{ResourceState, StageState, StateError};

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
    #[error("NEON_API_KEY is not set, and infra.toml declares Neon resources")]
    NoNeonKey,
    #[error(
        "function `{function}`: its environment would be {size} bytes; Lambda allows {}",
        function::LAMBDA_ENV_LIMIT_BYTES
    )]
    EnvTooLarge { function: String, size: usize },
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

/// A failed step: which resource, doing what, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {verb} {resource} ({})", kind.label())]
pub struct StepError {
    pub verb: &'static str,
    pub resource: String,
    pub kind: Kind,
    #[source]
    pub cause: StepCause,
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        match e.cause {
            StepCause::EnvTooLarge { .. } => Failure::bad_input(e.cause)
                .hint("link fewer properties, or shorten the environment values"),
            StepCause::Build(ref b) if b.is_bad_input() => {
                let hint = b.hint();
                Failure::bad_input(e).maybe_hint(hint)
            }
            StepCause::Preview(_) => Failure::bad_input(e).hint(
                "check [stages] branch_from and branch_parent in infra.toml, and the branches of the base stage's project",
            ),
            StepCause::NoNeonKey => Failure::bad_input(e.cause).hint(
                "create an API key in the Neon console and export NEON_API_KEY=... (or put it in .env)",
            ),
            StepCause::Neon(_) | StepCause::Aws(_) | StepCause::Build(_) => {
                let hint = match &e.cause {
                    StepCause::Neon(n) => n.hint(),
                    StepCause::Aws(a) => a.hint(),
                    StepCause::Build(b) => b.hint(),
                    _ => None,
                };
                Failure::remote(e).maybe_hint(hint)
            }
            _ => Failure::remote(e),
        }
    }
}

/// One async lock per Neon project: its changes go one at a time.
#[derive(Debug, Default)]
struct ProjectLocks(Mutex<HashMap<ProjectId, Arc<tokio::sync::Mutex<()>>>>);

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
    clients: &'a Clients,
    recorder: &'a Recorder,
    locks: &'a ProjectLocks,
    prepared: &'a function::Prepared,
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

    fn output(&self, name: &str, key: &str) -> Result<String, StepCause> {
        self.recorded(name)?
            .outputs
            .get(key)
            .cloned()
            .ok_or_else(|| StepCause::Unresolved(format!("{name}.{key}")))
    }

    fn project_of(&self, name: &str) -> Result<ProjectId, StepCause> {
        Ok(ProjectId(
            self.recorded(name)?.id(name, "project_id")?.to_owned(),
        ))
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
    pub inputs: &'a serde_json::Value,
}

/// How a finished step is reported.
enum Done {
    /// Changed remotely: the verb of its line.
    Changed(&'static str),
    /// Dropped from the stage, kept in Neon: the import line to adopt it again.
    Retained(String),
    /// Compared and found equal (an unchanged function).
    Same,
}

/// Runs the plan's steps; returns how many resources changed, or every step failure.
pub struct Applier<'a> {
    pub config: &'a Config,
    pub stage: &'a str,
    pub project_dir: &'a Path,
    pub clients: &'a Clients,
    pub concurrency: usize,
}

impl Applier<'_> {
    /// [`Applier::apply`], its failures as one [`Failure`] for the command to print.
    pub async fn run(&self, plan: &Plan, recorder: &Recorder) -> Result<usize, Failure> {
        self.apply(plan, recorder).await.map_err(|errors| {
            Failure::many(errors.into_iter().map(Failure::from).collect())
                .expect("a failed apply names its failures")
        })
    }

    pub async fn apply(&self, plan: &Plan, recorder: &Recorder) -> Result<usize, Vec<StepError>> {
        let locks = ProjectLocks::default();
        function::record_before_creating(self.config, self.stage, plan, recorder).await?;
        // Builds and IAM roles overlap the Neon steps, unless steps run one at a time.
        let prepared = if self.concurrency > 1 {
            function::Prepared::start(
                self.config,
                self.stage,
                self.project_dir,
                self.clients,
                plan,
            )
        } else {
            function::Prepared::default()
        };
        let n = plan.changes.len();
        let index: HashMap<&str, usize> = plan
            .changes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.resource.as_str(), i))
            .collect();
        let prerequisites: Vec<Vec<usize>> = plan
            .changes
            .iter()
            .enumerate()
            .map(|(i, c)| prerequisites(plan, &index, i, c))
            .collect();
        let mut done = vec![false; n];
        let mut started = vec![false; n];
        let mut failures = Vec::new();
        let mut changed = 0;
        let mut running = FuturesUnordered::new();
        loop {
            if failures.is_empty() {
                for i in 0..n {
                    if running.len() >= self.concurrency.max(1) {
                        break;
                    }
                    if started[i] || !prerequisites[i].iter().all(|&p| done[p]) {
                        continue;
                    }
                    started[i] = true;
                    let change = &plan.changes[i];
                    if change.action == Action::Unchanged && change.kind != Kind::Function {
                        done[i] = true;
                        continue;
                    }
                    let step = Step {
                        config: self.config,
                        stage: self.stage,
                        project_dir: self.project_dir,
                        clients: self.clients,
                        recorder,
                        locks: &locks,
                        prepared: &prepared,
                        state: recorder.snapshot(),
                        name: &change.resource,
                    };
                    running.push(async move {
                        let t = Instant::now();
                        (i, run_step(step, change).await, t.elapsed())
                    });
                }
            }
            let Some((i, result, took)) = running.next().await else {
                // Nothing running: unchanged steps finished without running may have made
                // others ready.
                let ready_left = failures.is_empty()
                    && (0..n).any(|i| !started[i] && prerequisites[i].iter().all(|&p| done[p]));
                if ready_left {
                    continue;
                }
                break;
            };
            let change = &plan.changes[i];
            match result {
                Ok(Done::Same) => done[i] = true,
                Ok(Done::Changed(verb)) => {
                    done[i] = true;
                    changed += 1;
                    report(verb, change, took);
                }
                Ok(Done::Retained(import)) => {
                    done[i] = true;
                    changed += 1;
                    report("Retained", change, took);
                    println!("          kept in Neon; to manage it again: import = \"{import}\"");
                }
                Err(cause) => failures.push(StepError {
                    verb: verb_of(&change.action, change.kind),
                    resource: change.resource.clone(),
                    kind: change.kind,
                    cause,
                }),
            }
        }
        if failures.is_empty() {
            Ok(changed)
        } else {
            Err(failures)
        }
    }
}

/// The steps that must finish before step `i`: its declared prerequisites; and for a
/// resource leaving the stage, every declared step and every departing resource of a kind
/// that may hang from it (a database before its branch before its project).
fn prerequisites(plan: &Plan, index: &HashMap<&str, usize>, i: usize, c: &Change) -> Vec<usize> {
    match c.action {
        Action::Delete | Action::Retain => plan.changes[..i]
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                !matches!(o.action, Action::Delete | Action::Retain) || o.kind > c.kind
            })
            .map(|(j, _)| j)
            .collect(),
        _ => c
            .after
            .iter()
            .filter_map(|a| index.get(a.as_str()).copied())
            .collect(),
    }
}

fn verb_of(action: &Action, kind: Kind) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Import(_) => "import",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "delete",
        Action::Retain => "retain",
        Action::Unchanged if kind == Kind::Function => "deploy",
        Action::Unchanged => "check",
    }
}

fn report(verb: &str, change: &Change, took: Duration) {
    crate::output::step(verb, &change.resource, change.kind.label(), took);
}

async fn run_step(step: Step<'_>, change: &Change) -> Result<Done, StepCause> {
    // A run whose lease passed to another stops before its next change.
    step.recorder.check_lease()?;
    let declared = || -> Result<&Resource, StepCause> {
        step.config
            .resource(step.name)
            .ok_or_else(|| StepCause::Unresolved(step.name.to_owned()))
    };
    match &change.action {
        Action::Retain => {
            let import = step
                .state
                .resources
                .get(step.name)
                .map(ResourceState::import_id)
                .unwrap_or_default();
            step.recorder.forget(step.name).await?;
            Ok(Done::Retained(import))
        }
        Action::Delete => {
            delete(&step).await?;
            step.recorder.forget(step.name).await?;
            Ok(Done::Changed("Deleted"))
        }
        Action::Replace => {
            delete(&step).await?;
            step.recorder.forget(step.name).await?;
            let step = Step {
                state: step.recorder.snapshot(),
                ..step
            };
            converge(&step, declared()?, None).await?;
            Ok(Done::Changed("Replaced"))
        }
        Action::Create => {
            converge(&step, declared()?, None).await?;
            Ok(Done::Changed("Created"))
        }
        Action::Import(id) => {
            converge(&step, declared()?, Some(id)).await?;
            Ok(Done::Changed("Imported"))
        }
        Action::Update => {
            converge(&step, declared()?, None).await?;
            Ok(Done::Changed("Updated"))
        }
        Action::Unchanged => match converge(&step, declared()?, None).await? {
            true => Ok(Done::Changed("Updated")),
            false => Ok(Done::Same),
        },
    }
}

/// Creates, adopts or updates `r`, and records it; true if anything changed remotely.
async fn converge(step: &Step<'_>, r: &Resource, import: Option<&str>) -> Result<bool, StepCause> {
    let inputs = plan::desired_inputs(r, &step.state);
    let recorded = step.state.resources.get(&r.name);
    let target = Target {
        resource: r,
        recorded,
        import,
        inputs: &inputs,
    };
    let result = match r.kind {
        Kind::Project => project::converge(step, target).await?,
        Kind::Branch => branch::converge(step, target).await?,
        Kind::Endpoint => endpoint::converge(step, target).await?,
        Kind::Role => role::converge(step, target).await?,
        Kind::Database => database::converge(step, target).await?,
        Kind::Link => link::converge(step, r)?,
        Kind::Function => {
            let (recorded_now, changed) = function::converge(step, r).await?;
            let unchanged = recorded.is_some_and(|s| {
                s.outputs == recorded_now.outputs && s.inputs == inputs && s.ids == recorded_now.ids
            });
            if !unchanged {
                save(step, r, recorded_now, inputs).await?;
            }
            return Ok(changed || !unchanged);
        }
    };
    save(step, r, result, inputs).await?;
    Ok(true)
}

async fn save(
    step: &Step<'_>,
    r: &Resource,
    recorded: Recorded,
    inputs: serde_json::Value,
) -> Result<(), StateError> {
    step.recorder
        .record(
            &r.name,
            ResourceState {
                kind: r.kind,
                ids: recorded.ids,
                inputs,
                outputs: recorded.outputs,
                imported: false,
            },
        )
        .await
}

/// Deletes one recorded resource remotely. Children of a project that leaves the stage in
/// the same run go with it: no call needed.
async fn delete(step: &Step<'_>) -> Result<(), StepCause> {
    let Some(rs) = step.state.resources.get(step.name) else {
        return Ok(());
    };
    let leaving = |other: &String| other != step.name && step.config.resource(other).is_none();
    let project_going = |pid: &str| {
        step.state.resources.iter().any(|(other, s)| {
            leaving(other)
                && s.kind == Kind::Project
                && !preview::is_preview(s)
                && s.ids.get("project_id").map(String::as_str) == Some(pid)
        })
    };
    // A preview stage's branches live in its base's project: each is deleted (copies of
    // declared branches too); what is on a departing branch goes with it.
    let branch_going = |bid: Option<&String>| {
        step.state.resources.iter().any(|(other, s)| {
            leaving(other)
                && matches!(s.kind, Kind::Project | Kind::Branch)
                && bid.is_some()
                && s.ids.get("branch_id") == bid
        })
    };
    if rs.kind.is_neon()
        && rs.kind != Kind::Project
        && (project_going(rs.id(step.name, "project_id")?)
            || (rs.kind != Kind::Branch && branch_going(rs.ids.get("branch_id"))))
    {
        return Ok(());
    }
    match rs.kind {
        Kind::Project => project::delete(step, rs).await,
        Kind::Branch => branch::delete(step, rs).await,
        Kind::Endpoint => endpoint::delete(step, rs).await,
        Kind::Role => role::delete(step, rs).await,
        Kind::Database => database::delete(step, rs).await,
        Kind::Link => Ok(()),
        Kind::Function => function::delete(step, rs).await,
    }
}

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
fn warn_import_differences(
    name: &str,
    desired: &serde_json::Value,
    found: &[(&str, serde_json::Value)],
) {
    for (field, f) in found {
        let d = &desired[*field];
        if !d.is_null() && d != f && d != &serde_json::json!(plan::KNOWN_AFTER) {
            eprintln!(
                "warning: {name}: imported `{field}` is {f}, infra.toml says {d}; the next deploy will change it (or replace, for fields that cannot change)"
            );
        }
    }
}
