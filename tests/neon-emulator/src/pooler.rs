//! Neon's pooler for a branch, as Neon runs it behind a `-pooler` host: Neon's proxy, then
//! PgBouncer in transaction mode, then the branch's server ("Connection pooling", Neon
//! docs). Roles are made after PgBouncer starts, so it looks each user's SCRAM secret up in
//! the server (`auth_query`, as the superuser) and logs in to the server with the client's
//! own SCRAM keys (PgBouncer's SCRAM pass-through). Every client login is in its log, so a
//! test can tell what came through the pooler.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use localpg::{LocalPgError, Tools};

use crate::backend::{BackendError, SUPERUSER};

/// A running PgBouncer; dropping it stops it.
pub struct Pooler {
    dir: PathBuf,
    pub port: u16,
    child: Child,
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn private(tools: &Tools, path: &Path, text: &str) -> Result<(), BackendError> {
    let io = |source| BackendError::Files {
        path: path.to_owned(),
        source,
    };
    fs::write(path, text).map_err(io)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
    tools.give(path)?;
    Ok(())
}

impl Pooler {
    /// Starts `binary` (PgBouncer) in `dir` in front of the server on `server_port`, serving
    /// TLS with `cert` and `key` (PEM) to Neon's proxy.
    pub fn start(
        tools: &Tools,
        binary: &Path,
        dir: &Path,
        server_port: u16,
        superuser_password: &str,
        (cert, key): (&str, &str),
    ) -> Result<Pooler, BackendError> {
        let d = dir.display();
        private(tools, &dir.join("pooler.crt"), cert)?;
        private(tools, &dir.join("pooler.key"), key)?;
        private(
            tools,
            &dir.join("pooler-users.txt"),
            &format!("\"{SUPERUSER}\" \"{superuser_password}\"\n"),
        )?;
        let log = dir.join("pooler.log");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|source| BackendError::Files {
                    path: PathBuf::from("127.0.0.1:0"),
                    source,
                })?;
            let ini = format!(
                "[databases]\n* = host=127.0.0.1 port={server_port} auth_user={SUPERUSER}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {d}/pooler-users.txt\n\
                 auth_user = {SUPERUSER}\n\
                 auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1\n\
                 pool_mode = transaction\ndefault_pool_size = 5\nmax_client_conn = 1000\n\
                 server_tls_sslmode = require\nclient_tls_sslmode = require\n\
                 client_tls_cert_file = {d}/pooler.crt\nclient_tls_key_file = {d}/pooler.key\n\
                 logfile = {log}\npidfile = {d}/pooler.pid\n",
                log = log.display(),
            );
            let ini_path = dir.join("pooler.ini");
            private(tools, &ini_path, &ini)?;
            let mut child = tools
                .command_for(binary)
                .arg(&ini_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| LocalPgError::Spawn {
                    tool: "pgbouncer".into(),
                    source,
                })?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Pooler {
                        dir: dir.to_owned(),
                        port,
                        child,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            // Most likely another process took the port: try another.
        }
        Err(BackendError::Files {
            path: log.clone(),
            source: std::io::Error::other(format!(
                "PgBouncer did not start: {}",
                fs::read_to_string(&log).unwrap_or_default()
            )),
        })
    }

    /// The clients that logged in through it so far, as `database/user` (PgBouncer's log).
    pub fn logins(&self) -> Vec<String> {
        let log = fs::read_to_string(self.dir.join("pooler.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("login attempt:"))
            .filter_map(|l| {
                let db = l.split(" db=").nth(1)?.split_whitespace().next()?;
                let user = l.split(" user=").nth(1)?.split_whitespace().next()?;
                Some(format!("{db}/{user}"))
            })
            .collect()
    }
}
