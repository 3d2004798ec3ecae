//! The plan: what `infra.toml` wants (desired) against what the state recorded, per resource,
//! with each changed field. Pure: no clients, no I/O, so it is unit-tested from fixture files
//! (`tests/fixtures/plan/`). `diff` prints it (`Display`) or serializes it (`--json`);
//! `deploy`, `remove` (the plan of an empty config) and `dev` (scope: Neon) carry it out
//! through `apply`.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Kind, Removal, Resource, StagePolicy};
use crate::resources::{self, desired_inputs};
use crate::state::StageState;

pub use crate::resources::KNOWN_AFTER;

/// Which resources a plan covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything: `deploy`, `diff`, `remove`.
    All,
    /// `dev`: Neon resources, migrations and links; no function, nothing deleted.
    Neon,
    /// `migrate`: the migration sets only, nothing deleted.
    Migrations,
}

/// What to do with one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    /// Adopt the existing resource with this ID.
    Import(String),
    Update,
    /// Delete, then create: a field that cannot change in place changed.
    Replace,
    Delete,
    /// Dropped from the stage but kept in Neon (removal = "retain").
    Retain,
    /// Nothing recorded differs. A function is still compared with AWS (code, drift).
    Unchanged,
}

impl Action {
    /// Deletes or replaces: what protection guards.
    pub fn loses_data(&self) -> bool {
        matches!(self, Action::Delete | Action::Replace)
    }
}

/// One field's change. Secret fields carry no values (diffs and JSON say only "changed").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    pub secret: bool,
    /// This field cannot change in place: the resource is replaced.
    pub forces_replacement: bool,
}

/// One resource's part of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub resource: String,
    #[serde(serialize_with = "kind_label")]
    pub kind: Kind,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Resources of this plan that must be done before this one (declared order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

fn kind_label<S: serde::Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.label())
}

/// The plan for one stage: declared resources in dependency order, then the recorded ones
/// that are no longer declared, children first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub app: String,
    pub stage: String,
    pub changes: Vec<Change>,
    /// The migrations this plan applies, by set and file, in order (also each set's
    /// fields): what CI shows of a deploy's schema changes before it runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_migrations: Vec<PendingMigration>,
}

/// One migration a plan applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingMigration {
    pub set: String,
    pub file: String,
}

impl Plan {
    /// How many resources change.
    pub fn change_count(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action != Action::Unchanged)
            .count()
    }

    /// Refuses, before any change, what a protected stage must not do.
    pub fn check_protection(
        &self,
        policy: StagePolicy,
        allow_data_loss: bool,
    ) -> Result<(), ProtectionError> {
        if !policy.protect || allow_data_loss {
            return Ok(());
        }
        let risky: Vec<String> = self
            .changes
            .iter()
            .filter(|c| c.kind.is_neon() && c.action.loses_data())
            .map(|c| format!("{} {}", c.resource, c.kind.label()))
            .collect();
        if risky.is_empty() {
            Ok(())
        } else {
            Err(ProtectionError::DataLoss {
                stage: self.stage.clone(),
                resources: risky,
            })
        }
    }
}

/// What a protected stage refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectionError {
    #[error("stage `{stage}` is protected, and this deploy would delete or replace: {}", resources.join(", "))]
    DataLoss {
        stage: String,
        resources: Vec<String>,
    },
    #[error("stage `{stage}` is protected; `remove` would delete its resources")]
    Remove { stage: String },
}

impl ProtectionError {
    pub fn hint(&self) -> String {
        match self {
            ProtectionError::DataLoss { .. } => {
                "review `deployer diff`; pass --allow-data-loss if losing that data is intended"
                    .to_owned()
            }
            ProtectionError::Remove { stage } => {
                format!("set protect = false under [stages.{stage}] first, if you really mean it")
            }
        }
    }
}

impl fmt::Display for Plan {
    /// What `diff` prints: a line per resource, a line per changed field, a total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            let (mark, verb) = match &c.action {
                Action::Create => ("+", "create".to_owned()),
                Action::Import(id) => ("+", format!("import {id}")),
                Action::Update => ("~", "update".to_owned()),
                Action::Replace => ("-/+", "replace".to_owned()),
                Action::Delete => ("-", "delete".to_owned()),
                Action::Retain => ("-", "retain (drop from stage, keep in Neon)".to_owned()),
                Action::Unchanged => (" ", "unchanged".to_owned()),
            };
            writeln!(f, "{mark:>3} {} {} {verb}", c.resource, c.kind.label())?;
            for field in &c.fields {
                let described = match (&field.old, &field.new) {
                    (Some(old), Some(new)) => {
                        resources::describe_field(c.kind, &field.field, old, new)
                    }
                    _ => None,
                };
                if let Some(d) = described {
                    writeln!(f, "      {}: {d}", field.field)?;
                    continue;
                }
                match (&field.old, &field.new) {
                    (Some(old), Some(new)) => writeln!(f, "      {}: {old} -> {new}", field.field)?,
                    _ => writeln!(f, "      {}: (changed)", field.field)?,
                }
            }
        }
        match self.change_count() {
            0 => write!(f, "No changes."),
            1 => write!(f, "1 change."),
            n => write!(f, "{n} changes."),
        }
    }
}

/// Compares what `config` declares with what `state` recorded.
pub fn plan(config: &Config, state: &StageState, policy: StagePolicy, scope: Scope) -> Plan {
    let in_scope = |kind: Kind| match scope {
        Scope::All => true,
        Scope::Neon => kind != Kind::Function,
        Scope::Migrations => kind == Kind::Migrations,
    };
    let declared: Vec<&Resource> = config
        .resources
        .iter()
        .filter(|r| in_scope(r.kind))
        .collect();
    let mut changes = Vec::new();
    // The state as the plan sees it: outputs that this deploy will change are unknown, so
    // what references them is planned as changed too (a replaced project's new URI reaches
    // the link and the function).
    let mut view = state.clone();
    for r in &declared {
        let (action, fields) = match state.resources.get(&r.name) {
            None => {
                let fields = if resources::fields_on_create(r.kind) {
                    field_changes(
                        r.kind,
                        &desired_inputs(r, &view),
                        &Value::Object(Default::default()),
                    )
                } else {
                    Vec::new()
                };
                match &r.import {
                    Some(id) => (Action::Import(id.clone()), fields),
                    None => (Action::Create, fields),
                }
            }
            Some(recorded) => {
                let mut fields = field_changes(r.kind, &desired_inputs(r, &view), &recorded.inputs);
                // Outputs recorded incomplete (a create whose operation failed, a database
                // recorded while its branch had no read-write endpoint) or that every deploy
                // moves (a preview branch's expiry): computed again, not left as they are.
                for (field, old) in resources::outputs_to_compute(r, recorded) {
                    fields.push(FieldChange {
                        field: field.to_owned(),
                        old,
                        new: Some(Value::String(KNOWN_AFTER.to_owned())),
                        secret: false,
                        forces_replacement: false,
                    });
                }
                let action = if fields.iter().any(|f| f.forces_replacement) {
                    Action::Replace
                } else if !fields.is_empty() {
                    Action::Update
                } else {
                    Action::Unchanged
                };
                (action, fields)
            }
        };
        let outputs_change = match action {
            Action::Replace => true,
            Action::Update => resources::update_changes_outputs(r.kind),
            _ => false,
        };
        if outputs_change && let Some(v) = view.resources.get_mut(&r.name) {
            v.outputs.clear();
        }
        changes.push(Change {
            resource: r.name.clone(),
            kind: r.kind,
            action,
            fields,
            after: r
                .deps
                .iter()
                .filter(|d| declared.iter().any(|o| &o.name == *d))
                .cloned()
                .collect(),
        });
    }
    if scope == Scope::All {
        // Recorded but no longer declared: deleted under the stage's policy, children first.
        let mut gone: Vec<(&String, Kind)> = state
            .resources
            .iter()
            .filter(|(name, _)| config.resource(name).is_none())
            .map(|(name, r)| (name, r.kind))
            .collect();
        gone.sort_by_key(|(_, kind)| std::cmp::Reverse(*kind));
        for (name, kind) in gone {
            let action = if kind.is_neon() && policy.removal == Removal::Retain {
                Action::Retain
            } else {
                Action::Delete
            };
            changes.push(Change {
                resource: name.clone(),
                kind,
                action,
                fields: Vec::new(),
                after: Vec::new(),
            });
        }
    }
    let pending_migrations = changes
        .iter()
        .filter(|c| c.kind == Kind::Migrations)
        .flat_map(|c| {
            c.fields
                .iter()
                .filter(|f| f.old.as_ref().is_some_and(Value::is_null))
                .map(|f| PendingMigration {
                    set: c.resource.clone(),
                    file: f.field.clone(),
                })
        })
        .collect();
    Plan {
        app: config.app.clone(),
        stage: state.stage.clone(),
        changes,
        pending_migrations,
    }
}

fn field_changes(kind: Kind, desired: &Value, recorded: &Value) -> Vec<FieldChange> {
    let (Some(desired), Some(recorded)) = (desired.as_object(), recorded.as_object()) else {
        return Vec::new();
    };
    let mut out: Vec<FieldChange> = Vec::new();
    for (key, new) in desired {
        let old = recorded.get(key).cloned().unwrap_or(Value::Null);
        if &old == new {
            continue;
        }
        let secret = resources::secret_inputs(kind).contains(&key.as_str());
        out.push(FieldChange {
            field: key.clone(),
            old: (!secret).then_some(old),
            new: (!secret).then(|| new.clone()),
            secret,
            forces_replacement: resources::replaced_by(kind).contains(&key.as_str()),
        });
    }
    // Fields that force a replacement first, as `diff` has always listed them.
    out.sort_by_key(|f| !f.forces_replacement);
    out
}

#[cfg(test)]
mod tests;
