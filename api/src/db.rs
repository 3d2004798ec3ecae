//! The api's Postgres connections, shaped for Lambda.
//!
//! One instance keeps a few long-lived connections ("slots"; one on Lambda, where an
//! instance serves one request at a time). Concurrent requests on one slot share its
//! connection: tokio-postgres pipelines their queries. Connecting starts during
//! initialisation, is bounded by a timeout, and happens again on demand when a connection
//! breaks, so a restarted database is picked up without restarting the service.
//!
//! The query keeps no state on the server between transactions: no named prepared
//! statement, no session settings. So it works through a transaction-mode pooler of any
//! version (Neon's `-pooler` host is PgBouncer in transaction mode, which may run each
//! transaction on a different server connection), and it costs one round trip: Parse,
//! Bind, Describe, Execute and Sync of the unnamed statement go out together
//! (`query_typed`, tokio-postgres 0.7.11+).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::config::{ConfigError, DatabaseTarget};

const VERSION_SQL: &str = "SELECT version()";

/// Why `/version` could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database not configured")]
    NotConfigured(#[source] Arc<ConfigError>),
    #[error("timed out after {0:?} connecting to the database")]
    ConnectTimeout(Duration),
    #[error("cannot connect to the database")]
    Connect(#[source] tokio_postgres::Error),
    #[error("query timed out after {0:?}")]
    QueryTimeout(Duration),
    #[error("query failed")]
    Query(#[source] tokio_postgres::Error),
}

/// What the log says to do when the server is out of connections (53300,
/// `too_many_connections`).
const NO_FREE_CONNECTIONS_HINT: &str = "the database has no free connection slots (max_connections): link the pooled connection string instead (Neon: the `-pooler` host, the project's `connection_uri_pooler` output), which serves thousands of clients over a few server connections";

/// What the log says to do when a pooler refuses the client.
const POOLER_REFUSED_HINT: &str =
    "the connection pooler refused the client: it is at its client limit (max_client_conn)";

impl DbError {
    /// The SQLSTATE the server (or pooler) answered with, if it answered with an error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Connect(e) | DbError::Query(e) => e.code().map(SqlState::code),
            _ => None,
        }
    }

    /// What to do about it, when the answer says.
    pub fn hint(&self) -> Option<&'static str> {
        let (DbError::Connect(e) | DbError::Query(e)) = self else {
            return None;
        };
        let db = e.as_db_error()?;
        if db.code() == &SqlState::TOO_MANY_CONNECTIONS {
            Some(NO_FREE_CONNECTIONS_HINT)
        } else if db.message().contains("no more connections allowed") {
            // PgBouncer's words at max_client_conn (it answers 08P01).
            Some(POOLER_REFUSED_HINT)
        } else {
            None
        }
    }
}

/// A live connection.
struct Conn {
    client: Client,
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Conn>>>,
    /// Held while connecting, so a burst of requests opens one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn live(&self) -> Option<Arc<Conn>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|c| !c.client.is_closed()).cloned()
    }

    fn set(&self, conn: Option<Arc<Conn>>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = conn;
    }

    /// Forgets `broken` unless another request already replaced it.
    fn discard(&self, broken: &Arc<Conn>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *current = None;
        }
    }
}

/// The database behind `/version`, or the reason there is none.
pub struct Database {
    target: Result<DatabaseTarget, Arc<ConfigError>>,
    timeout: Duration,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl Database {
    /// Wraps a resolved target (or the configuration error to report) without connecting.
    pub fn new(
        target: Result<DatabaseTarget, ConfigError>,
        timeout: Duration,
        pool_size: usize,
    ) -> Self {
        Database {
            target: target.map_err(Arc::new),
            timeout,
            slots: (0..pool_size.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The configuration error, if the database is not configured.
    pub fn config_error(&self) -> Option<&ConfigError> {
        self.target.as_ref().err().map(|e| &**e)
    }

    /// Opens every slot's connection, concurrently; failures are logged and retried on the
    /// next request. Spawn this during initialisation so it overlaps the runtime's start.
    pub async fn warm_up(&self) {
        if self.target.is_err() {
            return;
        }
        let connects = self.slots.iter().map(|slot| async move {
            if let Err(e) = self.connected(slot).await {
                tracing::warn!(error = %crate::error::Chain(&e), "could not connect during start-up; will retry on the next request");
            }
        });
        futures_join_all(connects).await;
    }

    /// Runs `SELECT version()`.
    ///
    /// Fails when the database is not configured, cannot be reached within the timeout, or
    /// the query fails; a connection found broken is replaced and the query retried once.
    pub async fn version(&self) -> Result<String, DbError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let conn = self.connected(slot).await?;
        match self.query_version(&conn).await {
            Err(e) if is_connection_lost(&e) => {
                tracing::info!(error = %crate::error::Chain(&e), "database connection lost; reconnecting");
                slot.discard(&conn);
                let conn = self.connected(slot).await?;
                self.query_version(&conn).await.inspect_err(|e| {
                    if is_connection_lost(e) {
                        slot.discard(&conn);
                    }
                })
            }
            other => other,
        }
    }

    async fn query_version(&self, conn: &Conn) -> Result<String, DbError> {
        match tokio::time::timeout(self.timeout, conn.client.query_typed_one(VERSION_SQL, &[]))
            .await
        {
            Ok(Ok(row)) => row.try_get(0).map_err(DbError::Query),
            Ok(Err(e)) => Err(DbError::Query(e)),
            Err(_) => Err(DbError::QueryTimeout(self.timeout)),
        }
    }

    async fn connected(&self, slot: &Slot) -> Result<Arc<Conn>, DbError> {
        if let Some(conn) = slot.live() {
            return Ok(conn);
        }
        let target = self
            .target
            .as_ref()
            .map_err(|e| DbError::NotConfigured(e.clone()))?;
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = slot.live() {
            return Ok(conn);
        }
        let conn = tokio::time::timeout(self.timeout, connect(target))
            .await
            .map_err(|_| DbError::ConnectTimeout(self.timeout))??;
        let conn = Arc::new(conn);
        slot.set(Some(conn.clone()));
        Ok(conn)
    }
}

async fn connect(target: &DatabaseTarget) -> Result<Conn, DbError> {
    let client = match &target.tls {
        Some(tls) => spawn_connection(target.info.config.connect(tls.clone()).await),
        None => spawn_connection(target.info.config.connect(NoTls).await),
    }
    .map_err(DbError::Connect)?;
    Ok(Conn { client })
}

/// Drives the connection in the background; it ends when the server or the client closes it.
fn spawn_connection<S, T>(
    connected: Result<(Client, tokio_postgres::Connection<S, T>), tokio_postgres::Error>,
) -> Result<Client, tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = connected?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::info!(error = %crate::error::Chain(&e), "database connection closed");
        }
    });
    Ok(client)
}

/// True when the error means this connection is gone (as opposed to a bad query), judged by
/// the connection state and SQLSTATE class 08 (connection exception) and 57P (shutdown).
fn is_connection_lost(e: &DbError) -> bool {
    let DbError::Query(e) = e else { return false };
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code == SqlState::ADMIN_SHUTDOWN.code()
                || code == SqlState::CRASH_SHUTDOWN.code()
                || code == SqlState::CANNOT_CONNECT_NOW.code()
        }
        // An I/O error without a server message: the socket broke.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Awaits all futures concurrently (a tiny `join_all`, to keep `futures` out of the api).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
