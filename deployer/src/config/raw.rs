//! `infra.toml` as written: the serde schema, with a span on every value so each error can
//! say where it is. Unknown keys are refused here (`deny_unknown_fields`), and values with a
//! fixed form are checked here too (`values`).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::values::{
    AppName, Architecture, EndpointKind, HistoryRetention, LogRetentionDays, MemoryMb, PgVersion,
    RemovalWord, ReservedConcurrency, TimeoutSecs,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) app: Spanned<RawApp>,
    #[serde(default)]
    pub(super) stages: BTreeMap<Spanned<String>, RawStage>,
    #[serde(default)]
    pub(super) neon: RawNeon,
    #[serde(default)]
    pub(super) link: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    #[serde(default)]
    pub(super) function: BTreeMap<Spanned<String>, RawFunction>,
    pub(super) state: Option<Spanned<RawState>>,
    pub(super) migrations: Option<Spanned<RawMigrations>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMigrations {
    pub(super) lock_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) backend: Option<Spanned<String>>,
    pub(super) bucket: Option<Spanned<String>>,
    pub(super) prefix: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) name: AppName,
    pub(super) region: Option<Spanned<String>>,
    pub(super) tags: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub(super) removal: Option<RemovalWord>,
    pub(super) protect: Option<bool>,
    pub(super) branch_from: Option<Spanned<String>>,
    pub(super) branch_parent: Option<Spanned<String>>,
    pub(super) expires_in: Option<Spanned<String>>,
    pub(super) schema_only: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeon {
    #[serde(default)]
    pub(super) project: BTreeMap<Spanned<String>, RawProject>,
    #[serde(default)]
    pub(super) branch: BTreeMap<Spanned<String>, RawBranch>,
    #[serde(default)]
    pub(super) endpoint: BTreeMap<Spanned<String>, RawEndpoint>,
    #[serde(default)]
    pub(super) role: BTreeMap<Spanned<String>, RawRole>,
    #[serde(default)]
    pub(super) database: BTreeMap<Spanned<String>, RawDatabase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProject {
    pub(super) name: Option<Spanned<String>>,
    pub(super) pg_version: Option<PgVersion>,
    pub(super) region_id: Option<Spanned<String>>,
    pub(super) org_id: Option<Spanned<String>>,
    pub(super) history_retention_seconds: Option<HistoryRetention>,
    pub(super) migrations: Option<Spanned<String>>,
    pub(super) import: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBranch {
    pub(super) project: Spanned<String>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) parent: Option<Spanned<String>>,
    pub(super) import: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub(super) branch: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<EndpointKind>,
    pub(super) import: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    pub(super) branch: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) import: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) branch: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) owner: Spanned<String>,
    pub(super) migrations: Option<Spanned<String>>,
    pub(super) import: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFunction {
    pub(super) package: Spanned<String>,
    #[serde(default)]
    pub(super) link: Vec<Spanned<String>>,
    pub(super) url: Option<Spanned<bool>>,
    pub(super) memory: Option<MemoryMb>,
    pub(super) timeout: Option<TimeoutSecs>,
    pub(super) log_retention_days: Option<LogRetentionDays>,
    pub(super) reserved_concurrency: Option<ReservedConcurrency>,
    pub(super) role_permissions_boundary: Option<Spanned<String>>,
    pub(super) architecture: Option<Architecture>,
    #[serde(default)]
    pub(super) environment: BTreeMap<Spanned<String>, Spanned<String>>,
    /// A path (`"/version"`) or `false`.
    pub(super) smoke: Option<Spanned<toml::Value>>,
    pub(super) keep_releases: Option<Spanned<i64>>,
}
