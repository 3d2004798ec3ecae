//! `infra.toml`: the app as the user writes it, read and checked before any remote call.
//!
//! Every error names the file, line and column, says what is wrong and ends with a hint.
//! Templates (`${env.VAR}`, `${Name.attr}`) are parsed here; `env` ones are resolved for
//! the stage being deployed, resource ones during the deploy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::env::EnvSource;

mod check;
#[cfg(test)]
mod docs_tests;
mod migrations;
mod notes;
mod preview;
mod releases;
mod state;
mod tags;

pub use preview::{ParentRef, Preview, parse_duration};
pub use state::StateBackend;
mod raw;
mod values;

/// One problem in the file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in the file (at least one).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The caller prints `error: ` before the first; each further one gets its own.
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "\nerror: ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---- the checked model ----------------------------------------------------------------------

/// What kind of thing a resource is, as printed (`neon:Project`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    Project,
    /// A preview stage's own branch of its base stage's project, standing in for a
    /// declared project (shown as one: `neon:Project`).
    Preview,
    Branch,
    Endpoint,
    Role,
    Database,
    /// A migrations folder applied to a project's default database or a declared one.
    Migrations,
    Link,
    Function,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Project | Kind::Preview => "neon:Project",
            Kind::Branch => "neon:Branch",
            Kind::Endpoint => "neon:Endpoint",
            Kind::Role => "neon:Role",
            Kind::Database => "neon:Database",
            Kind::Migrations => "sql:Migrations",
            Kind::Link => "Linkable",
            Kind::Function => "aws:Function",
        }
    }

    /// The outputs other resources may reference as `${Name.output}`.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Kind::Project | Kind::Preview => &[
                "id",
                "branch_id",
                "connection_uri",
                "connection_uri_pooler",
                "default_branch_id",
                "database_host",
                "database_name",
                "database_user",
                "database_password",
            ],
            Kind::Branch => &["id"],
            Kind::Endpoint => &["id", "host"],
            Kind::Role => &["name", "password"],
            Kind::Database => &["name", "connection_uri", "connection_uri_pooler"],
            Kind::Migrations | Kind::Link => &[],
            Kind::Function => &["name", "arn", "url", "version"],
        }
    }

    /// Outputs that hold secrets, masked unless `--reveal`.
    pub fn is_secret(self, output: &str) -> bool {
        matches!(
            (self, output),
            (
                Kind::Project | Kind::Preview,
                "connection_uri" | "connection_uri_pooler" | "database_password"
            ) | (Kind::Role, "password")
                | (Kind::Database, "connection_uri" | "connection_uri_pooler")
                | (Kind::Link, _)
        )
    }

    pub fn is_neon(self) -> bool {
        matches!(
            self,
            Kind::Project
                | Kind::Preview
                | Kind::Branch
                | Kind::Endpoint
                | Kind::Role
                | Kind::Database
        )
    }
}

/// A string with `${Name.attr}` references left to resolve at deploy time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Template(pub Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Part {
    Text(String),
    Ref { resource: String, output: String },
}

impl Template {
    pub fn literal(s: &str) -> Self {
        Template(vec![Part::Text(s.to_owned())])
    }

    pub fn refs(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Ref { resource, .. } => Some(resource.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text, if it has no references left.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Ref { .. } => return None,
            }
        }
        Some(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Removal {
    Remove,
    Retain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagePolicy {
    pub removal: Removal,
    pub protect: bool,
}

/// What a declared resource is, by kind: each kind's settings as infra.toml gives them.
#[derive(Debug, Clone)]
pub enum Spec {
    Project(ProjectSpec),
    /// In a stage that branches from another (`branch_from`), each declared project is
    /// this stage's own branch of the base stage's project.
    PreviewBranch(PreviewBranch),
    Branch(BranchSpec),
    Endpoint(EndpointSpec),
    Role(RoleSpec),
    Database(DatabaseSpec),
    Migrations(MigrationsSpec),
    Link(LinkSpec),
    Function(FunctionSpec),
}

/// `[neon.project.<Name>]`.
#[derive(Debug, Clone)]
pub struct ProjectSpec {
    pub name: Template,
    pub pg_version: i64,
    pub region_id: Template,
    pub org_id: Option<Template>,
    pub history_retention_seconds: Option<i64>,
}

/// `[neon.branch.<Name>]`.
#[derive(Debug, Clone)]
pub struct BranchSpec {
    pub project: String,
    pub name: Template,
    pub parent: Option<String>,
    /// In a preview stage: the base stage's branch this one copies.
    pub copy: Option<BranchCopy>,
}

/// `[neon.endpoint.<Name>]`.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub branch: String,
    pub read_write: bool,
}

/// `[neon.role.<Name>]`.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    pub branch: String,
    pub name: Template,
}

/// `[neon.database.<Name>]`.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    pub branch: String,
    pub name: Template,
    pub owner: String,
}

/// `migrations = "<dir>"` on a `[neon.project.<Name>]` (its default database, as its
/// owner) or a `[neon.database.<Name>]` (that database, as its owner). The resource is
/// named `<Name>/migrations`.
#[derive(Debug, Clone)]
pub struct MigrationsSpec {
    /// The project or database it applies to.
    pub database: String,
    /// The folder as infra.toml gives it (relative to infra.toml).
    pub dir: String,
    /// The folder's migrations, read and checked with infra.toml, in version order.
    pub migrations: Vec<crate::migrate::Migration>,
    /// `[migrations] lock_timeout`.
    pub lock_timeout: std::time::Duration,
}

/// The name of the migration set of `database`.
pub fn migrations_of(database: &str) -> String {
    format!("{database}/migrations")
}

/// `[link.<Name>]`.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    pub properties: BTreeMap<String, Template>,
    /// `pooler_hint = false`: this link means its direct Neon connection string, so
    /// `diff` and `deploy` do not suggest the pooler's.
    pub pooler_hint: bool,
}

/// `[function.<Name>]`.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub package: String,
    pub links: Vec<String>,
    pub url: bool,
    pub memory: i64,
    pub timeout: i64,
    pub log_retention_days: i64,
    /// The instances it may run at once; `None`: the account's unreserved pool.
    pub reserved_concurrency: Option<i64>,
    /// The managed policy that bounds its IAM role's permissions.
    pub role_permissions_boundary: Option<String>,
    /// `[app] tags`, on the function, its role and its log group; `None`: tags are left
    /// as they are.
    pub tags: Option<BTreeMap<String, String>>,
    pub arm64: bool,
    pub environment: BTreeMap<String, Template>,
    /// The path a release is checked with before `live` serves it (`GET`); `None`: no check.
    pub smoke: Option<String>,
    /// Versions kept (the live one and the one before it always are).
    pub keep_releases: i64,
}

/// A preview stage's branch of its base stage's project, standing in for the project:
/// its outputs are the project's, read on this branch.
#[derive(Debug, Clone)]
pub struct PreviewBranch {
    pub base_stage: String,
    pub project_id: String,
    /// The base project's name and default branch, as the base stage recorded them.
    pub project_name: String,
    pub default_branch_id: Option<String>,
    /// `preview/<stage>`.
    pub name: String,
    pub parent: ParentRef,
    pub expires_in: Option<u64>,
    pub schema_only: bool,
    /// What marks the branch as this app's stage's, for adopting and pruning.
    pub annotation: BTreeMap<String, String>,
}

/// A declared branch in a preview stage: a copy of the base stage's branch of the same
/// name (when it has one), expiring and marked as the preview branch is.
#[derive(Debug, Clone)]
pub struct BranchCopy {
    /// The base stage's branch ID; none: a branch of the preview branch.
    pub of: Option<String>,
    pub expires_in: Option<u64>,
    pub annotation: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub name: String,
    pub kind: Kind,
    pub spec: Spec,
    pub import: Option<String>,
    /// Resources this one needs first (structure and `${...}` references).
    pub deps: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub app: String,
    pub region: Option<String>,
    pub stages: BTreeMap<String, StagePolicy>,
    /// `branch_from` and its settings, by `[stages.<name>]` table (`default` included).
    pub previews: BTreeMap<String, Preview>,
    /// In dependency order.
    pub resources: Vec<Resource>,
    /// `[state]`: where the stage's state and lock live.
    pub state: StateBackend,
}

impl Config {
    /// The policy for `stage`: `[stages.<stage>]` over `[stages.default]` over
    /// `removal = "remove"`, unprotected.
    pub fn policy(&self, stage: &str) -> StagePolicy {
        let default = self.stages.get("default").copied().unwrap_or(StagePolicy {
            removal: Removal::Remove,
            protect: false,
        });
        self.stages.get(stage).copied().unwrap_or(default)
    }

    /// How `stage` branches from another stage's project, if it does: its own
    /// `[stages.<stage>]` table decides, else `[stages.default]` (as for the policy).
    pub fn preview(&self, stage: &str) -> Option<&Preview> {
        let table = if self.stages.contains_key(stage) {
            stage
        } else {
            "default"
        };
        self.previews.get(table).filter(|p| p.base != stage)
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

pub const MAX_NAME_BYTES: usize = 63;

/// Reads and checks `path`, resolving `${env.VAR}` from `env`.
pub fn load(path: &Path, env: &EnvSource) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e}"),
            hint: Some(
                "run deployer in the folder that holds infra.toml, or pass --config <path>".into(),
            ),
        }])
    })?;
    parse(path, &text, env)
}

/// Checks the text of an infra.toml (`path` is only used in messages).
pub fn parse(path: &Path, text: &str, env: &EnvSource) -> Result<Config, ConfigErrors> {
    let mut cx = check::Checker {
        file: path.to_owned(),
        text,
        env,
        errors: Vec::new(),
    };
    let raw: raw::RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_owned();
            // Values with a fixed form (`values`) carry their own hint.
            let (message, own_hint) = match message.split_once(values::HINT) {
                Some((m, h)) => (m.to_owned(), Some(h.to_owned())),
                None => (message, None),
            };
            let hint = if own_hint.is_some() {
                own_hint
            } else if message.contains("unknown field") {
                Some(
                    "remove the key or fix its spelling; docs/infra-toml.md lists every key of infra.toml"
                        .to_owned(),
                )
            } else if message.contains("missing field") {
                Some("add the key; docs/infra-toml.md lists what each table needs".to_owned())
            } else {
                Some("fix the TOML syntax at that place".to_owned())
            };
            cx.error(span, message, hint);
            return Err(ConfigErrors(cx.errors));
        }
    };
    let config = cx.check(raw);
    if cx.errors.is_empty() {
        Ok(config)
    } else {
        cx.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(cx.errors))
    }
}

pub use check::valid_stage_name;
