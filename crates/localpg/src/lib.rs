//! PostgreSQL clusters on this machine, with the server binaries of Debian's `postgresql`
//! package (or any `initdb`/`pg_ctl` on PATH): finding the tools, `initdb`, `pg_ctl start`
//! and `stop`, roles and databases, and connection URIs. `deployer dev` keeps one cluster
//! under `.deployer/dev/` ([`KeptCluster`]); the test harness makes a throwaway one per
//! test, and the Neon emulator one per branch; all build their URIs with [`uri`]. PostgreSQL refuses to run as root, so when we are root
//! every tool runs as the `postgres` account, and the files it needs are given to it.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

mod kept;
mod uri;

pub use kept::KeptCluster;
pub use uri::{encode, uri};

/// Why a cluster could not be made, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not on PATH nor under /usr/lib/postgresql/*/bin"
    )]
    NotInstalled,
    #[error("PostgreSQL refuses to run as root, and there is no `postgres` account to run it as")]
    NoPostgresAccount,
    #[error("cannot run `{tool}`")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{tool}` failed ({status}): {output}")]
    Failed {
        tool: String,
        status: ExitStatus,
        /// What it printed, and the server log where there is one.
        output: String,
    },
    #[error(
        "PostgreSQL runs as the `postgres` account here (we are root), and it cannot reach {}",
        path.display()
    )]
    Unreachable { path: PathBuf },
    #[error("cannot prepare `{}` for PostgreSQL", path.display())]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LocalPgError {
    /// What to do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            LocalPgError::NotInstalled | LocalPgError::NoPostgresAccount => {
                Some("apt-get install postgresql, or set PG_BINDIR to the folder of initdb")
            }
            LocalPgError::Unreachable { .. } => Some(
                "move the checkout under a folder others may enter (not /root), or run as a normal user",
            ),
            _ => None,
        }
    }
}

/// The server tools, and whom they run as.
#[derive(Debug, Clone)]
pub struct Tools {
    pub bindir: PathBuf,
    /// The `postgres` account's uid and gid when we are root.
    run_as: Option<(u32, u32)>,
}

impl Tools {
    /// `PG_BINDIR`, else the folder of `initdb` on PATH (links followed: Debian links the
    /// versioned folder), else the newest `/usr/lib/postgresql/*/bin`.
    pub fn find() -> Result<Tools, LocalPgError> {
        let bindir = find_bindir().ok_or(LocalPgError::NotInstalled)?;
        let run_as = if rustix::process::getuid().is_root() {
            Some(account_ids("postgres").ok_or(LocalPgError::NoPostgresAccount)?)
        } else {
            None
        };
        Ok(Tools { bindir, run_as })
    }

    /// Whether the tools run as the `postgres` account (we are root).
    pub fn as_postgres(&self) -> bool {
        self.run_as.is_some()
    }

    /// A command for `tool` (`initdb`, `pg_ctl`, `psql`...), as the account that may run it.
    pub fn command(&self, tool: &str) -> Command {
        self.command_for(&self.bindir.join(tool))
    }

    /// A command for any `program` of PostgreSQL's world, run as that same account
    /// (PgBouncer, too, refuses to run as root).
    pub fn command_for(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        cmd
    }

    /// Makes `path` the `postgres` account's when the tools run as it.
    pub fn give(&self, path: &Path) -> Result<(), LocalPgError> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                LocalPgError::Files {
                    path: path.to_owned(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Whether the account the tools run as can enter `dir` (every folder above it must
    /// let it pass).
    pub fn can_enter(&self, dir: &Path) -> bool {
        let mut test = Command::new("test");
        test.arg("-x").arg(dir);
        if let Some((uid, gid)) = self.run_as {
            test.uid(uid).gid(gid);
        }
        test.status().is_ok_and(|s| s.success())
    }

    /// `initdb -D data` with the given superuser, SCRAM over TCP and trust on the socket.
    pub fn initdb(&self, data: &Path, init: &Init) -> Result<(), LocalPgError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(data).args([
            "-U",
            &init.superuser,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ]);
        if let Some(pwfile) = &init.pwfile {
            cmd.arg(format!("--pwfile={}", pwfile.display()));
        }
        if init.no_sync {
            cmd.arg("--no-sync");
        }
        run("initdb", cmd.output(), None)
    }

    /// `pg_ctl start` on `127.0.0.1:port`, waiting until it accepts connections.
    pub fn start(&self, data: &Path, log: &Path, port: u16) -> Result<(), LocalPgError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(data)
            .arg("-l")
            .arg(log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {port}"))
            .arg("start");
        run("pg_ctl start", cmd.output(), Some(log))
    }

    /// `pg_ctl stop -m fast`: sessions are disconnected, as in a real restart.
    pub fn stop(&self, data: &Path) -> Result<(), LocalPgError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]);
        run("pg_ctl stop", cmd.output(), None)
    }

    /// Whether a server runs on `data`.
    pub fn is_running(&self, data: &Path) -> bool {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(data).arg("status");
        cmd.output().is_ok_and(|o| o.status.success())
    }
}

/// How `initdb` makes a cluster.
#[derive(Debug, Clone)]
pub struct Init {
    pub superuser: String,
    /// A file holding the superuser's password (none: only local trust logins).
    pub pwfile: Option<PathBuf>,
    /// Skip fsync (throwaway clusters).
    pub no_sync: bool,
}

/// Appends settings to `data/postgresql.conf`.
pub fn append_conf(data: &Path, settings: &str) -> Result<(), LocalPgError> {
    let path = data.join("postgresql.conf");
    let files = |source| LocalPgError::Files {
        path: path.clone(),
        source,
    };
    let mut conf = fs::read_to_string(&path).map_err(files)?;
    conf.push('\n');
    conf.push_str(settings);
    fs::write(&path, conf).map_err(files)
}

fn run(
    tool: &str,
    output: std::io::Result<Output>,
    log: Option<&Path>,
) -> Result<(), LocalPgError> {
    let output = output.map_err(|source| LocalPgError::Spawn {
        tool: tool.to_owned(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(log) = log.and_then(|p| fs::read_to_string(p).ok()) {
        printed.push_str(&log);
    }
    Err(LocalPgError::Failed {
        tool: tool.to_owned(),
        status: output.status,
        output: printed.trim().to_owned(),
    })
}

fn find_bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("initdb"))
        .find(|p| p.is_file());
    if let Some(initdb) = on_path {
        let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        return initdb.parent().map(Path::to_owned);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// uid and gid of a local account, from /etc/passwd.
fn account_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) || fields.len() < 4 {
            return None;
        }
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    })
}
