//! The real PostgreSQL behind the emulator. Every Neon role and database becomes a real
//! one with a unique physical name (`neondb_owner` of two projects are two roles), databases
//! refuse connections from roles of other branches, and a new branch gets copies of its
//! parent's roles (same passwords) and databases (same data), as Neon's branches do.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use pgconn::DatabaseTarget;
use tokio_postgres::{Client, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the `--postgres` connection string is not usable: {0}")]
    Config(String),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

impl BackendError {
    /// The server's message, when PostgreSQL refused (e.g. objects still depend on a role).
    pub fn db_message(&self) -> Option<String> {
        match self {
            BackendError::Postgres(e) => e.as_db_error().map(|d| d.message().to_owned()),
            BackendError::Config(_) => None,
        }
    }
}

pub struct Backend {
    target: DatabaseTarget,
    admin: Client,
    /// Host and port clients use to reach the server (from the admin connection string).
    host: String,
    port: u16,
    /// Whether the server serves TLS; URIs then say `sslmode=require` as Neon's do.
    tls: bool,
}

/// What must be escaped in a URI's user, password and path (RFC 3986 reserved characters).
const URI_COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'&')
    .add(b'+');

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A physical name: the Neon name made safe and short, plus a unique suffix.
pub fn physical_name(name: &str, suffix: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{safe}_{suffix}")
}

async fn connect(target: &DatabaseTarget, dbname: Option<&str>) -> Result<Client, BackendError> {
    let mut config = target.info.config.clone();
    if let Some(db) = dbname {
        config.dbname(db);
    }
    let client = match &target.tls {
        Some(tls) => {
            let (client, conn) = config.connect(tls.clone()).await?;
            tokio::spawn(conn);
            client
        }
        None => {
            let (client, conn) = config.connect(NoTls).await?;
            tokio::spawn(conn);
            client
        }
    };
    Ok(client)
}

impl Backend {
    /// Connects with a superuser connection string.
    pub async fn connect(admin_uri: &str) -> Result<Backend, BackendError> {
        let target = DatabaseTarget::parse(admin_uri)
            .map_err(|e| BackendError::Config(pgconn::Chain(&e).to_string()))?;
        let host = match target.info.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => {
                return Err(BackendError::Config(
                    "it must name a TCP host, since clients connect with the returned URIs".into(),
                ));
            }
        };
        let port = target
            .info
            .config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432);
        let admin = connect(&target, None).await?;
        let tls: String = admin.query_one("SHOW ssl", &[]).await?.get(0);
        Ok(Backend {
            target,
            admin,
            host,
            port,
            tls: tls == "on",
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// A connection URI as Neon returns them, that really connects.
    pub fn uri(&self, role: &str, password: &str, database: &str) -> String {
        let enc = |s: &str| utf8_percent_encode(s, URI_COMPONENT).to_string();
        let params = if self.tls {
            "sslmode=require&channel_binding=require"
        } else {
            "sslmode=disable"
        };
        format!(
            "postgresql://{}:{}@{}:{}/{}?{params}",
            enc(role),
            enc(password),
            self.host,
            self.port,
            enc(database)
        )
    }

    pub async fn create_role(&self, physical: &str, password: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_ident(physical),
                quote_literal(password)
            ))
            .await?;
        Ok(())
    }

    pub async fn set_password(&self, physical: &str, password: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(physical),
                quote_literal(password)
            ))
            .await?;
        Ok(())
    }

    /// Drops a role after revoking the database grants the emulator gave it.
    pub async fn drop_role(
        &self,
        physical: &str,
        branch_databases: &[String],
    ) -> Result<(), BackendError> {
        for db in branch_databases {
            self.admin
                .batch_execute(&format!(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM {}",
                    quote_ident(db),
                    quote_ident(physical)
                ))
                .await?;
        }
        self.admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(physical)))
            .await?;
        Ok(())
    }

    /// Creates a database (empty, or a copy of `template`) that only `members` may enter.
    pub async fn create_database(
        &self,
        physical: &str,
        owner: &str,
        members: &[String],
        template: Option<&str>,
    ) -> Result<(), BackendError> {
        let mut sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(physical),
            quote_ident(owner)
        );
        if let Some(template) = template {
            // PostgreSQL copies a database only while nobody is connected to it.
            self.admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&template],
                )
                .await?;
            sql.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
        }
        self.admin.batch_execute(&sql).await?;
        self.admin
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                quote_ident(physical)
            ))
            .await?;
        for member in members {
            self.grant_connect(physical, member).await?;
        }
        Ok(())
    }

    pub async fn grant_connect(&self, database: &str, role: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}",
                quote_ident(database),
                quote_ident(role)
            ))
            .await?;
        Ok(())
    }

    pub async fn drop_database(&self, physical: &str) -> Result<(), BackendError> {
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(physical)
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

    /// In a copied database, hands what the parent branch's roles owned to the child's.
    /// `REASSIGN OWNED` also moves shared objects (the parent's databases), so the caller
    /// gives those back with [`Backend::set_owner`] afterwards.
    pub async fn reassign_owned(
        &self,
        database: &str,
        pairs: &[(String, String)],
    ) -> Result<(), BackendError> {
        let client = connect(&self.target, Some(database)).await?;
        for (from, to) in pairs {
            client
                .batch_execute(&format!(
                    "REASSIGN OWNED BY {} TO {}",
                    quote_ident(from),
                    quote_ident(to)
                ))
                .await?;
        }
        Ok(())
    }
}
