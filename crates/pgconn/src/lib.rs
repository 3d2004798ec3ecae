//! PostgreSQL connections as libpq describes them, for tokio-postgres: connection strings
//! (`conninfo`: URI or `key=value`, `sslmode`, `sslrootcert`, ...), the TLS set-up they ask
//! for (`tls`: rustls with aws-lc-rs, the AWS SDK's stack), and [`Chain`] to show an error
//! with its sources. Shared by the api, the deployer and the Neon emulator.

pub mod conninfo;
pub mod tls;

use std::fmt;

use conninfo::{ConnInfo, ConnInfoError};
use tls::TlsSetupError;

/// A connection string, parsed, with the TLS connector its `sslmode` asks for (`None`: no
/// TLS).
#[derive(Clone)]
pub struct DatabaseTarget {
    pub info: ConnInfo,
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// Why a connection string cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the connection string is not valid")]
    Invalid(#[source] ConnInfoError),
    #[error("the connection string's TLS settings cannot be used")]
    Tls(#[source] TlsSetupError),
}

impl DatabaseTarget {
    /// Parses a libpq connection string (URI or `key=value`) and sets up its TLS.
    pub fn parse(url: &str) -> Result<DatabaseTarget, TargetError> {
        let info = conninfo::parse(url).map_err(TargetError::Invalid)?;
        let tls = tls::connector(&info.tls).map_err(TargetError::Tls)?;
        Ok(DatabaseTarget { info, tls })
    }
}

/// Displays an error with all its sources, `outer: inner: innermost`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
