//! Carrying out a plan: every step whose prerequisites are done runs, up to `concurrency`
//! at once; each finished step is recorded in the state (saved at once, so a run killed at
//! any moment resumes), and reported as one line in completion order. A failed step lets the
//! steps already running finish and record; then the run stops and reports every failure.
//!
//! The kinds' modules (`crate::resources`) do the remote work, through its dispatch; Neon
//! calls on one project are serialized (`ProjectLocks`), since a project runs one operation
//! at a time and answers 423 to the rest.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::config::{Config, Kind, Resource, Spec};
use crate::error::Failure;
use crate::plan::{Action, Change, Plan};
use crate::resources::function::{self, Prepared};
use crate::resources::{self, Clients, ProjectLocks, Recorded, Step, StepCause, Target};
use crate::state::{Recorder, ResourceState, StateError};

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
            StepCause::CodeBucketRegion { .. } => Failure::bad_input(e).hint(
                "keep the state in a bucket in the app's region (`bucket` under [state]), or make the code smaller than 50 MB zipped",
            ),
            StepCause::NoNeonKey => Failure::bad_input(e.cause).hint(
                "create an API key in the Neon console and export NEON_API_KEY=... (or put it in .env)",
            ),
            StepCause::Release(crate::resources::version::ReleaseError::CheckFailed { .. }) => {
                Failure::remote(e).hint(
                    "`deployer logs` shows what the function printed; fix it and deploy again (the URL keeps serving the release that is live)",
                )
            }
            StepCause::Release(crate::resources::version::ReleaseError::Aws(ref a)) => {
                let hint = a.hint();
                Failure::remote(e).maybe_hint(hint)
            }
            StepCause::UrlForbidden(ref u) => {
                let hint = u.hint();
                Failure::remote(e).hint(hint)
            }
            StepCause::Migrate(ref m) => {
                let hint = m.hint();
                Failure::remote(e).maybe_hint(hint)
            }
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
    /// `--allow-missing`: applied migrations with no file are left alone.
    pub allow_missing: bool,
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
        let functions = |wanted: fn(&Action) -> bool| -> Vec<&str> {
            plan.changes
                .iter()
                .filter(|c| c.kind == Kind::Function && wanted(&c.action))
                .map(|c| c.resource.as_str())
                .collect()
        };
        let created = functions(|a| *a == Action::Create);
        function::record_before_creating(self.config, self.stage, &created, recorder)
            .await
            .map_err(|(resource, e)| {
                vec![StepError {
                    verb: "create",
                    resource,
                    kind: Kind::Function,
                    cause: e.into(),
                }]
            })?;
        // Builds and IAM roles overlap the Neon steps, unless steps run one at a time.
        let prepared = if self.concurrency > 1 {
            let deployed = functions(|a| !matches!(a, Action::Delete | Action::Retain));
            Prepared::start(
                self.config,
                self.stage,
                self.project_dir,
                self.clients,
                &deployed,
                &recorder.snapshot(),
            )
        } else {
            Prepared::default()
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
                        allow_missing: self.allow_missing,
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
                .map(|rs| resources::import_id(step.name, rs))
                .unwrap_or_default();
            step.recorder.forget(step.name).await?;
            Ok(Done::Retained(import))
        }
        Action::Delete => {
            resources::delete(&step).await?;
            step.recorder.forget(step.name).await?;
            Ok(Done::Changed("Deleted"))
        }
        Action::Replace => {
            resources::delete(&step).await?;
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
    let inputs = resources::desired_inputs(r, &step.state);
    let recorded = step.state.resources.get(&r.name);
    // A function is compared with AWS on every deploy (its code, drift): recorded only when
    // what it records changed.
    if let Spec::Function(spec) = &r.spec {
        let (recorded_now, changed) = function::converge(step, r, spec).await?;
        let unchanged = recorded.is_some_and(|s| {
            s.outputs == recorded_now.outputs && s.inputs == inputs && s.ids == recorded_now.ids
        });
        if !unchanged {
            save(step, r, recorded_now, inputs).await?;
        }
        return Ok(changed || !unchanged);
    }
    let target = Target {
        resource: r,
        recorded,
        import,
        inputs: &inputs,
    };
    let result = resources::converge(step, target).await?;
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
