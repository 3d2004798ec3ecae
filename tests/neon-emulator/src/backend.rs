//! The real PostgreSQL behind the emulator. As on Neon, every branch has its own server:
//! a cluster started on demand (a copy of a template made once by `initdb`), and a new
//! branch's cluster is a `pg_basebackup` of its parent's, so it starts with the parent's
//! roles (same passwords) and databases (same data). Role and database names are exactly
//! those requested, so `current_user` is the role the user declared, and a role of one
//! branch cannot log in to another branch's server.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use localpg::{Init, LocalPgError, Tools};
use tokio_postgres::{Client, NoTls};

/// The superuser of every branch's server, named as Neon's is.
pub const SUPERUSER: &str = "cloud_admin";

/// The host in every URI: the test certificates are made for it.
pub const HOST: &str = "localhost";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Cluster(#[from] LocalPgError),
    #[error("cannot prepare `{}` for PostgreSQL", path.display())]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

impl BackendError {
    /// The server's message, when PostgreSQL refused (e.g. objects still depend on a role).
    pub fn db_message(&self) -> Option<String> {
        match self {
            BackendError::Postgres(e) => e.as_db_error().map(|d| d.message().to_owned()),
            _ => None,
        }
    }
}

/// A server certificate and key (PEM) for every branch's server; URIs then say
/// `sslmode=require`, as Neon's do.
#[derive(Debug, Clone)]
pub struct TlsPem {
    pub cert: String,
    pub key: String,
}

/// Where branch servers live, and the template each project's first one is copied from.
pub struct Clusters {
    tools: Tools,
    root: Arc<Root>,
    template: PathBuf,
    superuser_password: String,
    /// Neon's proxy in front of each server, where the servers serve TLS.
    proxy_tls: Option<crate::proxy::ProxyTls>,
    /// The certificate and key the servers serve TLS with.
    tls: Option<TlsPem>,
    /// PgBouncer's binary, when every branch gets Neon's pooler (with TLS only).
    pooler: Option<PathBuf>,
}

/// A point in a branch's past: `parent_timestamp` (RFC 3339) or `parent_lsn`.
#[derive(Debug, Clone)]
pub enum PointInTime {
    Time(String),
    Lsn(String),
}

/// One branch's running server; dropping it stops the server and deletes its files.
pub struct Cluster {
    /// `<root>/<id>`: the socket folder, with the data folder `data` inside.
    dir: PathBuf,
    port: u16,
    admin: Client,
    superuser_password: String,
    /// Where clients connect: Neon's proxy in front of the server (none without TLS).
    proxy: Option<crate::proxy::Proxy>,
    /// Neon's pooler (PgBouncer, transaction mode) and the proxy in front of it.
    pooler: Option<(crate::pooler::Pooler, crate::proxy::Proxy)>,
    root: Arc<Root>,
}

/// The folder of every server. The last one to let go of it stops any server still running
/// there (one whose start finished after its request was abandoned), then deletes it.
struct Root {
    dir: tempfile::TempDir,
    tools: Tools,
    /// Data folders of servers that were started and not stopped since.
    started: Mutex<Vec<PathBuf>>,
}

impl Root {
    fn stop(&self, data: &Path) {
        let _ = self
            .tools
            .command("pg_ctl")
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        self.started.lock().unwrap().retain(|d| d != data);
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let left = std::mem::take(&mut *self.started.lock().unwrap());
        for data in left {
            self.stop(&data);
        }
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn files(path: &Path) -> impl FnOnce(std::io::Error) -> BackendError + '_ {
    move |source| BackendError::Files {
        path: path.to_owned(),
        source,
    }
}

/// A loopback port nobody listens on right now.
/// Copies a data folder; `-a` keeps the owner (the `postgres` account when we are root)
/// and modes.
fn copy_dir(from: &Path, to: &Path) -> Result<(), BackendError> {
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .map_err(files(to))?;
    if !copied.status.success() {
        return Err(files(to)(std::io::Error::other(
            String::from_utf8_lossy(&copied.stderr).into_owned(),
        )));
    }
    Ok(())
}

fn free_port() -> Result<u16, BackendError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(files(Path::new("127.0.0.1:0")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a cluster task does not panic")
}

impl Clusters {
    /// Makes the template cluster under `parent` (default: the system's temporary folder).
    pub async fn prepare(
        parent: Option<PathBuf>,
        tls: Option<TlsPem>,
        superuser_password: String,
        pooler: Option<PathBuf>,
    ) -> Result<Clusters, BackendError> {
        blocking(move || {
            let tools = Tools::find()?;
            let mut builder = tempfile::Builder::new();
            builder.prefix("neon-emulator-");
            let root = match &parent {
                Some(p) => builder.tempdir_in(p),
                None => builder.tempdir(),
            }
            .map_err(files(parent.as_deref().unwrap_or(Path::new("/tmp"))))?;
            let dir = root.path();
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(files(dir))?;
            tools.give(dir)?;
            let template = dir.join("template");
            let pwfile = dir.join("pwfile");
            fs::write(&pwfile, &superuser_password).map_err(files(&pwfile))?;
            tools.give(&pwfile)?;
            tools.initdb(
                &template,
                &Init {
                    superuser: SUPERUSER.to_owned(),
                    pwfile: Some(pwfile.clone()),
                    no_sync: true,
                },
            )?;
            fs::remove_file(&pwfile).map_err(files(&pwfile))?;
            let mut conf = String::from(
                "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n\
                 full_page_writes = off\nshared_buffers = 16MB\nmax_connections = 100\n\
                 wal_keep_size = '4GB'\n",
            );
            if let Some(tls) = &tls {
                for (name, pem) in [("server.crt", &tls.cert), ("server.key", &tls.key)] {
                    let path = template.join(name);
                    fs::write(&path, pem).map_err(files(&path))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                        .map_err(files(&path))?;
                    tools.give(&path)?;
                }
                conf.push_str(
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                );
            }
            localpg::append_conf(&template, &conf)?;
            let proxy_tls = match &tls {
                Some(tls) => Some(
                    crate::proxy::ProxyTls::new(&tls.cert, &tls.key)
                        .map_err(|e| files(Path::new("server.crt"))(std::io::Error::other(e)))?,
                ),
                None => None,
            };
            Ok(Clusters {
                root: Arc::new(Root {
                    dir: root,
                    tools: tools.clone(),
                    started: Mutex::new(Vec::new()),
                }),
                tools,
                template,
                superuser_password,
                proxy_tls,
                pooler: pooler.filter(|_| tls.is_some()),
                tls,
            })
        })
        .await
    }

    /// A new, empty server for a project's first branch `id`.
    pub async fn create(&self, id: &str) -> Result<Cluster, BackendError> {
        let (template, dir) = (self.template.clone(), self.dir(id)?);
        let data = dir.join("data");
        blocking(move || copy_dir(&template, &data)).await?;
        self.start(dir).await
    }

    /// A server for branch `id` holding a copy of `parent`'s roles and data.
    pub async fn branch(&self, parent: &Cluster, id: &str) -> Result<Cluster, BackendError> {
        let dir = self.dir(id)?;
        let (tools, data) = (self.tools.clone(), dir.join("data"));
        let (parent_dir, parent_port) = (parent.dir.clone(), parent.port);
        blocking(move || {
            let mut cmd = tools.command("pg_basebackup");
            cmd.arg("-D")
                .arg(&data)
                .arg("-h")
                .arg(&parent_dir)
                .args(["-p", &parent_port.to_string(), "-U", SUPERUSER])
                .args(["--checkpoint=fast", "--wal-method=stream", "--no-sync"]);
            let output = cmd.output().map_err(|source| LocalPgError::Spawn {
                tool: "pg_basebackup".into(),
                source,
            })?;
            if !output.status.success() {
                return Err(LocalPgError::Failed {
                    tool: "pg_basebackup".into(),
                    status: output.status,
                    output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                }
                .into());
            }
            Ok(())
        })
        .await?;
        self.start(dir).await
    }

    /// A server for branch `id` holding `parent`'s data as it was at a point of its past:
    /// real point-in-time recovery. The base is the template `parent` was copied from (so
    /// `parent` must be a project's first branch), and the WAL is `parent`'s own, which
    /// its servers keep (`wal_keep_size`). A commit is written on `parent` after the
    /// target, so recovery has a record past it to stop at.
    pub async fn branch_at(
        &self,
        parent: &Cluster,
        id: &str,
        target: &PointInTime,
    ) -> Result<Cluster, BackendError> {
        parent
            .admin
            .batch_execute("SELECT txid_current(); SELECT pg_switch_wal();")
            .await?;
        let dir = self.dir(id)?;
        let (tools, template, data) = (self.tools.clone(), self.template.clone(), dir.join("data"));
        let parent_wal = parent.dir.join("data").join("pg_wal");
        let target = match target {
            // PostgreSQL's setting takes `2026-11-27 12:00:00+00`, not the `T`/`Z` form.
            PointInTime::Time(t) => format!(
                "recovery_target_time = '{}'\n",
                t.replace('T', " ").replace('Z', "+00")
            ),
            PointInTime::Lsn(l) => format!("recovery_target_lsn = '{l}'\n"),
        };
        blocking(move || {
            copy_dir(&template, &data)?;
            localpg::append_conf(
                &data,
                &format!(
                    "restore_command = 'cp {}/%f %p'\n{target}recovery_target_action = 'promote'\n",
                    parent_wal.display()
                ),
            )?;
            let signal = data.join("recovery.signal");
            fs::write(&signal, "").map_err(files(&signal))?;
            tools.give(&signal)?;
            Ok(())
        })
        .await?;
        let cluster = self.start(dir).await?;
        // The server answers read-only while it replays; the branch is ready once promoted.
        for _ in 0..300 {
            let row = cluster
                .admin
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await?;
            if !row.get::<_, bool>(0) {
                return Ok(cluster);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(files(&cluster.dir)(std::io::Error::other(
            "point-in-time recovery did not finish in 30 s",
        )))
    }

    fn dir(&self, id: &str) -> Result<PathBuf, BackendError> {
        let dir = self.root.dir.path().join(id);
        fs::create_dir(&dir).map_err(files(&dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(files(&dir))?;
        self.tools.give(&dir)?;
        Ok(dir)
    }

    /// Starts the server in `dir/data` on a free port, its socket in `dir`.
    async fn start(&self, dir: PathBuf) -> Result<Cluster, BackendError> {
        let (tools, root) = (self.tools.clone(), self.root.clone());
        let (dir, port) = blocking(move || {
            let data = dir.join("data");
            root.started.lock().unwrap().push(data.clone());
            localpg::append_conf(
                &data,
                &format!("unix_socket_directories = '{}'\n", dir.display()),
            )?;
            // Another process may take the free port between our check and the bind.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let port = free_port()?;
                match tools.start(&data, &dir.join("server.log"), port) {
                    Ok(()) => return Ok((dir, port)),
                    Err(e) if attempt == 5 => return Err(e.into()),
                    Err(_) => continue,
                }
            }
        })
        .await?;
        let (admin, conn) = tokio_postgres::Config::new()
            .host_path(&dir)
            .port(port)
            .user(SUPERUSER)
            .dbname("postgres")
            .connect(NoTls)
            .await?;
        tokio::spawn(conn);
        let proxy = match &self.proxy_tls {
            Some(tls) => Some(
                crate::proxy::Proxy::start(tls.clone(), port)
                    .await
                    .map_err(files(Path::new("127.0.0.1:0")))?,
            ),
            None => None,
        };
        let pooler = match (&self.pooler, &self.tls, &self.proxy_tls) {
            (Some(binary), Some(pem), Some(proxy_tls)) => {
                let (tools, binary, at) = (self.tools.clone(), binary.clone(), dir.clone());
                let (password, pem) = (self.superuser_password.clone(), pem.clone());
                let bouncer = blocking(move || {
                    crate::pooler::Pooler::start(
                        &tools,
                        &binary,
                        &at,
                        port,
                        &password,
                        (&pem.cert, &pem.key),
                    )
                })
                .await?;
                let front = crate::proxy::Proxy::start(proxy_tls.clone(), bouncer.port)
                    .await
                    .map_err(files(Path::new("127.0.0.1:0")))?;
                Some((bouncer, front))
            }
            _ => None,
        };
        Ok(Cluster {
            dir,
            port,
            admin,
            superuser_password: self.superuser_password.clone(),
            proxy,
            pooler,
            root: self.root.clone(),
        })
    }
}

impl Cluster {
    /// A connection URI as Neon returns them, that really connects: through Neon's proxy,
    /// which takes TLS first or after `SSLRequest`.
    pub fn uri(&self, role: &str, password: &str, database: &str) -> String {
        match &self.proxy {
            Some(proxy) => localpg::uri(
                HOST,
                proxy.port,
                role,
                password,
                database,
                "sslmode=require&channel_binding=require",
            ),
            None => localpg::uri(HOST, self.port, role, password, database, "sslmode=disable"),
        }
    }

    /// The pooled connection URI: through Neon's proxy and its pooler (PgBouncer, which
    /// offers no channel binding), where the emulator runs one; else the direct one.
    pub fn pooled_uri(&self, role: &str, password: &str, database: &str) -> String {
        match &self.pooler {
            Some((_, front)) => localpg::uri(
                HOST,
                front.port,
                role,
                password,
                database,
                "sslmode=require",
            ),
            None => self.uri(role, password, database),
        }
    }

    /// The clients that logged in through the branch's pooler (`database/user`).
    pub fn pooler_logins(&self) -> Vec<String> {
        self.pooler
            .as_ref()
            .map(|(p, _)| p.logins())
            .unwrap_or_default()
    }

    /// The superuser's URI (for tests that look inside a branch).
    pub fn superuser_uri(&self) -> String {
        localpg::uri(
            HOST,
            self.port,
            SUPERUSER,
            &self.superuser_password,
            "postgres",
            "sslmode=disable",
        )
    }

    /// A role as Neon's API makes them: it may log in, create databases and roles.
    pub async fn create_role(&self, name: &str, password: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}",
                quote_ident(name),
                quote_literal(password)
            ))
            .await?;
        Ok(())
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(name),
                quote_literal(password)
            ))
            .await?;
        Ok(())
    }

    pub async fn drop_role(&self, name: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(name)))
            .await?;
        Ok(())
    }

    pub async fn create_database(&self, name: &str, owner: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(name),
                quote_ident(owner)
            ))
            .await?;
        Ok(())
    }

    pub async fn drop_database(&self, name: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(name)
            ))
            .await?;
        Ok(())
    }

    pub async fn set_owner(&self, database: &str, owner: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "ALTER DATABASE {} OWNER TO {}",
                quote_ident(database),
                quote_ident(owner)
            ))
            .await?;
        Ok(())
    }

    /// Renames a database; its sessions are disconnected, since PostgreSQL renames only a
    /// database nobody is connected to.
    pub async fn rename_database(&self, from: &str, to: &str) -> Result<(), BackendError> {
        self.admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&from],
            )
            .await?;
        self.admin
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(from),
                quote_ident(to)
            ))
            .await?;
        Ok(())
    }

    /// `database`'s schema as `pg_dump --schema-only` prints it (no owners, no grants).
    pub async fn schema(&self, database: &str) -> Result<String, BackendError> {
        let (tools, dir, port, db) = (
            self.root.tools.clone(),
            self.dir.clone(),
            self.port,
            database.to_owned(),
        );
        blocking(move || {
            let mut cmd = tools.command("pg_dump");
            cmd.args(["--schema-only", "--no-owner", "--no-privileges"])
                .arg("-h")
                .arg(&dir)
                .args(["-p", &port.to_string(), "-U", SUPERUSER, "-d", &db]);
            let output = cmd.output().map_err(|source| LocalPgError::Spawn {
                tool: "pg_dump".into(),
                source,
            })?;
            if !output.status.success() {
                return Err(LocalPgError::Failed {
                    tool: "pg_dump".into(),
                    status: output.status,
                    output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                }
                .into());
            }
            // pg_dump's `\restrict <random key>` lines (since the August 2025 releases)
            // differ on every run: they are not schema.
            Ok(String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
                .map(|l| format!("{l}\n"))
                .collect())
        })
        .await
    }

    /// Whether `lsn` is at or before where its WAL is now.
    pub async fn has_lsn(&self, lsn: &str) -> Result<bool, BackendError> {
        let row = self
            .admin
            .query_one("SELECT $1::text::pg_lsn <= pg_current_wal_lsn()", &[&lsn])
            .await?;
        Ok(row.get(0))
    }

    /// Deletes every row of every table in every database, keeping the tables: what a
    /// schema-only branch starts with.
    pub async fn empty_tables(&self) -> Result<(), BackendError> {
        let rows = self
            .admin
            .query(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate",
                &[],
            )
            .await?;
        for row in rows {
            let db: String = row.get(0);
            let (client, conn) = tokio_postgres::Config::new()
                .host_path(&self.dir)
                .port(self.port)
                .user(SUPERUSER)
                .dbname(&db)
                .connect(NoTls)
                .await?;
            tokio::spawn(conn);
            client
                .batch_execute(
                    "DO $$DECLARE t record; BEGIN
                       FOR t IN SELECT format('%I.%I', n.nspname, c.relname) AS name
                                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE c.relkind IN ('r', 'p')
                                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                                  AND n.nspname NOT LIKE 'pg_toast%'
                       LOOP EXECUTE 'TRUNCATE ' || t.name || ' RESTART IDENTITY CASCADE'; END LOOP;
                     END$$",
                )
                .await?;
        }
        Ok(())
    }

    /// Stops the server and deletes its files without blocking the runtime.
    pub async fn shut_down(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.root.stop(&self.dir.join("data"));
        let _ = fs::remove_dir_all(&self.dir);
    }
}
