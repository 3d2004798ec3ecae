//! Throwaway PostgreSQL clusters: Debian's server binaries, one cluster per test, in a
//! temporary folder, on its own loopback port, with TLS (a CA generated for the test) and
//! SCRAM password authentication over TCP. Dropping the cluster stops it and deletes it.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use localpg::{Init, Tools};
use pgconn::{Chain, DatabaseTarget};
use tempfile::TempDir;

use crate::certs::TestCa;

/// The superuser of every test cluster.
pub const SUPERUSER: &str = "postgres";

/// A running (or stopped) test cluster.
pub struct PgCluster {
    dir: TempDir,
    port: u16,
    superuser_password: String,
    ca_path: PathBuf,
    running: bool,
}

/// Options for [`PgCluster::start_with`].
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Serve TLS with a certificate for `localhost` and `127.0.0.1` signed by a test CA.
    pub tls: bool,
    /// `max_connections` of the server.
    pub max_connections: u32,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            tls: true,
            max_connections: 100,
        }
    }
}

/// The server tools for every cluster of this test run (as `postgres` when we are root).
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        Tools::find().unwrap_or_else(|e| {
            panic!(
                "{e}; install Debian's server with `apt-get install postgresql` (scripts/test does this) or set PG_BINDIR"
            )
        })
    })
}

pub fn give_to_postgres(path: &Path) {
    tools()
        .give(path)
        .unwrap_or_else(|e| panic!("{}", Chain(&e)));
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl PgCluster {
    /// Starts a cluster with TLS on.
    pub fn start() -> Self {
        Self::start_with(PgOptions::default())
    }

    /// Creates and starts a cluster; panics with PostgreSQL's own output if it cannot.
    pub fn start_with(options: PgOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pg-test-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        give_to_postgres(dir.path());
        let data = dir.path().join("data");
        let superuser_password = format!("su-{:x}", rand_u64());
        let pwfile = dir.path().join("pwfile");
        fs::write(&pwfile, &superuser_password).expect("write pwfile");
        give_to_postgres(&pwfile);

        tools()
            .initdb(
                &data,
                &Init {
                    superuser: SUPERUSER.to_owned(),
                    pwfile: Some(pwfile),
                    no_sync: true,
                },
            )
            .unwrap_or_else(|e| panic!("{}", Chain(&e)));

        let ca = TestCa::new("pg test CA");
        let ca_path = dir.path().join("ca.crt");
        fs::write(&ca_path, ca.cert_pem()).expect("write CA");
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = {}\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 32MB\n",
            dir.path().display(),
            options.max_connections,
        );
        if options.tls {
            let server = ca.server_cert(&["localhost", "127.0.0.1"]);
            for (name, pem) in [
                ("server.crt", &server.cert_pem),
                ("server.key", &server.key_pem),
            ] {
                let path = data.join(name);
                fs::write(&path, pem).expect("write server cert");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
                give_to_postgres(&path);
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = fs::read_to_string(&conf_path).expect("read postgresql.conf");
        existing.push_str(&conf);
        fs::write(&conf_path, existing).expect("write postgresql.conf");

        let mut cluster = PgCluster {
            dir,
            port: 0,
            superuser_password,
            ca_path,
            running: false,
        };
        // Another test may take the free port between our check and the server's bind.
        for attempt in 1..=5 {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(log) if attempt == 5 => panic!("PostgreSQL did not start:\n{log}"),
                Err(_) => continue,
            }
        }
        unreachable!()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn try_start(&mut self) -> Result<(), String> {
        tools()
            .start(&self.data(), &self.log_path(), self.port)
            .map_err(|e| Chain(&e).to_string())?;
        self.running = true;
        Ok(())
    }

    /// Starts a stopped cluster again on the same port.
    pub fn restart(&mut self) {
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL did not start again:\n{log}");
        }
    }

    /// Stops the server (fast shutdown: sessions are disconnected, as in a real restart).
    pub fn stop(&mut self) {
        tools()
            .stop(&self.data())
            .unwrap_or_else(|e| panic!("{}", Chain(&e)));
        self.running = false;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the server certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The superuser's password (random per cluster).
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// A URI for `user` on `db` via `localhost`, with extra query `params` (`a=b&c=d`).
    pub fn url(&self, user: &str, password: &str, db: &str, params: &str) -> String {
        localpg::uri("localhost", self.port, user, password, db, params)
    }

    /// The superuser's URI over TCP without TLS.
    pub fn admin_url(&self) -> String {
        self.url(
            SUPERUSER,
            &self.superuser_password,
            "postgres",
            "sslmode=disable",
        )
    }

    /// A superuser connection (its driver task is spawned on the current runtime).
    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.admin_url(), tokio_postgres::NoTls)
            .await
            .expect("superuser connects");
        tokio::spawn(conn);
        client
    }

    /// Creates a login role with `password` that owns a new database `db`.
    pub async fn create_app_db(&self, role: &str, password: &str, db: &str) {
        let admin = self.admin().await;
        for sql in [
            format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE \"{db}\" OWNER \"{role}\""),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create role and database");
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = tools()
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// Randomness for passwords and names, without a crate: the std hasher is randomly keyed.
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Connects with any libpq connection string (TLS per its `sslmode`), as the api would;
/// `sslrootcert=system` trusts the emulator's test CA too, as `SSL_CERT_FILE` makes the
/// processes a test starts do.
pub async fn connect_uri(uri: &str) -> Result<tokio_postgres::Client, String> {
    pgconn::tls::install_default_provider();
    let ca = crate::neon::emulator_ca().file.display().to_string();
    // A temporary folder's path: letters, digits and `/._-`, safe in a URI as it is.
    let uri = uri.replace("sslrootcert=system", &format!("sslrootcert={ca}"));
    let target = DatabaseTarget::parse(&uri).map_err(|e| Chain(&e).to_string())?;
    let chain = |e: tokio_postgres::Error| Chain(&e).to_string();
    let client = match target.tls {
        Some(tls) => {
            let (client, conn) = target.info.config.connect(tls).await.map_err(chain)?;
            tokio::spawn(conn);
            client
        }
        None => {
            let (client, conn) = target
                .info
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(chain)?;
            tokio::spawn(conn);
            client
        }
    };
    Ok(client)
}
