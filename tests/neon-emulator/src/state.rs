//! What the emulator remembers: projects, their branches, endpoints, roles, databases and
//! operations, and how each is rendered as Neon's JSON.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend::Cluster;
use crate::util::now_rfc3339;

pub struct State {
    pub projects: BTreeMap<String, Project>,
    /// Project IDs in creation order, for listing and cursors.
    pub order: Vec<String>,
    pub next_database_id: i64,
    /// Project lists still to come back incomplete ([`crate::EmulatorConfig`]).
    pub incomplete_lists: u32,
}

pub struct Project {
    pub id: String,
    pub name: String,
    pub region_id: String,
    pub pg_version: i64,
    pub org_id: Option<String>,
    pub history_retention_seconds: i64,
    pub store_passwords: bool,
    pub settings: Option<Value>,
    pub default_endpoint_settings: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    pub default_branch_id: String,
    pub branches: BTreeMap<String, Branch>,
    pub endpoints: BTreeMap<String, Endpoint>,
    pub operations: Vec<Operation>,
}

pub struct Branch {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub protected: bool,
    pub created_at: String,
    pub updated_at: String,
    /// When the background job deletes it (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// `annotation_value` of its create: free string pairs.
    pub annotation: BTreeMap<String, String>,
    /// `parent-data` or `schema-only`.
    pub init_source: String,
    /// Expired, but the background job leaves it for now (a test's choice).
    pub reap_later: bool,
    pub roles: BTreeMap<String, Role>,
    pub databases: BTreeMap<String, Database>,
    /// The branch's own PostgreSQL server.
    pub cluster: Cluster,
}

pub struct Role {
    pub name: String,
    pub password: String,
    pub created_at: String,
    pub updated_at: String,
}

pub struct Database {
    pub id: i64,
    pub name: String,
    pub owner_name: String,
    pub created_at: String,
    pub updated_at: String,
}

pub struct Endpoint {
    pub id: String,
    pub branch_id: String,
    pub kind: String,
    pub host: String,
    pub min_cu: f64,
    pub max_cu: f64,
    pub suspend_timeout_seconds: i64,
    pub pooler_enabled: bool,
    pub disabled: bool,
    pub settings: Value,
    pub created_at: String,
    pub updated_at: String,
}

pub struct Operation {
    pub id: String,
    pub project_id: String,
    pub branch_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub action: &'static str,
    pub created_at: String,
    pub started: Instant,
    pub duration: Duration,
    /// A fault scripted for this operation.
    pub fault: Option<crate::OperationFault>,
}

impl Operation {
    /// Operations run for their configured time, then finish; nothing runs in the background.
    pub fn running(&self) -> bool {
        self.started.elapsed() < self.duration
    }

    /// The status Neon would report now: `running` then `finished`; with a retried fault,
    /// `error` (Neon retries it) for the first half, then `running`; with a final fault,
    /// `failed` at the end.
    fn status(&self) -> (&'static str, u32, Option<&str>) {
        let elapsed = self.started.elapsed();
        match &self.fault {
            Some(f) if f.retried && elapsed < self.duration / 2 => ("error", 1, Some(&f.message)),
            Some(f) if f.retried && elapsed < self.duration => ("running", 1, None),
            Some(f) if f.retried => ("finished", 1, None),
            Some(f) if elapsed >= self.duration => ("failed", 3, Some(&f.message)),
            _ if elapsed < self.duration => ("running", 0, None),
            _ => ("finished", 0, None),
        }
    }

    pub fn json(&self) -> Value {
        let running = self.running();
        let (status, failures, error) = self.status();
        let mut v = json!({
            "id": self.id,
            "project_id": self.project_id,
            "action": self.action,
            "status": status,
            "failures_count": failures,
            "created_at": self.created_at,
            "updated_at": if running { self.created_at.clone() } else { now_rfc3339() },
            "total_duration_ms": if running { self.started.elapsed().as_millis() as u64 } else { self.duration.as_millis() as u64 },
        });
        if let Some(e) = error {
            v["error"] = json!(e);
        }
        if failures > 0 {
            // When Neon last retried it (the spec's meaning): here, when it started.
            v["retry_at"] = json!(self.created_at);
        }
        if let Some(b) = &self.branch_id {
            v["branch_id"] = json!(b);
        }
        if let Some(e) = &self.endpoint_id {
            v["endpoint_id"] = json!(e);
        }
        v
    }
}

/// `aws-us-east-1` -> `us-east-1.aws.neon.tech`, as Neon names its regional proxies.
fn proxy_host(region_id: &str) -> String {
    match region_id.split_once('-') {
        Some((cloud, region)) => format!("{region}.{cloud}.neon.tech"),
        None => format!("{region_id}.neon.tech"),
    }
}

impl Project {
    pub fn has_running_operation(&self) -> bool {
        self.operations.iter().any(Operation::running)
    }

    pub fn branch_running(&self, branch_id: &str) -> bool {
        self.operations
            .iter()
            .any(|o| o.branch_id.as_deref() == Some(branch_id) && o.running())
    }

    fn common_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "platform_id": "aws",
            "region_id": self.region_id,
            "name": self.name,
            "provisioner": "k8s-neonvm",
            "pg_version": self.pg_version,
            "proxy_host": proxy_host(&self.region_id),
            "branch_logical_size_limit": 512,
            "branch_logical_size_limit_bytes": 536_870_912,
            "store_passwords": self.store_passwords,
            "cpu_used_sec": 0,
            "creation_source": "console",
            "history_retention_seconds": self.history_retention_seconds,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "owner_id": "emulator-user",
            "default_endpoint_settings": self.default_endpoint_settings.clone().unwrap_or_else(|| json!({
                "autoscaling_limit_min_cu": 0.25,
                "autoscaling_limit_max_cu": 2,
                "suspend_timeout_seconds": 0
            })),
        });
        if let Some(org) = &self.org_id {
            v["org_id"] = json!(org);
        }
        if let Some(settings) = &self.settings {
            v["settings"] = settings.clone();
        }
        v
    }

    /// The `Project` schema (get, create, update, delete).
    pub fn json(&self) -> Value {
        let mut v = self.common_json();
        let now = now_rfc3339();
        for key in [
            "active_time_seconds",
            "compute_time_seconds",
            "written_data_bytes",
            "data_transfer_bytes",
            "data_storage_bytes_hour",
        ] {
            v[key] = json!(0);
        }
        v["consumption_period_start"] = json!(self.created_at);
        v["consumption_period_end"] = json!(now);
        v
    }

    /// The `ProjectListItem` schema (list).
    pub fn list_json(&self) -> Value {
        let mut v = self.common_json();
        v["active_time"] = json!(0);
        v
    }

    /// A branch's annotation as Neon answers it (`AnnotationData`).
    pub fn annotation_json(&self, branch: &Branch) -> Value {
        json!({
            "object": { "type": "console/branch", "id": branch.id },
            "value": branch.annotation,
        })
    }

    pub fn branch_json(&self, branch: &Branch) -> Value {
        let ready = !self.branch_running(&branch.id);
        let mut v = json!({
            "id": branch.id,
            "project_id": self.id,
            "name": branch.name,
            "current_state": if ready { "ready" } else { "init" },
            "state_changed_at": branch.updated_at,
            "creation_source": "console",
            "primary": branch.id == self.default_branch_id,
            "default": branch.id == self.default_branch_id,
            "protected": branch.protected,
            "cpu_used_sec": 0,
            "compute_time_seconds": 0,
            "active_time_seconds": 0,
            "written_data_bytes": 0,
            "data_transfer_bytes": 0,
            "logical_size": 0,
            "init_source": branch.init_source,
            "created_at": branch.created_at,
            "updated_at": branch.updated_at,
        });
        if let Some(at) = &branch.expires_at {
            v["expires_at"] = json!(at);
        }
        if !ready {
            v["pending_state"] = json!("ready");
        }
        if let Some(parent) = &branch.parent_id {
            v["parent_id"] = json!(parent);
        }
        v
    }

    pub fn endpoint_json(&self, e: &Endpoint) -> Value {
        let starting = self
            .operations
            .iter()
            .any(|o| o.endpoint_id.as_deref() == Some(&e.id) && o.running());
        json!({
            "host": e.host,
            "id": e.id,
            "project_id": self.id,
            "branch_id": e.branch_id,
            "autoscaling_limit_min_cu": e.min_cu,
            "autoscaling_limit_max_cu": e.max_cu,
            "region_id": self.region_id,
            "type": e.kind,
            "current_state": if starting { "init" } else if e.disabled { "idle" } else { "active" },
            "settings": e.settings,
            "pooler_enabled": e.pooler_enabled,
            "pooler_mode": "transaction",
            "disabled": e.disabled,
            "passwordless_access": false,
            "creation_source": "console",
            "created_at": e.created_at,
            "updated_at": e.updated_at,
            "proxy_host": proxy_host(&self.region_id),
            "suspend_timeout_seconds": e.suspend_timeout_seconds,
            "provisioner": "k8s-neonvm",
        })
    }

    /// The branch's read-write endpoint, if it has one.
    pub fn read_write_endpoint(&self, branch_id: &str) -> Option<&Endpoint> {
        self.endpoints
            .values()
            .find(|e| e.branch_id == branch_id && e.kind == "read_write")
    }
}

pub fn role_json(branch_id: &str, role: &Role, with_password: bool) -> Value {
    let mut v = json!({
        "branch_id": branch_id,
        "name": role.name,
        "protected": false,
        "created_at": role.created_at,
        "updated_at": role.updated_at,
    });
    if with_password {
        v["password"] = json!(role.password);
    }
    v
}

pub fn database_json(branch_id: &str, db: &Database) -> Value {
    json!({
        "id": db.id,
        "branch_id": branch_id,
        "name": db.name,
        "owner_name": db.owner_name,
        "created_at": db.created_at,
        "updated_at": db.updated_at,
    })
}
