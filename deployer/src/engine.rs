//! Plan and apply: desired (infra.toml) x recorded (state) -> steps; then each step against
//! Neon and AWS, the state written after every one, so an interrupted run resumes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::aws::{self, Aws};
use crate::config::{Config, Kind, Part, Removal, Resource, Spec, StagePolicy, Template};
use crate::error::CliError;
use crate::neon::{Neon, NeonError};
use crate::output;
use crate::state::{Pending, ResourceState, StageState};

/// Lambda's limit on the total size of a function's environment variables.
pub const LAMBDA_ENV_LIMIT_BYTES: usize = 4 * 1024;

const KNOWN_AFTER: &str = "(known after deploy)";

/// What to do with one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create,
    Import(String),
    Update(Vec<String>),
    Replace(Vec<String>),
    Delete,
    /// Dropped from the stage but kept in Neon (removal = "retain").
    Retain,
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: Kind,
    pub action: Action,
}

/// The plan: data that prints as `diff` shows it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action != Action::Unchanged)
            .count()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            let (mark, verb) = match &s.action {
                Action::Create => ("+", "create".to_owned()),
                Action::Import(id) => ("+", format!("import {id}")),
                Action::Update(_) => ("~", "update".to_owned()),
                Action::Replace(_) => ("-/+", "replace".to_owned()),
                Action::Delete => ("-", "delete".to_owned()),
                Action::Retain => ("-", "retain (drop from stage, keep in Neon)".to_owned()),
                Action::Unchanged => (" ", "unchanged".to_owned()),
            };
            writeln!(f, "{mark:>3} {} {} {verb}", s.name, s.kind.label())?;
            if let Action::Update(fields) | Action::Replace(fields) = &s.action {
                for field in fields {
                    writeln!(f, "      {field}")?;
                }
            }
        }
        let n = self.changes();
        if n == 0 {
            write!(f, "No changes.")
        } else {
            write!(f, "{n} change{}.", if n == 1 { "" } else { "s" })
        }
    }
}

/// Fields that cannot change in place: the resource is replaced.
fn replaced_by(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Project => &["pg_version", "region_id", "org_id"],
        Kind::Branch => &["project", "parent"],
        Kind::Endpoint => &["branch", "type"],
        Kind::Role => &["branch", "name"],
        Kind::Database => &["branch"],
        Kind::Link | Kind::Function => &[],
    }
}

/// Fields whose values are secrets: diffs say only that they changed.
fn secret_field(kind: Kind, field: &str) -> bool {
    matches!(kind, Kind::Link | Kind::Function) && (field == "properties" || field == "environment")
}

pub struct Deployer<'a> {
    pub config: &'a Config,
    pub stage: String,
    pub project_dir: PathBuf,
    pub policy: StagePolicy,
    pub state: StageState,
    pub neon: Option<Neon>,
    pub aws: Option<Aws>,
}

impl Deployer<'_> {
    fn outputs_of(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.state.resources.get(name).map(|r| &r.outputs)
    }

    /// A template with references filled from recorded outputs, if all are known.
    fn resolve(&self, t: &Template) -> Option<String> {
        resolve_template(t, |name| self.outputs_of(name))
    }

    fn resolve_or_marker(&self, t: &Template) -> Value {
        self.resolve(t).map_or(json!(KNOWN_AFTER), Value::String)
    }

    fn id_of(&self, name: &str) -> Option<String> {
        self.outputs_of(name)?.get("id").cloned()
    }

    /// The settings a resource should have, as recorded in state after a deploy.
    fn desired_inputs(&self, r: &Resource) -> Value {
        match &r.spec {
            Spec::Project {
                name,
                pg_version,
                region_id,
                org_id,
                history_retention_seconds,
            } => json!({
                "name": self.resolve_or_marker(name),
                "pg_version": pg_version,
                "region_id": self.resolve_or_marker(region_id),
                "org_id": org_id.as_ref().map(|o| self.resolve_or_marker(o)),
                "history_retention_seconds": history_retention_seconds,
            }),
            Spec::Branch {
                project,
                name,
                parent,
            } => json!({
                "project": project, "name": self.resolve_or_marker(name), "parent": parent,
            }),
            Spec::Endpoint { branch, read_write } => json!({
                "branch": branch, "type": if *read_write { "read_write" } else { "read_only" },
            }),
            Spec::Role { branch, name } => {
                json!({ "branch": branch, "name": self.resolve_or_marker(name) })
            }
            Spec::Database {
                branch,
                name,
                owner,
            } => json!({
                "branch": branch, "name": self.resolve_or_marker(name), "owner": owner,
            }),
            Spec::Link { properties } => json!({
                "properties": properties.iter().map(|(k, t)| (k.clone(), self.resolve_or_marker(t))).collect::<Map<_, _>>(),
            }),
            Spec::Function {
                package,
                links,
                url,
                memory,
                timeout,
                arm64,
                environment,
            } => {
                let env = self.function_environment(links, environment);
                json!({
                    "package": package, "url": url, "memory": memory, "timeout": timeout,
                    "architecture": if *arm64 { "arm64" } else { "x86_64" },
                    "environment": env.map_or(json!(KNOWN_AFTER), |e| json!(e)),
                })
            }
        }
    }

    /// `LINK_<Name>` (JSON of the link's properties) plus `environment`, if all are known.
    fn function_environment(
        &self,
        links: &[String],
        environment: &BTreeMap<String, Template>,
    ) -> Option<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        for link in links {
            let outputs = self.outputs_of(link)?;
            env.insert(format!("LINK_{link}"), serde_json::to_string(outputs).ok()?);
        }
        for (k, t) in environment {
            env.insert(k.clone(), self.resolve(t)?);
        }
        Some(env)
    }

    /// Compares desired and recorded settings.
    pub fn plan(&self) -> Plan {
        let mut steps = Vec::new();
        for r in &self.config.resources {
            let action = match self.state.resources.get(&r.name) {
                None => match &r.import {
                    Some(id) => Action::Import(id.clone()),
                    None => Action::Create,
                },
                Some(recorded) => {
                    let desired = self.desired_inputs(r);
                    let mut changed = Vec::new();
                    let mut replace = Vec::new();
                    if let (Some(d), Some(c)) = (desired.as_object(), recorded.inputs.as_object()) {
                        for (key, value) in d {
                            let old = c.get(key).cloned().unwrap_or(Value::Null);
                            if &old != value {
                                let line = if secret_field(r.kind, key) {
                                    format!("{key}: (changed)")
                                } else {
                                    format!("{key}: {old} -> {value}")
                                };
                                if replaced_by(r.kind).contains(&key.as_str()) {
                                    replace.push(line);
                                } else {
                                    changed.push(line);
                                }
                            }
                        }
                    }
                    if !replace.is_empty() {
                        replace.extend(changed);
                        Action::Replace(replace)
                    } else if !changed.is_empty() {
                        Action::Update(changed)
                    } else {
                        Action::Unchanged
                    }
                }
            };
            steps.push(Step {
                name: r.name.clone(),
                kind: r.kind,
                action,
            });
        }
        // Recorded but no longer declared: deleted under the stage's policy, children first.
        let mut gone: Vec<(&String, &ResourceState)> = self
            .state
            .resources
            .iter()
            .filter(|(name, _)| self.config.resource(name).is_none())
            .collect();
        gone.sort_by_key(|(_, r)| std::cmp::Reverse(r.kind));
        for (name, r) in gone {
            let action = if r.kind.is_neon() && self.policy.removal == Removal::Retain {
                Action::Retain
            } else {
                Action::Delete
            };
            steps.push(Step {
                name: name.clone(),
                kind: r.kind,
                action,
            });
        }
        Plan { steps }
    }

    /// Refuses, before any change, what a protected stage must not do.
    pub fn check_protection(&self, plan: &Plan, allow_data_loss: bool) -> Result<(), CliError> {
        if !self.policy.protect || allow_data_loss {
            return Ok(());
        }
        let risky: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| s.kind.is_neon() && matches!(s.action, Action::Delete | Action::Replace(_)))
            .map(|s| format!("{} {}", s.name, s.kind.label()))
            .collect();
        if risky.is_empty() {
            return Ok(());
        }
        Err(CliError::bad_input(
            format!(
                "stage `{}` is protected, and this deploy would delete or replace: {}",
                self.stage,
                risky.join(", ")
            ),
            Some(
                "review `deployer diff`; pass --allow-data-loss if losing that data is intended"
                    .into(),
            ),
        ))
    }

    fn neon(&self) -> Result<&Neon, CliError> {
        self.neon.as_ref().ok_or_else(|| {
            CliError::bad_input(
                "NEON_API_KEY is not set, and infra.toml declares Neon resources".into(),
                Some("create an API key in the Neon console and export NEON_API_KEY=... (or put it in .env)".into()),
            )
        })
    }

    fn aws(&self) -> Result<&Aws, CliError> {
        self.aws
            .as_ref()
            .ok_or_else(|| CliError::remote("AWS is not configured".into(), None))
    }

    fn save(&self) -> Result<(), CliError> {
        self.state
            .save(&self.project_dir)
            .map_err(CliError::from_state)
    }

    fn record(
        &mut self,
        name: &str,
        kind: Kind,
        ids: BTreeMap<String, String>,
        inputs: Value,
        outputs: BTreeMap<String, String>,
    ) -> Result<(), CliError> {
        self.state.pending.remove(name);
        self.state.resources.insert(
            name.to_owned(),
            ResourceState {
                kind,
                ids,
                inputs,
                outputs,
                imported: false,
            },
        );
        self.save()
    }

    fn mark_pending(
        &mut self,
        name: &str,
        kind: Kind,
        remote_name: &str,
        existing: Vec<String>,
    ) -> Result<(), CliError> {
        self.state.pending.insert(
            name.to_owned(),
            Pending {
                kind,
                name: remote_name.to_owned(),
                since_unix: output::now_unix(),
                existing,
            },
        );
        self.save()
    }

    /// Carries out the plan; returns how many resources changed.
    pub async fn apply(&mut self, plan: &Plan) -> Result<usize, CliError> {
        // The config outlives `self`'s borrow: resources are read from it, not cloned.
        let config = self.config;
        let mut changed = 0;
        for step in &plan.steps {
            let started = Instant::now();
            let declared = || config.resource(&step.name).expect("planned from config");
            let verb = match (&step.action, step.kind) {
                // Code and the live configuration are compared with what AWS has.
                (Action::Unchanged, Kind::Function) => match self.apply_function(declared()).await?
                {
                    true => "Updated",
                    false => continue,
                },
                (Action::Unchanged, _) => continue,
                (Action::Delete, _) => {
                    self.delete(&step.name).await?;
                    "Deleted"
                }
                (Action::Retain, _) => {
                    let id = self
                        .state
                        .resources
                        .remove(&step.name)
                        .map(|r| r.import_id())
                        .unwrap_or_default();
                    self.save()?;
                    output::step("Retained", &step.name, step.kind.label(), started.elapsed());
                    println!("          kept in Neon; to manage it again: import = \"{id}\"");
                    changed += 1;
                    continue;
                }
                (Action::Replace(_), _) => {
                    self.delete(&step.name).await?;
                    self.create(declared(), None).await?;
                    "Replaced"
                }
                (Action::Create, _) => {
                    self.create(declared(), None).await?;
                    "Created"
                }
                (Action::Import(id), _) => {
                    self.create(declared(), Some(id)).await?;
                    "Imported"
                }
                (Action::Update(_), _) => {
                    self.update(declared()).await?;
                    "Updated"
                }
            };
            changed += 1;
            output::step(verb, &step.name, step.kind.label(), started.elapsed());
        }
        Ok(changed)
    }

    async fn create(&mut self, r: &Resource, import: Option<&str>) -> Result<(), CliError> {
        match r.kind {
            Kind::Project => self.create_project(r, import).await,
            Kind::Branch => self.create_branch(r, import).await,
            Kind::Endpoint => self.create_endpoint(r, import).await,
            Kind::Role => self.create_role(r, import).await,
            Kind::Database => self.create_database(r, import).await,
            Kind::Link => self.apply_link(r),
            Kind::Function => self.apply_function(r).await.map(drop),
        }
    }

    async fn update(&mut self, r: &Resource) -> Result<(), CliError> {
        let neon_err = |e: NeonError| CliError::from_neon(&r.name, e);
        let inputs = self.desired_inputs(r);
        match &r.spec {
            Spec::Project { .. } => {
                let id = self.id_of(&r.name).unwrap_or_default();
                let mut patch = json!({ "name": inputs["name"] });
                if let Some(h) = inputs["history_retention_seconds"].as_i64() {
                    patch["history_retention_seconds"] = json!(h);
                }
                self.neon()?
                    .update_project(&id, patch)
                    .await
                    .map_err(neon_err)?;
            }
            Spec::Branch { project, .. } => {
                let (pid, bid) = (
                    self.id_of(project).unwrap_or_default(),
                    self.id_of(&r.name).unwrap_or_default(),
                );
                self.neon()?
                    .update_branch(&pid, &bid, json!({ "name": inputs["name"] }))
                    .await
                    .map_err(neon_err)?;
            }
            Spec::Database { branch, owner, .. } => {
                let rs = self
                    .state
                    .resources
                    .get(&r.name)
                    .cloned()
                    .expect("recorded");
                let (pid, bid) = (
                    rs.ids["project_id"].clone(),
                    self.id_of(branch).unwrap_or_default(),
                );
                let owner_name = self
                    .outputs_of(owner)
                    .and_then(|o| o.get("name"))
                    .cloned()
                    .unwrap_or_default();
                self.neon()?
                    .update_database(
                        &pid,
                        &bid,
                        &rs.ids["name"],
                        json!({ "name": inputs["name"], "owner_name": owner_name }),
                    )
                    .await
                    .map_err(neon_err)?;
                let outputs = self
                    .database_outputs(
                        &pid,
                        &bid,
                        inputs["name"].as_str().unwrap_or_default(),
                        &owner_name,
                    )
                    .await?;
                let mut ids = rs.ids.clone();
                ids.insert(
                    "name".into(),
                    inputs["name"].as_str().unwrap_or_default().to_owned(),
                );
                return self.record(&r.name, r.kind, ids, inputs, outputs);
            }
            Spec::Link { .. } => return self.apply_link(r),
            Spec::Function { .. } => return self.apply_function(r).await.map(drop),
            Spec::Endpoint { .. } | Spec::Role { .. } => {}
        }
        let mut rs = self
            .state
            .resources
            .get(&r.name)
            .cloned()
            .expect("recorded");
        rs.inputs = inputs;
        if r.kind == Kind::Project {
            rs.outputs.insert(
                "name".into(),
                rs.inputs["name"].as_str().unwrap_or_default().to_owned(),
            );
        }
        self.record(&r.name, r.kind, rs.ids, rs.inputs, rs.outputs)
    }

    // ---- Neon resources ----------------------------------------------------------------------

    async fn project_outputs(&self, id: &str) -> Result<BTreeMap<String, String>, CliError> {
        let neon = self.neon()?;
        let e = |e| CliError::from_neon("project", e);
        let branches = neon.list_branches(id).await.map_err(e)?;
        let default = branches
            .iter()
            .find(|b| b["default"] == json!(true))
            .or(branches.first())
            .and_then(|b| b["id"].as_str())
            .unwrap_or_default()
            .to_owned();
        let mut outputs = BTreeMap::from([
            ("id".to_owned(), id.to_owned()),
            ("default_branch_id".to_owned(), default.clone()),
        ]);
        let mut dbs = neon.list_databases(id, &default).await.map_err(e)?;
        dbs.sort_by_key(|d| d["id"].as_i64().unwrap_or(i64::MAX));
        if let Some(db) = dbs.first() {
            let (name, owner) = (
                db["name"].as_str().unwrap_or_default(),
                db["owner_name"].as_str().unwrap_or_default(),
            );
            let uri = neon
                .connection_uri(id, &default, name, owner, false)
                .await
                .map_err(e)?;
            let pooled = neon
                .connection_uri(id, &default, name, owner, true)
                .await
                .map_err(e)?;
            if let Ok(info) = api::conninfo::parse(&uri) {
                outputs.insert("database_host".into(), host_of(&uri));
                outputs.insert(
                    "database_name".into(),
                    info.config.get_dbname().unwrap_or_default().to_owned(),
                );
                outputs.insert(
                    "database_user".into(),
                    info.config.get_user().unwrap_or_default().to_owned(),
                );
                outputs.insert(
                    "database_password".into(),
                    info.config
                        .get_password()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default(),
                );
            }
            outputs.insert("connection_uri".into(), uri);
            outputs.insert("connection_uri_pooler".into(), pooled);
        }
        Ok(outputs)
    }

    async fn create_project(&mut self, r: &Resource, import: Option<&str>) -> Result<(), CliError> {
        let inputs = self.desired_inputs(r);
        let name = inputs["name"].as_str().unwrap_or_default().to_owned();
        let id = match import {
            Some(id) => {
                let found = self
                    .neon()?
                    .get_project(id)
                    .await
                    .map_err(|e| CliError::from_neon(&r.name, e))?;
                warn_import_differences(
                    &r.name,
                    &inputs,
                    &found,
                    &[
                        "name",
                        "pg_version",
                        "region_id",
                        "history_retention_seconds",
                    ],
                );
                id.to_owned()
            }
            None => {
                let mut body = json!({ "name": name, "pg_version": inputs["pg_version"], "region_id": inputs["region_id"] });
                if let Some(org) = inputs["org_id"].as_str() {
                    body["org_id"] = json!(org);
                }
                if let Some(h) = inputs["history_retention_seconds"].as_i64() {
                    body["history_retention_seconds"] = json!(h);
                }
                // A create recorded as pending was sent by an interrupted run: look for it first.
                // Project names are not unique (every stage may use the same one), so a
                // candidate must be new since the first attempt and claimed by no stage.
                let previous = self.state.pending.get(&r.name).cloned();
                let (since, existing) = match &previous {
                    Some(p) => (p.since_unix, p.existing.clone()),
                    None => {
                        let found = self
                            .neon()?
                            .find_projects(&name)
                            .await
                            .map_err(|e| CliError::from_neon(&r.name, e))?;
                        let existing: Vec<String> = found
                            .iter()
                            .filter_map(|p| p["id"].as_str().map(str::to_owned))
                            .collect();
                        self.mark_pending(&r.name, r.kind, &name, existing.clone())?;
                        (output::now_unix(), existing)
                    }
                };
                let claimed = StageState::claimed_project_ids(&self.project_dir);
                let lookup = || async {
                    let found = self
                        .neon()?
                        .find_projects(&name)
                        .await
                        .map_err(|e| CliError::from_neon(&r.name, e))?;
                    let candidates: Vec<&Value> = found
                        .iter()
                        .filter(|p| p["name"] == json!(name))
                        .filter(|p| {
                            p["id"].as_str().is_some_and(|id| {
                                !existing.iter().any(|e| e == id)
                                    && !claimed.iter().any(|c| c == id)
                            })
                        })
                        .filter(|p| {
                            p["created_at"]
                                .as_str()
                                .is_some_and(|t| rfc3339_unix(t) + 120 >= since as i64)
                        })
                        .collect();
                    Ok::<_, CliError>(match candidates.as_slice() {
                        [one] => one["id"].as_str().map(str::to_owned),
                        _ => None,
                    })
                };
                let mut resumed = previous.is_some();
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    if resumed && let Some(id) = lookup().await? {
                        break id;
                    }
                    match self.neon()?.create_project(body.clone()).await {
                        Ok(answer) => {
                            break answer["project"]["id"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                        }
                        Err(e) if e.uncertain() && attempt < 8 => {
                            tracing::debug!(error = %e, "create project uncertain; looking before retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt))
                                .await;
                            resumed = true;
                        }
                        Err(e) => return Err(CliError::from_neon(&r.name, e)),
                    }
                }
            }
        };
        let outputs = self.project_outputs(&id).await?;
        let mut outputs = outputs;
        outputs.insert("name".into(), name);
        self.record(
            &r.name,
            r.kind,
            BTreeMap::from([("project_id".into(), id)]),
            inputs,
            outputs,
        )
    }

    async fn create_branch(&mut self, r: &Resource, import: Option<&str>) -> Result<(), CliError> {
        let Spec::Branch {
            project, parent, ..
        } = &r.spec
        else {
            unreachable!()
        };
        let inputs = self.desired_inputs(r);
        let name = inputs["name"].as_str().unwrap_or_default().to_owned();
        let pid = self.id_of(project).unwrap_or_default();
        let neon_err = |e| CliError::from_neon(&r.name, e);
        let id = match import {
            Some(id) => {
                let found = self.neon()?.get_branch(&pid, id).await.map_err(neon_err)?;
                warn_import_differences(&r.name, &inputs, &found, &["name"]);
                id.to_owned()
            }
            None => {
                let mut body = json!({ "name": name });
                if let Some(parent) = parent {
                    body["parent_id"] = json!(self.id_of(parent).unwrap_or_default());
                }
                let neon = self.neon()?;
                let lookup = || async {
                    let branches = neon.list_branches(&pid).await?;
                    Ok::<_, NeonError>(
                        branches
                            .iter()
                            .find(|b| b["name"] == json!(name))
                            .and_then(|b| b["id"].as_str())
                            .map(str::to_owned),
                    )
                };
                create_or_adopt(lookup, || async {
                    neon.create_branch(&pid, body.clone())
                        .await
                        .map(|a| a["branch"]["id"].as_str().unwrap_or_default().to_owned())
                })
                .await
                .map_err(neon_err)?
            }
        };
        let ids = BTreeMap::from([("project_id".into(), pid), ("branch_id".into(), id.clone())]);
        self.record(
            &r.name,
            r.kind,
            ids,
            inputs,
            BTreeMap::from([("id".into(), id)]),
        )
    }

    async fn create_endpoint(
        &mut self,
        r: &Resource,
        import: Option<&str>,
    ) -> Result<(), CliError> {
        let Spec::Endpoint { branch, read_write } = &r.spec else {
            unreachable!()
        };
        let inputs = self.desired_inputs(r);
        let pid = self
            .state
            .resources
            .get(branch)
            .and_then(|b| b.ids.get("project_id").cloned())
            .unwrap_or_default();
        let bid = self.id_of(branch).unwrap_or_default();
        let kind = if *read_write {
            "read_write"
        } else {
            "read_only"
        };
        let neon = self.neon()?;
        let neon_err = |e| CliError::from_neon(&r.name, e);
        let endpoint = match import {
            Some(id) => neon.get_endpoint(&pid, id).await.map_err(neon_err)?,
            None => {
                let lookup =
                    || async {
                        // A branch has at most one read-write endpoint: that one is ours.
                        if !read_write {
                            return Ok(None);
                        }
                        let all = neon.list_endpoints(&pid).await?;
                        Ok::<_, NeonError>(all.into_iter().find(|e| {
                            e["branch_id"] == json!(bid) && e["type"] == json!("read_write")
                        }))
                    };
                let body = json!({ "branch_id": bid, "type": kind });
                create_or_adopt(lookup, || async {
                    neon.create_endpoint(&pid, body.clone())
                        .await
                        .map(|mut a| a["endpoint"].take())
                })
                .await
                .map_err(neon_err)?
            }
        };
        let id = endpoint["id"].as_str().unwrap_or_default().to_owned();
        let outputs = BTreeMap::from([
            ("id".into(), id.clone()),
            (
                "host".into(),
                endpoint["host"].as_str().unwrap_or_default().to_owned(),
            ),
        ]);
        let ids = BTreeMap::from([("project_id".into(), pid), ("endpoint_id".into(), id)]);
        self.record(&r.name, r.kind, ids, inputs, outputs)
    }

    async fn create_role(&mut self, r: &Resource, import: Option<&str>) -> Result<(), CliError> {
        let Spec::Role { branch, .. } = &r.spec else {
            unreachable!()
        };
        let inputs = self.desired_inputs(r);
        let (pid, bid, name) = self.in_branch(branch, import, &inputs);
        let neon = self.neon()?;
        let neon_err = |e| CliError::from_neon(&r.name, e);
        let created = if import.is_some() {
            neon.get_role(&pid, &bid, &name).await.map_err(neon_err)?;
            None
        } else {
            let lookup = || async {
                match neon.get_role(&pid, &bid, &name).await {
                    Ok(_) => Ok(Some(None)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            };
            create_or_adopt(lookup, || async {
                neon.create_role(&pid, &bid, &name)
                    .await
                    .map(|role| role["password"].as_str().map(str::to_owned))
            })
            .await
            .map_err(neon_err)?
        };
        let password = match created {
            Some(p) => p,
            None => neon
                .reveal_password(&pid, &bid, &name)
                .await
                .map_err(neon_err)?,
        };
        let ids = BTreeMap::from([
            ("project_id".into(), pid),
            ("branch_id".into(), bid),
            ("name".into(), name.clone()),
        ]);
        let outputs = BTreeMap::from([("name".into(), name), ("password".into(), password)]);
        self.record(&r.name, r.kind, ids, inputs, outputs)
    }

    /// (project ID, branch ID, name) of a role or database: from `import`
    /// (`project_id/branch_id/name`) or from its branch's recorded IDs and its inputs.
    fn in_branch(
        &self,
        branch: &str,
        import: Option<&str>,
        inputs: &Value,
    ) -> (String, String, String) {
        match import {
            Some(triple) => split_triple(triple),
            None => (
                self.state
                    .resources
                    .get(branch)
                    .and_then(|b| b.ids.get("project_id").cloned())
                    .unwrap_or_default(),
                self.id_of(branch).unwrap_or_default(),
                inputs["name"].as_str().unwrap_or_default().to_owned(),
            ),
        }
    }

    async fn database_outputs(
        &self,
        pid: &str,
        bid: &str,
        name: &str,
        owner: &str,
    ) -> Result<BTreeMap<String, String>, CliError> {
        let uri = match self
            .neon()?
            .connection_uri(pid, bid, name, owner, false)
            .await
        {
            Ok(uri) => uri,
            // A branch without a read-write endpoint has no host to connect to yet.
            Err(e) if e.is_not_found() => String::new(),
            Err(e) => return Err(CliError::from_neon(name, e)),
        };
        Ok(BTreeMap::from([
            ("name".into(), name.to_owned()),
            ("connection_uri".into(), uri),
        ]))
    }

    async fn create_database(
        &mut self,
        r: &Resource,
        import: Option<&str>,
    ) -> Result<(), CliError> {
        let Spec::Database { branch, owner, .. } = &r.spec else {
            unreachable!()
        };
        let inputs = self.desired_inputs(r);
        let owner_name = self
            .outputs_of(owner)
            .and_then(|o| o.get("name"))
            .cloned()
            .unwrap_or_default();
        let (pid, bid, name) = self.in_branch(branch, import, &inputs);
        let neon = self.neon()?;
        let neon_err = |e| CliError::from_neon(&r.name, e);
        if import.is_some() {
            let found = neon
                .get_database(&pid, &bid, &name)
                .await
                .map_err(neon_err)?;
            if found["owner_name"] != json!(owner_name) {
                eprintln!(
                    "warning: {}: imported database is owned by {}, infra.toml says `{owner_name}`; the next deploy changes the owner",
                    r.name, found["owner_name"]
                );
            }
        } else {
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
            .await
            .map_err(neon_err)?;
        }
        let outputs = self
            .database_outputs(&pid, &bid, &name, &owner_name)
            .await?;
        let ids = BTreeMap::from([
            ("project_id".into(), pid),
            ("branch_id".into(), bid),
            ("name".into(), name),
        ]);
        self.record(&r.name, r.kind, ids, inputs, outputs)
    }

    fn apply_link(&mut self, r: &Resource) -> Result<(), CliError> {
        let Spec::Link { properties } = &r.spec else {
            unreachable!()
        };
        let mut outputs = BTreeMap::new();
        for (k, t) in properties {
            let value = self.resolve(t).ok_or_else(|| {
                CliError::remote(
                    format!(
                        "link `{}`: `{k}` refers to an output that is not known",
                        r.name
                    ),
                    None,
                )
            })?;
            outputs.insert(k.clone(), value);
        }
        let inputs = self.desired_inputs(r);
        self.record(&r.name, r.kind, BTreeMap::new(), inputs, outputs)
    }

    /// Builds and converges the function; true if anything changed in AWS.
    async fn apply_function(&mut self, r: &Resource) -> Result<bool, CliError> {
        let Spec::Function {
            package,
            links,
            url,
            memory,
            timeout,
            arm64,
            environment,
        } = &r.spec
        else {
            unreachable!()
        };
        let env = self
            .function_environment(links, environment)
            .ok_or_else(|| {
                CliError::remote(
                    format!(
                        "function `{}`: a link or variable refers to an unknown output",
                        r.name
                    ),
                    None,
                )
            })?;
        let size: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > LAMBDA_ENV_LIMIT_BYTES {
            return Err(CliError::bad_input(
                format!(
                    "function `{}`: its environment would be {size} bytes; Lambda allows {LAMBDA_ENV_LIMIT_BYTES}",
                    r.name
                ),
                Some("link fewer properties, or shorten the environment values".into()),
            ));
        }
        let artifact = crate::build::build(&self.project_dir, package, *arm64)
            .map_err(|m| CliError::remote(m, None))?;
        let name = aws::physical_name(&self.config.app, &self.stage, &r.name);
        let aws = self.aws()?;
        let fail = |m: String| CliError::remote(m, None);
        let (role_arn, role_is_new) = aws::iam::upsert_role(&aws.iam, &name).await.map_err(fail)?;
        let spec = aws::lambda::FunctionSpec {
            name: name.clone(),
            role_arn,
            zip: artifact.zip,
            code_sha256: artifact.sha256_base64,
            arm64: *arm64,
            memory: *memory as i32,
            timeout: *timeout as i32,
            environment: env.into_iter().collect::<HashMap<_, _>>(),
        };
        let (arn, mut changes) = aws::lambda::upsert_function(&aws.lambda, &spec, role_is_new)
            .await
            .map_err(fail)?;
        let url = aws::lambda::converge_url(&aws.lambda, &name, *url, &mut changes)
            .await
            .map_err(fail)?;
        let inputs = self.desired_inputs(r);
        let mut outputs = BTreeMap::from([("name".into(), name.clone()), ("arn".into(), arn)]);
        if let Some(url) = url {
            outputs.insert("url".into(), url);
        }
        let unchanged_record = self
            .state
            .resources
            .get(&r.name)
            .is_some_and(|s| s.outputs == outputs && s.inputs == inputs);
        if !unchanged_record {
            self.record(
                &r.name,
                r.kind,
                BTreeMap::from([("function_name".into(), name)]),
                inputs,
                outputs,
            )?;
        }
        Ok(changes.any() || role_is_new)
    }

    /// Deletes one recorded resource remotely and forgets it.
    pub async fn delete(&mut self, name: &str) -> Result<(), CliError> {
        let Some(rs) = self.state.resources.get(name).cloned() else {
            return Ok(());
        };
        let ids = &rs.ids;
        let id = |k: &str| ids.get(k).cloned().unwrap_or_default();
        let neon_err = |e| CliError::from_neon(name, e);
        // Children of a project that is deleted too go with it: no call needed.
        let project_going = |pid: &str| {
            self.state.resources.iter().any(|(other, s)| {
                other != name
                    && s.kind == Kind::Project
                    && s.ids.get("project_id").map(String::as_str) == Some(pid)
                    && self.config.resource(other).is_none()
            })
        };
        match rs.kind {
            Kind::Project => self
                .neon()?
                .delete_project(&id("project_id"))
                .await
                .map_err(neon_err)?,
            Kind::Branch if !project_going(&id("project_id")) => self
                .neon()?
                .delete_branch(&id("project_id"), &id("branch_id"))
                .await
                .map_err(neon_err)?,
            Kind::Endpoint if !project_going(&id("project_id")) => self
                .neon()?
                .delete_endpoint(&id("project_id"), &id("endpoint_id"))
                .await
                .map_err(neon_err)?,
            Kind::Role if !project_going(&id("project_id")) => self
                .neon()?
                .delete_role(&id("project_id"), &id("branch_id"), &id("name"))
                .await
                .map_err(neon_err)?,
            Kind::Database if !project_going(&id("project_id")) => self
                .neon()?
                .delete_database(&id("project_id"), &id("branch_id"), &id("name"))
                .await
                .map_err(neon_err)?,
            Kind::Function => {
                let aws = self.aws()?;
                let fname = id("function_name");
                aws::lambda::delete_function(&aws.lambda, &fname)
                    .await
                    .map_err(|m| CliError::remote(m, None))?;
                aws::iam::delete_role(&aws.iam, &fname)
                    .await
                    .map_err(|m| CliError::remote(m, None))?;
            }
            _ => {}
        }
        self.state.resources.remove(name);
        self.save()
    }
}

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
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        if let Some(found) = lookup().await? {
            return Ok(found);
        }
        match create().await {
            Ok(v) => return Ok(v),
            Err(e) if (e.status() == Some(409) || e.uncertain()) && attempt < 8 => {
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn split_triple(triple: &str) -> (String, String, String) {
    let mut parts = triple.splitn(3, '/').map(str::to_owned);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

fn host_of(uri: &str) -> String {
    let after = uri.split_once('@').map_or(uri, |(_, h)| h);
    after
        .split(['/', '?', ':'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn warn_import_differences(name: &str, desired: &Value, found: &Value, fields: &[&str]) {
    for field in fields {
        let (d, f) = (&desired[field], &found[field]);
        if !d.is_null() && d != f && d != &json!(KNOWN_AFTER) {
            eprintln!(
                "warning: {name}: imported `{field}` is {f}, infra.toml says {d}; the next deploy will change it (or replace, for fields that cannot change)"
            );
        }
    }
}

/// Seconds since the epoch for `2026-11-27T03:20:00Z` (0 if unreadable).
fn rfc3339_unix(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| t.get(r).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_neon_timestamps() {
        assert_eq!(super::rfc3339_unix("2026-11-27T03:20:00Z"), 1_795_749_600);
        assert_eq!(
            super::host_of("postgresql://u:p@ep-x.aws.neon.tech/db?sslmode=require"),
            "ep-x.aws.neon.tech"
        );
    }
}
