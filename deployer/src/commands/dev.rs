//! `deployer dev`: the api on this machine with the stage's links.
//!
//! Without NEON_API_KEY (or with `--local`) it needs no account: a PostgreSQL cluster under
//! `.deployer/dev/pgdata` (kept between runs) gets the roles and databases infra.toml
//! declares, and the links point there. With a key it deploys the stage's Neon resources
//! (not the function) and links those. Then `cargo lambda watch -A 127.0.0.1` runs with
//! them (or the command after `--`, with the links in its environment).
//!
//! Where the values go (all 0600, under the gitignored `.deployer/dev/`): `watch.env`, the
//! whole environment, passed to `cargo lambda watch --env-file`; and `env/<VAR>`, one file
//! per variable, which the committed `.deployer/dev.env` (the env file cargo-lambda.toml
//! names) points at with `LINK_NeonDB_FILE`, so a plain `cargo lambda watch` finds the link
//! too, and the committed file never holds a secret.

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use localpg::{KeptCluster, LocalPgError};

use super::pipeline::{Applied, Pipeline, Review};
use crate::cli::{DEFAULT_CONCURRENCY, DevArgs};
use crate::config::{Config, DatabaseSpec, FunctionSpec, LinkSpec, RoleSpec, Spec};
use crate::error::{Failure, because};
use crate::neon::models::{BranchId, EndpointId, ProjectId};
use crate::plan::Scope;
use crate::resources::{branch, database, endpoint, project, resolve_template, role};
use crate::state::Store;
use crate::state::to_map;

pub async fn run(config_path: &Path, args: &DevArgs) -> Result<u8, Failure> {
    let dir = super::project_dir(config_path);
    let local = args.local
        || std::env::var_os("NEON_API_KEY").is_none() && {
            // .env may hold the key too.
            crate::env::EnvSource::load(&dir, None)
                .map(|e| e.get("NEON_API_KEY").is_none())
                .unwrap_or(true)
        };
    let stage = if local && args.stage.stage.is_none() {
        "local".to_owned()
    } else {
        super::resolve_stage(&args.stage)?
    };
    let (env, config) = super::load_with(config_path, &stage, local)?;

    let mut cluster = None;
    let outputs = if local {
        let c = LocalCluster::start(&dir, args.pg_port)?;
        let outputs = c.provision(&config)?;
        cluster = Some(c);
        apply_local_migrations(&config, &outputs).await?;
        outputs
    } else {
        if config.policy(&stage).protect {
            return Err(Failure::bad_input(format!(
                "stage `{stage}` is protected; `dev` would create and change its Neon resources from this machine"
            ))
            .hint(match config.previews.get("default") {
                Some(p) => format!(
                    "use a stage of your own (deployer dev --stage <you>): it gets its own branch of `{}`'s data through branch_from",
                    p.base
                ),
                None => "use a stage of your own (deployer dev --stage <you>); set branch_from under [stages.default] to give it a branch of this stage's data".to_owned(),
            }));
        }
        let pipeline = Pipeline {
            command: "dev",
            with_aws: false,
            scope: Scope::Neon,
            remove: false,
            allow_data_loss: false,
            allow_missing: false,
            concurrency: usize::from(DEFAULT_CONCURRENCY),
        };
        let provisioned = pipeline
            .run(
                &config,
                &env,
                &stage,
                |_, _, _| Ok(Review::Apply),
                async |_: &Store, _: &Applied| Ok(()),
            )
            .await?
            .expect("dev's review applies every plan");
        provisioned
            .state
            .resources
            .into_iter()
            .map(|(k, v)| (k, v.outputs))
            .collect()
    };

    let vars = link_environment(&config, &outputs)?;
    let dev_dir = dir.join(".deployer").join("dev");
    let watch_env = dev_dir.join("watch.env");
    write_env_file(&watch_env, &vars)?;
    for (k, v) in &vars {
        write_private(&dev_dir.join("env").join(k), v)?;
    }
    eprintln!(
        "wrote .deployer/dev/watch.env ({} variable{}; secrets stay in .deployer/dev)",
        vars.len(),
        if vars.len() == 1 { "" } else { "s" }
    );

    let mut cmd = if args.command.is_empty() {
        eprintln!(
            "starting cargo lambda watch; then try: curl http://127.0.0.1:{}/version",
            args.port
        );
        let mut c = tokio::process::Command::new("cargo");
        c.args(["lambda", "watch", "--env-file"])
            .arg(&watch_env)
            .args(["-A", "127.0.0.1", "-P", &args.port.to_string()]);
        c
    } else {
        let mut c = tokio::process::Command::new(&args.command[0]);
        c.args(&args.command[1..]);
        c
    };
    cmd.current_dir(&dir).envs(&vars).stdin(Stdio::inherit());
    let status = run_child(cmd).await;
    drop(cluster);
    Ok(status?.code().unwrap_or(1).clamp(0, 255) as u8)
}

/// Runs the child to its end, as a shell would: Ctrl-C reaches it through the terminal
/// (we wait, then clean up), and SIGTERM sent to us is passed on to it.
async fn run_child(mut cmd: tokio::process::Command) -> Result<std::process::ExitStatus, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::bad_input(because(format!("cannot run `{program}`"), e)))?;
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return child
            .wait()
            .await
            .map_err(|e| Failure::remote(e.to_string()));
    };
    loop {
        tokio::select! {
            status = child.wait() => return status.map_err(|e| Failure::remote(e.to_string())),
            _ = int.recv() => {}
            _ = term.recv() => {
                if let Some(pid) = child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
        }
    }
}

/// `LINK_<Name>` for every link, and every function's `environment`, resolved.
/// Applies each migration set to its database in the local cluster, as a deploy would.
async fn apply_local_migrations(
    config: &Config,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<(), Failure> {
    for r in &config.resources {
        let Spec::Migrations(spec) = &r.spec else {
            continue;
        };
        let uri = outputs
            .get(&spec.database)
            .and_then(|o| o.get("connection_uri"))
            .cloned()
            .unwrap_or_default();
        let opts = crate::migrate::Options {
            lock_timeout: spec.lock_timeout,
            ..Default::default()
        };
        crate::resources::migrations::apply(&uri, spec, &opts, &r.name)
            .await
            .map_err(|e| {
                let hint = e.hint();
                Failure::remote(e).maybe_hint(hint)
            })?;
    }
    Ok(())
}

fn link_environment(
    config: &Config,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut resolved: BTreeMap<String, BTreeMap<String, String>> = outputs.clone();
    let mut vars = BTreeMap::new();
    for r in &config.resources {
        match &r.spec {
            Spec::Link(LinkSpec { properties, .. }) => {
                let mut props = BTreeMap::new();
                for (k, t) in properties {
                    let v = resolve_template(t, |n| resolved.get(n)).ok_or_else(|| {
                        Failure::bad_input(format!(
                            "link `{}`: `{k}` refers to an output that local runs do not have",
                            r.name
                        ))
                    })?;
                    props.insert(k.clone(), v);
                }
                vars.insert(
                    format!("LINK_{}", r.name),
                    serde_json::to_string(&props).unwrap_or_default(),
                );
                resolved.insert(r.name.clone(), props);
            }
            Spec::Function(FunctionSpec { environment, .. }) => {
                for (k, t) in environment {
                    if let Some(v) = resolve_template(t, |n| resolved.get(n)) {
                        vars.insert(k.clone(), v);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vars)
}

/// Writes the env file cargo-lambda reads (mode 0600): values single-quoted, because
/// cargo-lambda rejects unquoted values holding `=` or `?`, and JSON holds double quotes.
fn write_env_file(path: &Path, vars: &BTreeMap<String, String>) -> Result<(), Failure> {
    let mut text = String::from(
        "# Written by `deployer dev` for cargo lambda watch. Holds passwords; never commit it.\n",
    );
    for (k, v) in vars {
        if v.contains('\'') || v.contains('\n') {
            return Err(Failure::bad_input(format!(
                "`{k}` holds a quote or newline, which the env file cannot carry"
            )));
        }
        text.push_str(&format!("{k}='{v}'\n"));
    }
    write_private(path, &text)
}

/// Writes `text` to `path` (creating folders), readable by the owner only.
fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
    };
    write().map_err(|e| Failure::remote(because(format!("cannot write `{}`", path.display()), e)))
}

/// The local PostgreSQL cluster of `deployer dev --local` (`.deployer/dev/`), stopped when
/// dropped, and what infra.toml declares made in it.
struct LocalCluster(KeptCluster);

/// A local PostgreSQL failure, with its hint.
fn local_pg(e: LocalPgError) -> Failure {
    let hint = e.hint().map(str::to_owned);
    let bad_input = matches!(
        e,
        LocalPgError::NotInstalled
            | LocalPgError::NoPostgresAccount
            | LocalPgError::Unreachable { .. }
    );
    let f = if bad_input {
        Failure::bad_input(e)
    } else {
        Failure::remote(e)
    };
    f.maybe_hint(hint)
}

impl LocalCluster {
    fn start(project_dir: &Path, port: u16) -> Result<LocalCluster, Failure> {
        let dir = project_dir.join(".deployer").join("dev");
        KeptCluster::start(&dir, port)
            .map(LocalCluster)
            .map_err(|e| match e {
                LocalPgError::Failed { ref tool, .. } if tool == "pg_ctl start" => {
                    local_pg(e).hint(format!("is port {port} taken? pass --pg-port"))
                }
                e => local_pg(e),
            })
    }

    fn ensure_role(&self, role: &str) -> Result<String, Failure> {
        self.0.ensure_role(role).map_err(local_pg)
    }

    fn ensure_database(&self, db: &str, owner: &str) -> Result<(), Failure> {
        self.0.ensure_database(db, owner).map_err(local_pg)
    }

    fn password(&self, role: &str) -> Result<String, Failure> {
        self.0.password(role).map_err(local_pg)
    }

    fn uri(&self, role: &str, password: &str, db: &str) -> String {
        self.0.uri(role, password, db)
    }

    /// Creates what infra.toml declares and returns outputs shaped like Neon's.
    fn provision(
        &self,
        config: &Config,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, Failure> {
        let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let literal = |t: &crate::config::Template| t.as_literal().unwrap_or_default();
        for r in &config.resources {
            let o: BTreeMap<String, String> = match &r.spec {
                Spec::Project(_) | Spec::PreviewBranch(_) => {
                    // Neon's defaults for a new project: role neondb_owner, database neondb.
                    let password = self.ensure_role("neondb_owner")?;
                    self.ensure_database("neondb", "neondb_owner")?;
                    let uri = self.uri("neondb_owner", &password, "neondb");
                    let local = || BranchId::from("local");
                    to_map(&project::Outputs {
                        id: ProjectId::from("local"),
                        name: r.name.clone(),
                        default_branch_id: Some(local()),
                        branch_id: Some(local()),
                        expires_at: None,
                        database: Some(project::DefaultDatabase {
                            connection_uri: uri.clone(),
                            connection_uri_pooler: uri,
                            database_host: "127.0.0.1".to_owned(),
                            database_name: "neondb".to_owned(),
                            database_user: "neondb_owner".to_owned(),
                            database_password: password,
                        }),
                    })
                }
                Spec::Branch(_) => to_map(&branch::Outputs {
                    id: BranchId(format!("local-{}", r.name.to_lowercase())),
                }),
                Spec::Endpoint(_) => to_map(&endpoint::Outputs {
                    id: EndpointId::from("local"),
                    host: "127.0.0.1".to_owned(),
                }),
                Spec::Role(RoleSpec { name, .. }) => {
                    let name = literal(name);
                    let password = self.ensure_role(&name)?;
                    to_map(&role::Outputs { name, password })
                }
                Spec::Database(DatabaseSpec { name, owner, .. }) => {
                    let name = literal(name);
                    let owner_name = outputs
                        .get(owner)
                        .and_then(|o| serde_json::to_value(o).ok())
                        .and_then(|o| serde::Deserialize::deserialize(o).ok())
                        .map(|o: role::Outputs| o.name)
                        .unwrap_or_default();
                    self.ensure_database(&name, &owner_name)?;
                    let password = self.password(&owner_name)?;
                    // No pooler locally: the pooled URI is the direct one.
                    let uri = self.uri(&owner_name, &password, &name);
                    to_map(&database::Outputs {
                        name,
                        connection_uri: uri.clone(),
                        connection_uri_pooler: uri,
                    })
                }
                // Applied once the databases exist (`apply_local_migrations`).
                Spec::Migrations(_) | Spec::Link(_) | Spec::Function(_) => continue,
            };
            outputs.insert(r.name.clone(), o);
        }
        Ok(outputs)
    }
}
