//! What each kind of resource records in the state: its remote IDs and its outputs, typed.
//! The state file keeps them as string maps (its format since the first deployer); these
//! types are the only way the steps write them, and a test checks that every output
//! `infra.toml` may reference (`Kind::outputs`) is one a step produces.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Recorded;
use crate::neon::models::{BranchId, EndpointId, ProjectId};

/// A project's outputs: its ID and name, its default branch, and the connection to the
/// default branch's first database (Neon's `neondb` as `neondb_owner`), when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectOutputs {
    pub id: ProjectId,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_branch_id: Option<BranchId>,
    /// The branch the outputs describe: the default branch, or a preview stage's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<BranchId>,
    /// A preview branch's expiry (RFC 3339), as Neon last confirmed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub database: Option<DefaultDatabase>,
}

/// The default database of a project, as its outputs show it.
#[derive(Debug, Clone, Serialize)]
pub struct DefaultDatabase {
    pub connection_uri: String,
    pub connection_uri_pooler: String,
    pub database_host: String,
    pub database_name: String,
    pub database_user: String,
    pub database_password: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectIds {
    pub project_id: ProjectId,
}

/// A preview stage's branch of the base stage's project (and its read-write endpoint).
#[derive(Debug, Clone, Serialize)]
pub struct PreviewIds {
    pub project_id: ProjectId,
    pub branch_id: BranchId,
}

#[derive(Debug, Clone, Serialize)]
pub struct BranchOutputs {
    pub id: BranchId,
}

#[derive(Debug, Clone, Serialize)]
pub struct BranchIds {
    pub project_id: ProjectId,
    pub branch_id: BranchId,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointOutputs {
    pub id: EndpointId,
    pub host: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointIds {
    pub project_id: ProjectId,
    pub endpoint_id: EndpointId,
}

/// A role or database: where it is and its name.
#[derive(Debug, Clone, Serialize)]
pub struct BranchObjectIds {
    pub project_id: ProjectId,
    pub branch_id: BranchId,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleOutputs {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseOutputs {
    pub name: String,
    /// Empty while the branch has no read-write endpoint.
    pub connection_uri: String,
    /// Through Neon's pooler (PgBouncer, transaction mode); empty like `connection_uri`.
    pub connection_uri_pooler: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionOutputs {
    pub name: String,
    pub arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionIds {
    pub function_name: String,
}

/// A record's fields as the state's string map.
fn to_map<T: Serialize>(value: &T) -> BTreeMap<String, String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

impl Recorded {
    /// A record from typed IDs and outputs.
    pub fn typed(ids: &impl Serialize, outputs: &impl Serialize) -> Recorded {
        Recorded {
            ids: to_map(ids),
            outputs: to_map(outputs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;

    /// Every output infra.toml may reference is one the step for that kind produces.
    #[test]
    fn every_referenceable_output_is_produced() {
        let project = to_map(&ProjectOutputs {
            id: ProjectId::from("p"),
            name: "n".into(),
            default_branch_id: Some(BranchId::from("b")),
            branch_id: Some(BranchId::from("b")),
            expires_at: None,
            database: Some(DefaultDatabase {
                connection_uri: "u".into(),
                connection_uri_pooler: "u".into(),
                database_host: "h".into(),
                database_name: "d".into(),
                database_user: "r".into(),
                database_password: "s".into(),
            }),
        });
        let cases = [
            (Kind::Project, project),
            (
                Kind::Branch,
                to_map(&BranchOutputs {
                    id: BranchId::from("b"),
                }),
            ),
            (
                Kind::Endpoint,
                to_map(&EndpointOutputs {
                    id: EndpointId::from("e"),
                    host: "h".into(),
                }),
            ),
            (
                Kind::Role,
                to_map(&RoleOutputs {
                    name: "r".into(),
                    password: "s".into(),
                }),
            ),
            (
                Kind::Database,
                to_map(&DatabaseOutputs {
                    name: "d".into(),
                    connection_uri: "u".into(),
                    connection_uri_pooler: "p".into(),
                }),
            ),
            (
                Kind::Function,
                to_map(&FunctionOutputs {
                    name: "f".into(),
                    arn: "a".into(),
                    url: Some("https://x".into()),
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
        let map = to_map(&FunctionOutputs {
            name: "f".into(),
            arn: "a".into(),
            url: None,
        });
        assert!(!map.contains_key("url"));
    }
}
