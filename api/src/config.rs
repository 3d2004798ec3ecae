//! The api's runtime settings, read from the environment.
//!
//! The connection string comes from the link the deployer injects, `LINK_NeonDB` (a JSON
//! object whose `connection_string` property holds it), else from `DATABASE_URL`. A missing
//! or malformed setting never stops the process: `/` keeps working and `/version` answers
//! 503 with the reason, which is also logged. No message here quotes a connection string.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::conninfo::{self, ConnInfoError};
use crate::tls::{self, TlsSetupError};

/// The link the deployer injects for `[link.NeonDB]` in `infra.toml`.
pub const LINK_VAR: &str = "LINK_NeonDB";
/// For local runs: a file holding the value of `LINK_NeonDB` (the committed
/// `.deployer/dev.env` names it, so no secret is ever committed).
pub const LINK_FILE_VAR: &str = "LINK_NeonDB_FILE";
/// The property of the link that holds the connection string.
pub const LINK_PROPERTY: &str = "connection_string";
/// The fallback: a plain libpq connection string.
pub const DATABASE_URL_VAR: &str = "DATABASE_URL";
/// How long to wait for a connection (and for a query), in milliseconds.
pub const CONNECT_TIMEOUT_VAR: &str = "DB_CONNECT_TIMEOUT_MS";
/// How many connections the local server keeps (each one pipelines concurrent queries).
pub const POOL_SIZE_VAR: &str = "DB_POOL_SIZE";
/// Set by the Lambda service (and `cargo lambda watch`): run as a Lambda function.
pub const LAMBDA_RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Measured with `bench/run`: two pipelined connections beat one and beat a larger pool
/// on two cores (see README).
pub const DEFAULT_LOCAL_POOL_SIZE: usize = 2;
pub const DEFAULT_PORT: u16 = 3000;

/// Why there is no usable database configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no database configured: neither `{LINK_VAR}` nor `{DATABASE_URL_VAR}` is set")]
    Missing,
    #[error("`{LINK_FILE_VAR}` names `{path}`, which cannot be read ({reason})")]
    LinkFile { path: String, reason: String },
    #[error("`{0}` is set but empty")]
    Empty(&'static str),
    #[error("`{LINK_VAR}` is not valid JSON ({category} error at line {line}, column {column})")]
    LinkNotJson {
        category: &'static str,
        line: usize,
        column: usize,
    },
    #[error("`{LINK_VAR}` has no string property `{LINK_PROPERTY}`")]
    LinkWithoutConnectionString,
    #[error("`{var}` is not a valid connection string")]
    Invalid {
        var: &'static str,
        #[source]
        source: ConnInfoError,
    },
    #[error("`{var}` has unusable TLS settings")]
    Tls {
        var: &'static str,
        #[source]
        source: TlsSetupError,
    },
}

impl ConfigError {
    /// What the user should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Missing | Self::Empty(_) => {
                "set DATABASE_URL=postgres://user:password@host:5432/db, or run `scripts/dev` for a local database"
            }
            Self::LinkFile { .. } => {
                "run `scripts/dev` (or `deployer dev`), which writes it, or set DATABASE_URL"
            }
            Self::LinkNotJson { .. } | Self::LinkWithoutConnectionString => {
                "LINK_NeonDB must look like {\"connection_string\":\"postgres://...\"}; redeploy with `deployer deploy` or unset it to use DATABASE_URL"
            }
            Self::Invalid { .. } => {
                "use a libpq connection string: postgres://user:password@host:5432/db?sslmode=require"
            }
            Self::Tls { source, .. } => source.hint(),
        }
    }
}

/// A database the api can connect to: where, and how TLS is set up.
pub use pgconn::DatabaseTarget;

/// Everything the api reads from its environment.
pub struct Settings {
    pub lambda: bool,
    pub database: Result<DatabaseTarget, ConfigError>,
    pub connect_timeout: Duration,
    pub pool_size: usize,
    pub listen: Result<SocketAddr, String>,
    /// Settings that were ignored in favour of a default, to be logged.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Reads the settings through `env` (the process environment in `main`, a map in tests).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let mut warnings = Vec::new();
        let lambda = env(LAMBDA_RUNTIME_API_VAR).is_some_and(|v| !v.is_empty());
        let connect_timeout = match env(CONNECT_TIMEOUT_VAR) {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    warnings.push(format!(
                        "`{CONNECT_TIMEOUT_VAR}` must be a positive number of milliseconds; using {} ms",
                        DEFAULT_CONNECT_TIMEOUT.as_millis()
                    ));
                    DEFAULT_CONNECT_TIMEOUT
                }
            },
        };
        // On Lambda one instance serves one request at a time: one connection is enough.
        let default_pool = if lambda { 1 } else { DEFAULT_LOCAL_POOL_SIZE };
        let pool_size = match env(POOL_SIZE_VAR) {
            None => default_pool,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n @ 1..=64) => n,
                _ => {
                    warnings.push(format!(
                        "`{POOL_SIZE_VAR}` must be a number from 1 to 64; using {default_pool}"
                    ));
                    default_pool
                }
            },
        };
        Settings {
            lambda,
            database: database_target(&env),
            connect_timeout,
            pool_size,
            listen: listen_addr(&env),
            warnings,
        }
    }
}

/// Resolves the connection string: `LINK_NeonDB` first, then `DATABASE_URL`.
pub fn database_target(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<DatabaseTarget, ConfigError> {
    let link = match (env(LINK_VAR), env(LINK_FILE_VAR)) {
        (Some(link), _) => Some(link),
        (None, Some(path)) if !path.trim().is_empty() => Some(
            std::fs::read_to_string(path.trim()).map_err(|e| ConfigError::LinkFile {
                path: path.trim().to_owned(),
                reason: e.kind().to_string(),
            })?,
        ),
        (None, _) => None,
    };
    let (var, url) = match link {
        Some(link) => (LINK_VAR, link_connection_string(&link)?),
        None => match env(DATABASE_URL_VAR) {
            Some(url) => (DATABASE_URL_VAR, url),
            None => return Err(ConfigError::Missing),
        },
    };
    if url.trim().is_empty() {
        return Err(ConfigError::Empty(var));
    }
    let info = conninfo::parse(&url).map_err(|source| ConfigError::Invalid { var, source })?;
    let tls = tls::connector(&info.tls).map_err(|source| ConfigError::Tls { var, source })?;
    Ok(DatabaseTarget { info, tls })
}

fn link_connection_string(link: &str) -> Result<String, ConfigError> {
    // serde_json's messages can quote the input, so only its position is kept.
    let value: serde_json::Value = serde_json::from_str(link).map_err(|e| {
        let category = match e.classify() {
            serde_json::error::Category::Io => "read",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "end of input",
        };
        ConfigError::LinkNotJson {
            category,
            line: e.line(),
            column: e.column(),
        }
    })?;
    value
        .get(LINK_PROPERTY)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or(ConfigError::LinkWithoutConnectionString)
}

fn listen_addr(env: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, String> {
    let ip = match env("HOST") {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(h) if h == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(h) => h
            .parse()
            .map_err(|_| format!("`HOST` must be an IP address such as 127.0.0.1, not `{h}`"))?,
    };
    let port = match env("PORT") {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse()
            .map_err(|_| format!("`PORT` must be a port number from 0 to 65535, not `{p}`"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn link_wins_over_database_url() {
        let t = database_target(&env(&[
            (
                LINK_VAR,
                r#"{"connection_string":"postgres://a@linkhost/db?sslmode=disable"}"#,
            ),
            (DATABASE_URL_VAR, "postgres://a@urlhost/db"),
        ]))
        .unwrap();
        assert_eq!(
            t.info.config.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("linkhost".into())]
        );
        assert!(t.tls.is_none());
    }

    #[test]
    fn falls_back_to_database_url() {
        let t = database_target(&env(&[(DATABASE_URL_VAR, "postgres://a@urlhost/db")])).unwrap();
        assert!(t.tls.is_some(), "libpq's default sslmode is prefer");
    }

    #[test]
    fn missing_names_both_variables() {
        let e = database_target(&env(&[])).err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("LINK_NeonDB") && msg.contains("DATABASE_URL"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_link_does_not_echo_it() {
        let link = r#"{"connection_string": "postgres://u:sekrit@h/db" "#;
        let e = database_target(&env(&[(LINK_VAR, link)])).err().unwrap();
        assert!(matches!(e, ConfigError::LinkNotJson { .. }));
        assert!(!e.to_string().contains("sekrit"));
        let e = database_target(&env(&[(LINK_VAR, r#""postgres://u:sekrit@h/db""#)]))
            .err()
            .unwrap();
        assert!(matches!(e, ConfigError::LinkWithoutConnectionString));
    }

    #[test]
    fn the_link_can_come_from_a_file_for_local_runs() {
        let dir = std::env::temp_dir().join(format!("link-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("LINK_NeonDB");
        let path = file.display().to_string();
        let e = database_target(&env(&[
            (LINK_FILE_VAR, &path),
            (DATABASE_URL_VAR, "postgres://a@h/db"),
        ]))
        .err()
        .unwrap();
        assert!(
            matches!(e, ConfigError::LinkFile { .. }),
            "a named file must exist: {e}"
        );
        assert!(e.hint().contains("scripts/dev"));
        std::fs::write(
            &file,
            r#"{"connection_string":"postgres://a@filehost/db?sslmode=disable"}"#,
        )
        .unwrap();
        let t = database_target(&env(&[(LINK_FILE_VAR, &path)])).unwrap();
        assert_eq!(
            t.info.config.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("filehost".into())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_numbers_fall_back_with_a_warning() {
        let s = Settings::from_env(env(&[(CONNECT_TIMEOUT_VAR, "soon"), (POOL_SIZE_VAR, "0")]));
        assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(s.pool_size, DEFAULT_LOCAL_POOL_SIZE);
        assert_eq!(s.warnings.len(), 2);
        let lambda = Settings::from_env(env(&[(LAMBDA_RUNTIME_API_VAR, "127.0.0.1:9001")]));
        assert!(lambda.lambda);
        assert_eq!(lambda.pool_size, 1);
    }
}
