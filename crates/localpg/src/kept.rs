//! A cluster kept in a folder between runs, as `deployer dev --local` keeps one under
//! `.deployer/dev/`: made on first use, started unless it runs, stopped when dropped. Roles
//! get a password each, made once and kept beside it (0600), so files that hold a
//! connection string stay valid from one run to the next.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use postgres_protocol::escape::{escape_identifier, escape_literal};

use crate::{Init, LocalPgError, Tools, append_conf};

/// A kept cluster, started; stopped when dropped.
#[derive(Debug)]
pub struct KeptCluster {
    tools: Tools,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
}

impl KeptCluster {
    /// The cluster in `dir/pgdata` on `127.0.0.1:port`, made if missing, started if not
    /// running. Progress goes to stderr.
    pub fn start(dir: &Path, port: u16) -> Result<KeptCluster, LocalPgError> {
        let tools = Tools::find()?;
        let files = |path: &Path| {
            let path = path.to_owned();
            move |source| LocalPgError::Files { path, source }
        };
        // Absolute: pg_ctl runs the server elsewhere than here, as another account.
        fs::create_dir_all(dir.join("pgdata")).map_err(files(dir))?;
        let dir = fs::canonicalize(dir).map_err(files(dir))?;
        let data = dir.join("pgdata");
        if tools.as_postgres() {
            // The cluster runs as `postgres` when we are root; it only needs to pass through.
            let _ = fs::set_permissions(
                dir.parent().unwrap_or(&dir),
                fs::Permissions::from_mode(0o711),
            );
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o711));
            tools.give(&data)?;
            let _ = fs::set_permissions(&data, fs::Permissions::from_mode(0o700));
            if !tools.can_enter(&data) {
                return Err(LocalPgError::Unreachable { path: data });
            }
        }
        if !data.join("PG_VERSION").exists() {
            eprintln!("creating a PostgreSQL cluster in {}", data.display());
            let init = Init {
                superuser: "postgres".to_owned(),
                pwfile: None,
                no_sync: false,
            };
            tools.initdb(&data, &init)?;
            append_conf(
                &data,
                &format!(
                    "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
                    data.display()
                ),
            )?;
        }
        if !tools.is_running(&data) {
            eprintln!("starting PostgreSQL on 127.0.0.1:{port}");
            tools.start(&data, &data.join("server.log"), port)?;
        }
        Ok(KeptCluster {
            tools,
            dir,
            data,
            port,
        })
    }

    /// Runs `sql` as the superuser over the cluster's socket; what it printed. SQL (with
    /// passwords) goes through stdin, never the process list.
    pub fn psql(&self, sql: &str) -> Result<String, LocalPgError> {
        let mut cmd = self.tools.command("psql");
        cmd.args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn = |source| LocalPgError::Spawn {
            tool: "psql".to_owned(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(sql.as_bytes());
        }
        let out = child.wait_with_output().map_err(spawn)?;
        if !out.status.success() {
            return Err(LocalPgError::Failed {
                tool: "psql".to_owned(),
                status: out.status,
                output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The role's password: made once (random), kept in `passwords.json` (0600).
    pub fn password(&self, role: &str) -> Result<String, LocalPgError> {
        let path = self.dir.join("passwords.json");
        let mut all: BTreeMap<String, String> = fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if let Some(p) = all.get(role) {
            return Ok(p.clone());
        }
        let files = |source| LocalPgError::Files {
            path: path.clone(),
            source,
        };
        let mut bytes = [0u8; 18];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .map_err(|source| LocalPgError::Files {
                path: PathBuf::from("/dev/urandom"),
                source,
            })?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        all.insert(role.to_owned(), password.clone());
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(files)?;
        Ok(password)
    }

    /// Creates the role (or sets its password) so it logs in with [`Self::password`].
    pub fn ensure_role(&self, role: &str) -> Result<String, LocalPgError> {
        let password = self.password(role)?;
        let exists = self.psql(&format!(
            "SELECT 1 FROM pg_roles WHERE rolname = {}",
            escape_literal(role)
        ))?;
        let verb = if exists == "1" { "ALTER" } else { "CREATE" };
        self.psql(&format!(
            "{verb} ROLE {} LOGIN PASSWORD {}",
            escape_identifier(role),
            escape_literal(&password)
        ))?;
        Ok(password)
    }

    /// Creates the database, owned by `owner`, unless it exists.
    pub fn ensure_database(&self, db: &str, owner: &str) -> Result<(), LocalPgError> {
        let exists = self.psql(&format!(
            "SELECT 1 FROM pg_database WHERE datname = {}",
            escape_literal(db)
        ))?;
        if exists != "1" {
            self.psql(&format!(
                "CREATE DATABASE {} OWNER {}",
                escape_identifier(db),
                escape_identifier(owner)
            ))?;
        }
        Ok(())
    }

    /// The URI for `role` on `db`, over TCP without TLS (the cluster listens on loopback).
    pub fn uri(&self, role: &str, password: &str, db: &str) -> String {
        crate::uri(
            "127.0.0.1",
            self.port,
            role,
            password,
            db,
            "sslmode=disable",
        )
    }
}

impl Drop for KeptCluster {
    fn drop(&mut self) {
        eprintln!("stopping PostgreSQL");
        let _ = self.tools.stop(&self.data);
    }
}
