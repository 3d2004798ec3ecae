//! Schema migrations, compatible with sqlx-cli: its folder format (`folder`), its
//! bookkeeping table `_sqlx_migrations` and its advisory lock (`runner`), so `sqlx migrate`
//! and the deployer work on one database interchangeably and never at once. Statements run
//! one at a time (`statements`), so a failure names its line.
//!
//! Migrations connect over the database's direct host as its owner, never through Neon's
//! pooler: a migrator's session-level advisory lock through a transaction-mode PgBouncer
//! is held by whichever client's transaction the server connection serves next.

pub mod folder;
pub mod runner;
pub mod statements;

use std::time::Duration;

pub use folder::Migration;
pub use runner::{Applied, Options, Outcome, RunError};

/// The host of a Neon connection string with its pooler turned off: Neon names a compute's
/// pooled host by adding `-pooler` to its endpoint ID ("Connection pooling", Neon docs:
/// `ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech`). Everything else is left as it
/// is.
pub fn direct_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let hosts = hosts
        .split(',')
        .map(|h| match h.split_once('.') {
            Some((first, domain)) if first.ends_with("-pooler") => {
                format!("{}.{domain}", first.trim_end_matches("-pooler"))
            }
            _ => h.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",");
    format!("{scheme}://{userinfo}{hosts}{tail}")
}

/// How long a migration waits for a lock before it gives up and tries again; and how
/// long the deployer waits for another migrator (`sqlx migrate run`) to finish.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_never_go_through_neons_pooler() {
        assert_eq!(
            super::direct_uri(
                "postgresql://neondb_owner:p-pooler.x@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require"
            ),
            "postgresql://neondb_owner:p-pooler.x@ep-cool-darkness-123456.us-east-2.aws.neon.tech/neondb?sslmode=require"
        );
        let direct = "postgresql://u:p@ep-a-1.us-east-2.aws.neon.tech/db";
        assert_eq!(super::direct_uri(direct), direct);
        assert_eq!(
            super::direct_uri("postgresql://u@127.0.0.1:5432/db"),
            "postgresql://u@127.0.0.1:5432/db"
        );
    }
}
