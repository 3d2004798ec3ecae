//! The state's records typed by kind: [`Record`] has one variant per kind, holding that
//! kind's own types. Each state is read through it when it is loaded (`state::parse_state`
//! calls [`crate::state::KindRecord::check`]), so a record that does not read as its kind
//! (a hand edit, a damaged copy) is refused, naming it, before any remote call; and the
//! kinds' `converge` writes their records from the same types (`Recorded::typed`).
//!
//! The file keeps each record as `{kind, ids, inputs, outputs}` with string maps, as it has
//! since version 1, so older files read unchanged. Inputs stay JSON in the engine (the plan
//! compares them field by field against the config); a kind that reads its inputs back has
//! their type here.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{branch, database, endpoint, function, migrations, preview, project, role};
use crate::config::Kind;
use crate::state::{ResourceState, StateError};

/// A resource as its kind records it. `outputs` is `None` for a resource recorded by its
/// IDs only: created, then interrupted before its outputs were known (the next deploy
/// finishes it).
#[derive(Debug, Clone)]
pub enum Record {
    Project {
        ids: project::Ids,
        inputs: project::Inputs,
        outputs: Option<project::Outputs>,
    },
    /// A preview stage's branch: a branch's IDs, a project's outputs (read on the branch).
    Preview {
        ids: preview::Ids,
        outputs: Option<project::Outputs>,
    },
    Branch {
        ids: branch::Ids,
        inputs: branch::Inputs,
        outputs: Option<branch::Outputs>,
    },
    Endpoint {
        ids: endpoint::Ids,
        outputs: Option<endpoint::Outputs>,
    },
    Role {
        ids: role::Ids,
        outputs: Option<role::Outputs>,
    },
    Database {
        ids: role::Ids,
        inputs: database::Inputs,
        outputs: Option<database::Outputs>,
    },
    Migrations {
        ids: migrations::Ids,
        inputs: migrations::Inputs,
        outputs: Option<migrations::Outputs>,
    },
    /// A link has no remote existence: its outputs are its resolved properties.
    Link {
        properties: BTreeMap<String, String>,
    },
    Function {
        ids: function::Ids,
        inputs: function::Inputs,
        outputs: Option<function::Outputs>,
    },
}

impl Record {
    /// The record `name` of the state, read as its kind's types.
    pub fn read(name: &str, rs: &ResourceState) -> Result<Record, StateError> {
        Ok(match rs.kind {
            Kind::Project => Record::Project {
                ids: rs.ids_as(name)?,
                inputs: inputs(name, rs)?,
                outputs: outputs(name, rs)?,
            },
            Kind::Preview => Record::Preview {
                ids: rs.ids_as(name)?,
                outputs: outputs(name, rs)?,
            },
            Kind::Branch => Record::Branch {
                ids: rs.ids_as(name)?,
                inputs: inputs(name, rs)?,
                outputs: outputs(name, rs)?,
            },
            Kind::Endpoint => Record::Endpoint {
                ids: rs.ids_as(name)?,
                outputs: outputs(name, rs)?,
            },
            Kind::Role => Record::Role {
                ids: rs.ids_as(name)?,
                outputs: outputs(name, rs)?,
            },
            Kind::Database => Record::Database {
                ids: rs.ids_as(name)?,
                inputs: inputs(name, rs)?,
                outputs: outputs(name, rs)?,
            },
            Kind::Migrations => Record::Migrations {
                ids: rs.ids_as(name)?,
                inputs: inputs(name, rs)?,
                outputs: outputs(name, rs)?,
            },
            Kind::Link => Record::Link {
                properties: rs.outputs.clone(),
            },
            Kind::Function => Record::Function {
                ids: rs.ids_as(name)?,
                inputs: inputs(name, rs)?,
                outputs: outputs(name, rs)?,
            },
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Record::Project { .. } => Kind::Project,
            Record::Preview { .. } => Kind::Preview,
            Record::Branch { .. } => Kind::Branch,
            Record::Endpoint { .. } => Kind::Endpoint,
            Record::Role { .. } => Kind::Role,
            Record::Database { .. } => Kind::Database,
            Record::Migrations { .. } => Kind::Migrations,
            Record::Link { .. } => Kind::Link,
            Record::Function { .. } => Kind::Function,
        }
    }
}

/// The inputs; none recorded (a placeholder written before its create) reads as none set.
fn inputs<T: DeserializeOwned + Default>(name: &str, rs: &ResourceState) -> Result<T, StateError> {
    if rs.inputs == Value::Null {
        Ok(T::default())
    } else {
        rs.inputs_as(name)
    }
}

/// The outputs, unless the resource was recorded by its IDs only.
fn outputs<T: DeserializeOwned>(name: &str, rs: &ResourceState) -> Result<Option<T>, StateError> {
    if rs.outputs.is_empty() {
        Ok(None)
    } else {
        rs.outputs_as(name).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_state;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state");

    fn load(file: &str) -> crate::state::StageState {
        let path = format!("{FIXTURES}/{file}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse_state(&bytes, &path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_record_of_older_files_reads_as_its_kind() {
        for file in ["v1-guide.state.json", "v1-preview.state.json"] {
            let state = load(file);
            assert!(!state.resources.is_empty(), "{file}");
            for (name, rs) in &state.resources {
                let record = Record::read(name, rs).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(record.kind(), rs.kind, "{file}: {name}");
            }
        }
    }

    #[test]
    fn a_record_that_does_not_read_as_its_kind_is_refused_on_load_naming_it() {
        let path = format!("{FIXTURES}/v1-guide.state.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut state: serde_json::Value = serde_json::from_str(&text).unwrap();
        let (name, record) = state["resources"]
            .as_object_mut()
            .unwrap()
            .iter_mut()
            .find(|(_, r)| r["kind"] == "Project")
            .expect("the fixture has a project");
        let name = name.clone();
        record["ids"] = serde_json::json!({});
        let bytes = serde_json::to_vec(&state).unwrap();
        let err = parse_state(&bytes, "edited.json").unwrap_err();
        let mut chain = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            chain += &format!("\n{c}");
            cause = c.source();
        }
        assert!(chain.contains("`edited.json`"), "{chain}");
        assert!(chain.contains(&format!("`{name}`")), "{chain}");
        assert!(chain.contains("project_id"), "{chain}");
    }

    #[test]
    fn a_record_of_ids_only_reads_with_no_outputs() {
        let rs = ResourceState {
            kind: Kind::Function,
            ids: crate::state::to_map(&function::Ids {
                function_name: "app-prod-Api".to_owned(),
            }),
            inputs: Value::Null,
            outputs: BTreeMap::new(),
            imported: false,
        };
        match Record::read("Api", &rs).unwrap() {
            Record::Function { ids, outputs, .. } => {
                assert_eq!(ids.function_name, "app-prod-Api");
                assert!(outputs.is_none());
            }
            other => panic!("{other:?}"),
        }
    }
}
