//! Runs a folder's pending migrations on one database as sqlx's `Migrator` does
//! (`sqlx-core/src/migrate/migrator.rs`, `sqlx-postgres/src/migrate.rs`): the advisory lock
//! sqlx takes for the database, `_sqlx_migrations` made if missing, a version recorded as
//! failed refused, applied versions checked against the files (changed or missing:
//! refused before anything runs), then each pending migration in version order, in its own
//! transaction with its bookkeeping row, and `execution_time` (nanoseconds) set after it.
//!
//! Unlike sqlx it sets `lock_timeout` inside each migration's transaction and tries again
//! with back-off when it expires: a migration that waits for an `ACCESS EXCLUSIVE` lock
//! queues every other session's queries on that table behind it, so it must not wait long.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::folder::{Migration, hex};
use super::statements;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// `lock_timeout` inside each migration's transaction.
    pub lock_timeout: Duration,
    /// Attempts per migration when its lock wait expires (the first included).
    pub attempts: u32,
    /// `--allow-missing`: an applied version with no file is left alone (sqlx's
    /// `--ignore-missing`).
    pub allow_missing: bool,
    /// Check and list what is pending; apply nothing.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lock_timeout: super::DEFAULT_LOCK_TIMEOUT,
            attempts: 6,
            allow_missing: false,
            dry_run: false,
        }
    }
}

/// One migration applied (or, on a dry run, pending).
#[derive(Debug, Clone)]
pub struct Applied {
    pub file: String,
    pub took: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: Vec<Applied>,
    /// The versions the database had applied before this run, in order.
    pub before: Vec<i64>,
}

/// Why a run stopped. Never holds a connection string.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the database's connection string cannot be used")]
    Target(#[source] pgconn::TargetError),
    #[error("cannot connect to the database `{database}` on {host}")]
    Connect {
        database: String,
        host: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the database failed while {doing}")]
    Query {
        doing: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "migration {version} is recorded in _sqlx_migrations as failed (success = false), left by another tool"
    )]
    Dirty { version: i64 },
    #[error(
        "migration `{file}` was applied, and the file has changed since (its checksum differs)"
    )]
    Edited { file: String },
    #[error("migration {version} ({description}) was applied, and its file is missing")]
    Missing { version: i64, description: String },
    #[error("migration `{file}` failed at line {line}: {message}")]
    Failed {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "migration `{file}` could not get a lock at line {line} within lock_timeout ({}ms), {attempts} times",
        timeout.as_millis()
    )]
    LockTimeout {
        file: String,
        line: usize,
        timeout: Duration,
        attempts: u32,
    },
    #[error("another migrator (sqlx migrate run, or a deploy) held the migration lock on `{database}` for {}s", waited.as_secs())]
    LockHeld { database: String, waited: Duration },
}

impl RunError {
    /// Refused before anything ran: the folder or the database's records must be fixed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RunError::Dirty { .. } | RunError::Edited { .. } | RunError::Missing { .. }
        )
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RunError::Dirty { version } => format!(
                "a failed run left version {version} half done: finish or undo its changes by hand, then `DELETE FROM _sqlx_migrations WHERE version = {version}` (sqlx refuses it too)"
            ),
            RunError::Edited { .. } => "an applied migration never changes: restore the file (git checkout) and put the change in a new migration".to_owned(),
            RunError::Missing { .. } => "restore the file, or pass --allow-missing to leave applied versions that have no file alone (sqlx's --ignore-missing)".to_owned(),
            RunError::Failed { .. } => "fix the migration and deploy again: it was rolled back, and nothing after it ran".to_owned(),
            RunError::LockTimeout { .. } => "a long transaction holds the table; end it, or raise [migrations] lock_timeout in infra.toml".to_owned(),
            RunError::LockHeld { .. } => "wait for the other migrator to finish (SELECT * FROM pg_locks WHERE locktype = 'advisory' shows it), then deploy again".to_owned(),
            _ => return None,
        })
    }
}

/// The advisory lock sqlx takes for a database (`generate_lock_id` in
/// `sqlx-postgres/src/migrate.rs`): `0x3d32ad9e * crc32(name)`, CRC-32/ISO-HDLC.
pub fn lock_id(database: &str) -> i64 {
    0x3d32ad9e_i64.wrapping_mul(i64::from(crc32fast::hash(database.as_bytes())))
}

/// The table sqlx makes (`ensure_migrations_table`), column for column.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);";

/// How long to wait for another migrator's advisory lock.
const LOCK_HELD_WAIT: Duration = Duration::from_secs(600);

/// Connects with `uri` (its TLS settings as libpq reads them).
pub async fn connect(uri: &str) -> Result<Client, RunError> {
    let target = pgconn::DatabaseTarget::parse(uri).map_err(RunError::Target)?;
    let mut config = target.info.config.clone();
    config.application_name("deployer-migrate");
    config.connect_timeout(Duration::from_secs(30));
    let database = config.get_dbname().unwrap_or_default().to_owned();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => String::from("its host"),
    };
    let connected = match &target.tls {
        Some(tls) => config.connect(tls.clone()).await.map(|(c, conn)| {
            tokio::spawn(conn);
            c
        }),
        None => config.connect(NoTls).await.map(|(c, conn)| {
            tokio::spawn(conn);
            c
        }),
    };
    connected.map_err(|source| RunError::Connect {
        database,
        host,
        source,
    })
}

fn query(doing: &'static str) -> impl FnOnce(tokio_postgres::Error) -> RunError {
    move |source| RunError::Query { doing, source }
}

/// Applies `migrations`' pending ones on `client`'s database; `each` hears of every one
/// applied as it is.
pub async fn run(
    client: &Client,
    migrations: &[Migration],
    opts: &Options,
    mut each: impl FnMut(&Applied),
) -> Result<Outcome, RunError> {
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .map_err(query("reading the database's name"))?
        .get(0);
    let id = lock_id(&database);
    if opts.dry_run {
        return run_locked(client, migrations, opts, &mut each).await;
    }
    take_lock(client, &database, id).await?;
    let result = run_locked(client, migrations, opts, &mut each).await;
    // Closing the session frees it too; this frees it for a connection kept open.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&id])
        .await;
    result
}

/// Takes the migration lock, waiting for another migrator that holds it.
async fn take_lock(client: &Client, database: &str, id: i64) -> Result<(), RunError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&id])
            .await
            .map_err(query("taking the migration lock"))?
            .get(0);
        if got {
            return Ok(());
        }
        if started.elapsed() > LOCK_HELD_WAIT {
            return Err(RunError::LockHeld {
                database: database.to_owned(),
                waited: started.elapsed(),
            });
        }
        if !told {
            eprintln!(
                "waiting for another migrator to finish on database `{database}` (it holds sqlx's migration lock)"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn run_locked(
    client: &Client,
    migrations: &[Migration],
    opts: &Options,
    each: &mut impl FnMut(&Applied),
) -> Result<Outcome, RunError> {
    if !opts.dry_run {
        client
            .batch_execute(CREATE_TABLE)
            .await
            .map_err(query("creating _sqlx_migrations"))?;
    }
    let exists: bool = client
        .query_one("SELECT to_regclass('_sqlx_migrations') IS NOT NULL", &[])
        .await
        .map_err(query("looking for _sqlx_migrations"))?
        .get(0);
    let mut applied: Vec<(i64, Vec<u8>, bool)> = Vec::new();
    if exists {
        for row in client
            .query(
                "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(query("reading _sqlx_migrations"))?
        {
            applied.push((row.get(0), row.get(1), row.get(2)));
        }
    }
    if let Some((version, ..)) = applied.iter().find(|a| !a.2) {
        return Err(RunError::Dirty { version: *version });
    }
    for (version, checksum, _) in &applied {
        match migrations.iter().find(|m| m.version == *version) {
            Some(m) if &m.checksum != checksum => {
                return Err(RunError::Edited {
                    file: m.file.clone(),
                });
            }
            Some(_) => {}
            None if opts.allow_missing => {}
            None => {
                let description: String = client
                    .query_one(
                        "SELECT description FROM _sqlx_migrations WHERE version = $1",
                        &[version],
                    )
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or_default();
                return Err(RunError::Missing {
                    version: *version,
                    description,
                });
            }
        }
    }
    let mut outcome = Outcome {
        applied: Vec::new(),
        before: applied.iter().map(|a| a.0).collect(),
    };
    for m in migrations {
        if applied.iter().any(|a| a.0 == m.version) {
            continue;
        }
        let took = if opts.dry_run {
            Duration::ZERO
        } else {
            apply(client, m, opts).await?
        };
        let done = Applied {
            file: m.file.clone(),
            took,
        };
        each(&done);
        outcome.applied.push(done);
    }
    Ok(outcome)
}

/// What one attempt at a migration ended with.
enum Attempt {
    Done,
    /// Its lock wait expired at this line: nothing of it is left.
    LockTimedOut(usize),
}

async fn apply(client: &Client, m: &Migration, opts: &Options) -> Result<Duration, RunError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match attempt_once(client, m, opts).await? {
            Attempt::Done => break,
            Attempt::LockTimedOut(line) if attempt >= opts.attempts.max(1) => {
                return Err(RunError::LockTimeout {
                    file: m.file.clone(),
                    line,
                    timeout: opts.lock_timeout,
                    attempts: attempt,
                });
            }
            Attempt::LockTimedOut(line) => {
                eprintln!(
                    "{}: line {line} waited {}ms for a lock; trying again in {}ms",
                    m.file,
                    opts.lock_timeout.as_millis(),
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(4));
                attempt += 1;
            }
        }
    }
    let took = started.elapsed();
    // As sqlx: the time is written after the commit, and only for lineage.
    let nanos = i64::try_from(took.as_nanos()).unwrap_or(i64::MAX);
    client
        .execute(
            "UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2",
            &[&nanos, &m.version],
        )
        .await
        .map_err(query("recording a migration's execution time"))?;
    Ok(took)
}

async fn attempt_once(client: &Client, m: &Migration, opts: &Options) -> Result<Attempt, RunError> {
    let in_tx = !m.no_tx;
    if in_tx {
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '{}ms'",
                opts.lock_timeout.as_millis()
            ))
            .await
            .map_err(query("starting a migration's transaction"))?;
    }
    // A `-- no-transaction` migration (CREATE INDEX CONCURRENTLY) takes locks that do not
    // block the app and waits on other transactions by design: no lock_timeout, since a
    // CONCURRENTLY build that times out leaves an INVALID index behind.
    for s in statements::split(&m.sql) {
        if let Err(e) = client.batch_execute(s.text).await {
            if in_tx {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            let db = e.as_db_error();
            let line = db
                .and_then(|d| match d.position() {
                    Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p as usize),
                    _ => None,
                })
                .map_or(s.line, |p| s.line_of(p));
            if in_tx && e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Ok(Attempt::LockTimedOut(line));
            }
            let message = match db {
                Some(d) => format!("{} ({})", d.message(), d.code().code()),
                None => e.to_string(),
            };
            return Err(RunError::Failed {
                file: m.file.clone(),
                line,
                message,
            });
        }
    }
    let recorded = client
        .execute(
            "INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time ) VALUES ( $1, $2, TRUE, $3, -1 )",
            &[&m.version, &m.description, &m.checksum],
        )
        .await;
    if let Err(source) = recorded {
        if in_tx {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        return Err(RunError::Query {
            doing: "recording a migration in _sqlx_migrations",
            source,
        });
    }
    if in_tx {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(query("committing a migration"))?;
    }
    Ok(Attempt::Done)
}

/// The versions applied on `client`'s database, with their checksums as hex (none: no
/// `_sqlx_migrations` yet).
pub async fn applied(client: &Client) -> Result<Vec<(i64, String, bool)>, RunError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('_sqlx_migrations') IS NOT NULL", &[])
        .await
        .map_err(query("looking for _sqlx_migrations"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(query("reading _sqlx_migrations"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), hex(&r.get::<_, Vec<u8>>(1)), r.get(2)))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_id_is_sqlxs() {
        // sqlx's CRC is CRC-32/ISO-HDLC (its check value below), multiplied in i64.
        assert_eq!(
            crc32fast::hash(b"123456789"),
            0xcbf43926,
            "CRC-32/ISO-HDLC check value"
        );
        assert_eq!(super::lock_id("a"), 0x3d32ad9e_i64 * 0xe8b7be43_i64);
    }
}
