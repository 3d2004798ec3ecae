//! What the deployer wrote down about a stage: the remote IDs and outputs of every
//! resource, written after every completed step, and the lock that keeps two runs off one
//! stage. Kept under `.deployer/` (gitignored, mode 0600: it holds passwords) by default,
//! or in S3 for a team ([`s3`], chosen by `[state]` in infra.toml; [`Store`] is either).

mod bucket;
mod recorder;
mod s3;
mod store;

pub use recorder::Recorder;
pub use store::{Held, Store, Unlocked};

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Kind;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state `{location}` is damaged")]
    Parse {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    /// A record in it does not read as its kind ([`StateError::Record`]).
    #[error("the state `{location}` holds a record this deployer cannot read")]
    Invalid {
        location: String,
        #[source]
        source: Box<StateError>,
    },
    #[error("cannot write the state file `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stage `{stage}` is locked by {holder}")]
    Locked { stage: String, holder: String },
    #[error("cannot create the lock file `{path}`")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state `{location}` has version {version}; this deployer reads up to {CURRENT_VERSION}"
    )]
    UnknownVersion { location: String, version: u32 },
    #[error("cannot {action}")]
    Remote {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "another run wrote the state of stage `{stage}` ({location}) since this one read it; stopped without overwriting it"
    )]
    Fenced { stage: String, location: String },
    #[error(
        "this run lost the lock of stage `{stage}` (its lease was taken over); stopped before changing anything more"
    )]
    LeaseLost { stage: String },
    #[error(
        "the state `{location}` exists (S3 refused to create it), yet every read of it answers 404; a bucket whose versioning was enabled in the last 15 minutes does this for a while (S3 User Guide, \"Enabling versioning on buckets\")"
    )]
    Hidden { location: String },
    #[error(
        "stage `{stage}` has no `{location}` (what its previews read; a deployer before it wrote none), and these credentials may not read its state"
    )]
    NoBaseView { stage: String, location: String },
    #[error("stage `{stage}` is locked by {holder}, and its lease is live")]
    LiveLease { stage: String, holder: String },
    #[error("the state bucket `{bucket}` cannot be used: {detail}")]
    Bucket {
        bucket: String,
        detail: String,
        /// The error behind it, when one is (AWS's answer, the SDK's chain).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error(
        "the state bucket `{bucket}` is not owned by AWS account {account} (these credentials' account), or these credentials may not use it; the deployer writes no state, which holds passwords, into a bucket another account owns"
    )]
    NotOurBucket {
        bucket: String,
        account: String,
        /// The deployer's default name, which anyone can predict.
        default: bool,
    },
    #[error(
        "the state of `{resource}` ({kind}) is not what this kind records; was the state file edited by hand?"
    )]
    Record {
        resource: String,
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The state file format this deployer writes. Version 1 is the first; version 2 records a
/// preview stage's branch as its own kind (`Preview`) where version 1 had a `Project` whose
/// inputs held `branch_from`. Older files are migrated when read ([`parse_state`]).
pub const CURRENT_VERSION: u32 = 2;

/// One resource as deployed. Each kind's module (in `resources/`) has the types of what
/// it records and reads them back with [`ResourceState::ids_as`] and its siblings; the file
/// keeps IDs and outputs as string maps, as it has since version 1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceState {
    pub kind: Kind,
    /// What identifies it remotely (project ID, branch ID, role name...).
    pub ids: BTreeMap<String, String>,
    /// The settings it was last deployed with, resolved.
    pub inputs: Value,
    /// Its outputs (`id`, `connection_uri`, ...).
    pub outputs: BTreeMap<String, String>,
    /// Adopted with `import`: retained, never deleted by the deployer.
    #[serde(default)]
    pub imported: bool,
}

impl ResourceState {
    /// The recorded IDs as the kind's type of them.
    pub fn ids_as<T: DeserializeOwned>(&self, resource: &str) -> Result<T, StateError> {
        self.typed(resource, from_map(&self.ids))
    }

    /// The recorded outputs as the kind's type of them.
    pub fn outputs_as<T: DeserializeOwned>(&self, resource: &str) -> Result<T, StateError> {
        self.typed(resource, from_map(&self.outputs))
    }

    /// The recorded inputs as the kind's type of them.
    pub fn inputs_as<T: DeserializeOwned>(&self, resource: &str) -> Result<T, StateError> {
        self.typed(resource, T::deserialize(&self.inputs))
    }

    fn typed<T>(
        &self,
        resource: &str,
        read: Result<T, serde_json::Error>,
    ) -> Result<T, StateError> {
        read.map_err(|source| StateError::Record {
            resource: resource.to_owned(),
            kind: self.kind.label(),
            source,
        })
    }
}

/// A record's fields as the state's string map (absent fields left out, not empty).
pub fn to_map<T: Serialize>(value: &T) -> BTreeMap<String, String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A record read back from the state's string map; an empty value reads as absent.
fn from_map<T: DeserializeOwned>(map: &BTreeMap<String, String>) -> Result<T, serde_json::Error> {
    let fields: serde_json::Map<String, Value> = map
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    T::deserialize(Value::Object(fields))
}

/// What the state needs to know of the kinds' records, and the kinds' modules tell it
/// (implemented in `resources/`, so that the state depends on no kind): how a record of an
/// older format reads now, and which Neon project a record lives in.
pub trait KindRecord {
    /// Brings a record written by state format `written_as` to this one.
    fn migrate(&mut self, written_as: u32);
    /// The Neon project the resource is, or lives in.
    fn project_id(&self) -> Option<String>;
    /// Reads the record `name` as its kind's types: an error names what does not.
    fn check(&self, name: &str) -> Result<(), StateError>;
    /// What a preview stage may read of this record of its base stage: IDs and names, no
    /// secret; none for a kind a preview does not read.
    fn public(&self) -> Option<ResourceState>;
}

/// A create that was sent but not confirmed: the next run looks for it before creating again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    pub kind: Kind,
    pub name: String,
    pub since_unix: u64,
    /// IDs of same-named resources that existed before the first attempt: not ours.
    #[serde(default)]
    pub existing: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageState {
    /// The file format; files written before it was recorded are version 1.
    #[serde(default = "first_version")]
    pub version: u32,
    pub app: String,
    pub stage: String,
    pub resources: BTreeMap<String, ResourceState>,
    #[serde(default)]
    pub pending: BTreeMap<String, Pending>,
    /// Grows by one with every write: which of two copies is newer.
    #[serde(default)]
    pub serial: u64,
}

/// Reads a state (from a file or an object), refusing a format newer than this deployer.
pub fn parse_state(bytes: &[u8], location: &str) -> Result<StageState, StateError> {
    let state: StageState = serde_json::from_slice(bytes).map_err(|source| StateError::Parse {
        location: location.to_owned(),
        source,
    })?;
    if state.version > CURRENT_VERSION {
        return Err(StateError::UnknownVersion {
            location: location.to_owned(),
            version: state.version,
        });
    }
    let written_as = state.version;
    let mut state = StageState {
        version: CURRENT_VERSION,
        ..state
    };
    state.migrate(written_as);
    for (name, record) in &state.resources {
        record.check(name).map_err(|source| StateError::Invalid {
            location: location.to_owned(),
            source: Box::new(source),
        })?;
    }
    Ok(state)
}

impl StageState {
    /// What a preview stage of this one reads (`base.json` beside the state in S3): its
    /// projects' and branches' IDs and names, and no secret, so a preview's CI role may
    /// read it while the state, which holds passwords, stays readable by this stage's role
    /// alone.
    pub fn base_view(&self) -> StageState {
        StageState {
            version: CURRENT_VERSION,
            app: self.app.clone(),
            stage: self.stage.clone(),
            resources: self
                .resources
                .iter()
                .filter_map(|(name, r)| Some((name.clone(), r.public()?)))
                .collect(),
            pending: BTreeMap::new(),
            serial: self.serial,
        }
    }

    /// Brings records of older formats to this one; what they mean is unchanged, so a
    /// stage deployed by an older deployer plans "No changes.".
    fn migrate(&mut self, written_as: u32) {
        for r in self.resources.values_mut() {
            r.migrate(written_as);
        }
    }
}

fn first_version() -> u32 {
    1
}

/// The `.deployer/` folder beside infra.toml, or `DEPLOYER_STATE_DIR`.
pub fn state_dir(project_dir: &Path) -> PathBuf {
    match std::env::var_os("DEPLOYER_STATE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => project_dir.join(".deployer"),
    }
}

fn state_path(project_dir: &Path, stage: &str) -> PathBuf {
    state_dir(project_dir).join(format!("{stage}.state.json"))
}

impl StageState {
    /// The stage's state, or an empty one for a stage never deployed.
    pub fn load(project_dir: &Path, app: &str, stage: &str) -> Result<StageState, StateError> {
        let path = state_path(project_dir, stage);
        match std::fs::read(&path) {
            Ok(bytes) => parse_state(&bytes, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StageState::empty(app, stage)),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// The state of a stage never deployed.
    pub fn empty(app: &str, stage: &str) -> StageState {
        StageState {
            version: CURRENT_VERSION,
            app: app.to_owned(),
            stage: stage.to_owned(),
            ..Default::default()
        }
    }

    /// Writes the state atomically (temporary file, then rename), mode 0600.
    pub fn save(&self, project_dir: &Path) -> Result<(), StateError> {
        let path = state_path(project_dir, &self.stage);
        let write = || -> std::io::Result<()> {
            let dir = state_dir(project_dir);
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            let tmp = path.with_extension("json.tmp");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| StateError::Write { path, source })
    }

    /// Project IDs recorded by every stage in the state folder (none of them is free to adopt).
    pub fn claimed_project_ids(project_dir: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(state_dir(project_dir)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".state.json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<StageState>(&t).ok())
            .flat_map(|s| s.resources.into_values().filter_map(|r| r.project_id()))
            .collect()
    }

    /// Forgets the stage (after `remove`).
    pub fn delete(project_dir: &Path, stage: &str) -> Result<(), StateError> {
        let path = state_path(project_dir, stage);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Write { path, source }),
        }
    }
}

/// Held while a run works on a stage; released on drop.
#[derive(Debug)]
pub struct StageLock {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct LockInfo {
    pid: u32,
    user: String,
    host: String,
    since: String,
    command: String,
}

impl StageLock {
    /// Takes the stage's lock, or says who holds it and since when.
    pub fn acquire(
        project_dir: &Path,
        stage: &str,
        command: &str,
    ) -> Result<StageLock, StateError> {
        let dir = state_dir(project_dir);
        let path = dir.join(format!("{stage}.lock"));
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Lock {
            path: path.clone(),
            source,
        })?;
        let info = LockInfo {
            pid: std::process::id(),
            user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            host: std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            since: crate::output::now_rfc3339(),
            command: command.to_owned(),
        };
        // Written aside, then linked into place: the lock appears with its content, atomically,
        // so a rival run never reads a half-written holder.
        let tmp = dir.join(format!("{stage}.lock.{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(serde_json::to_string(&info).unwrap_or_default().as_bytes())
            });
        if let Err(source) = written {
            return Err(StateError::Lock { path, source });
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(StageLock { path }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<LockInfo>(&t).ok())
                    .map(|i| {
                        format!(
                            "`deployer {}` (pid {}, user {}, host {}) since {}",
                            i.command, i.pid, i.user, i.host, i.since
                        )
                    })
                    .unwrap_or_else(|| "another run".into());
                Err(StateError::Locked {
                    stage: stage.to_owned(),
                    holder,
                })
            }
            Err(source) => Err(StateError::Lock { path, source }),
        }
    }

    /// Who holds the stage's lock, and whether that run is alive (a process of this host
    /// with its pid); none if it is not locked.
    pub fn holder(project_dir: &Path, stage: &str) -> Option<(String, bool)> {
        let text =
            std::fs::read_to_string(state_dir(project_dir).join(format!("{stage}.lock"))).ok()?;
        let Ok(i) = serde_json::from_str::<LockInfo>(&text) else {
            return Some(("an unreadable lock".into(), false));
        };
        let this_host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let alive = i.host == this_host && Path::new(&format!("/proc/{}", i.pid)).exists();
        Some((
            format!(
                "`deployer {}` (pid {}, user {}, host {}) since {}",
                i.command, i.pid, i.user, i.host, i.since
            ),
            alive,
        ))
    }

    /// Removes a stale lock; true if there was one.
    pub fn force_release(project_dir: &Path, stage: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(state_dir(project_dir).join(format!("{stage}.lock"))) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for StageLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file exactly as the first deployer (before the core was rebuilt) wrote it.
    #[test]
    fn a_state_file_from_the_first_deployer_still_loads() {
        let dir = tempfile_dir();
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/state/v1-guide.state.json"
        );
        std::fs::create_dir_all(dir.join(".deployer")).unwrap();
        std::fs::copy(fixture, dir.join(".deployer/prod.state.json")).unwrap();
        let state = StageState::load(&dir, "aws-hono", "prod").unwrap();
        assert_eq!(state.version, CURRENT_VERSION);
        let project = &state.resources["MyAppProject"];
        assert_eq!(project.kind, Kind::Project);
        #[derive(serde::Deserialize)]
        struct ProjectIds {
            project_id: String,
        }
        let ids: ProjectIds = project.ids_as("MyAppProject").unwrap();
        assert_eq!(ids.project_id, "shiny-wind-028834");
        assert_eq!(
            state.resources["MyApi"].outputs["url"],
            "https://abcdefghij.lambda-url.us-east-1.on.aws/"
        );
        assert!(matches!(
            state.resources["NeonDB"].ids_as::<ProjectIds>("NeonDB"),
            Err(StateError::Record { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_newer_state_file_is_refused_not_misread() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(dir.join(".deployer")).unwrap();
        std::fs::write(
            dir.join(".deployer/prod.state.json"),
            r#"{"version":9,"app":"a","stage":"prod","resources":{}}"#,
        )
        .unwrap();
        let err = StageState::load(&dir, "a", "prod").unwrap_err();
        assert!(
            matches!(err, StateError::UnknownVersion { version: 9, .. }),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).unwrap();
        let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
        std::env::temp_dir().join(format!("deployer-state-{name}"))
    }
}
