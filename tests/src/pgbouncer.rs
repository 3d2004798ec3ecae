//! PgBouncer from Debian's package, as Neon's pooler runs it: transaction mode, TLS to
//! clients (a certificate of a test CA) and to the server, SCRAM for both. Debian's 1.18 is
//! older than Neon's, so what works through it works through Neon's `-pooler` host.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::certs::TestCa;
use crate::pg::{PgCluster, free_port, give_to_postgres, tools};

/// How the pooler runs.
#[derive(Debug, Clone)]
pub struct PoolerOptions {
    /// Server connections per user and database.
    pub default_pool_size: u32,
    /// Clients it accepts in all.
    pub max_client_conn: u32,
    /// Seconds after which a server connection is closed once released (0: never).
    pub server_lifetime: u32,
}

impl Default for PoolerOptions {
    fn default() -> Self {
        PoolerOptions {
            default_pool_size: 5,
            max_client_conn: 1000,
            server_lifetime: 1,
        }
    }
}

/// A running PgBouncer; dropping it stops it.
pub struct PgBouncer {
    dir: TempDir,
    port: u16,
    child: Child,
}

/// Where Debian puts the binary.
pub fn binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/pgbouncer");
    if sbin.is_file() {
        return sbin;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pgbouncer"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "PgBouncer is not installed: `apt-get install pgbouncer` (scripts/test does this)"
            )
        })
}

impl PgBouncer {
    /// Starts PgBouncer in front of `pg` for `users` (login roles of `pg`, whose SCRAM
    /// secrets it is given, as Neon's pooler has them).
    pub async fn start(pg: &PgCluster, users: &[&str], options: PoolerOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pgbouncer-test-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        give_to_postgres(dir.path());

        let admin = pg.admin().await;
        let mut userlist = String::new();
        for user in users {
            let secret: String = admin
                .query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                    &[user],
                )
                .await
                .expect("the user exists with a password")
                .get(0);
            userlist.push_str(&format!("\"{user}\" \"{secret}\"\n"));
        }
        write_private(&dir.path().join("userlist.txt"), &userlist);

        let ca = TestCa::new("pgbouncer test CA");
        fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write CA");
        let server = ca.server_cert(&["localhost", "127.0.0.1"]);
        write_private(&dir.path().join("client.crt"), &server.cert_pem);
        write_private(&dir.path().join("client.key"), &server.key_pem);

        let log = dir.path().join("pgbouncer.log");
        for attempt in 1..=5 {
            let port = free_port();
            let d = dir.path().display();
            let ini = format!(
                "[databases]\n* = host=127.0.0.1 port={pg_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {d}/userlist.txt\n\
                 pool_mode = transaction\ndefault_pool_size = {pool}\n\
                 max_client_conn = {clients}\nserver_lifetime = {lifetime}\n\
                 server_tls_sslmode = require\nclient_tls_sslmode = require\n\
                 client_tls_cert_file = {d}/client.crt\nclient_tls_key_file = {d}/client.key\n\
                 logfile = {log}\npidfile = {d}/pgbouncer.pid\n",
                pg_port = pg.port(),
                pool = options.default_pool_size,
                clients = options.max_client_conn,
                lifetime = options.server_lifetime,
                log = log.display(),
            );
            let ini_path = dir.path().join("pgbouncer.ini");
            write_private(&ini_path, &ini);
            let mut child = tools()
                .command_for(&binary())
                .arg(&ini_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start pgbouncer");
            if wait_until_listening(&mut child, port, Duration::from_secs(10)) {
                return PgBouncer { dir, port, child };
            }
            let _ = child.kill();
            let _ = child.wait();
            if attempt == 5 {
                panic!(
                    "PgBouncer did not start:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // Most likely another process took the port: try another.
        }
        unreachable!()
    }

    /// A URI for `user` on `db` through the pooler, TLS verified against its CA.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        let params = format!(
            "sslmode=verify-full&sslrootcert={}",
            self.ca_path().display()
        );
        localpg::uri("localhost", self.port, user, password, db, &params)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `port` accepts connections; false if the child exited or time ran out.
fn wait_until_listening(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A file only PgBouncer's account may read.
fn write_private(path: &Path, contents: &str) {
    fs::write(path, contents).expect("write pgbouncer file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
    give_to_postgres(path);
}
