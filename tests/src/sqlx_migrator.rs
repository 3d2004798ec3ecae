//! sqlx's own migrator (`sqlx::migrate::Migrator`, which `sqlx migrate run` and `sqlx
//! migrate info` are thin commands over) against a database the deployer migrated: it must
//! find every migration applied with the checksum it computes itself, and apply nothing.

use std::path::Path;
use std::str::FromStr;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Asserts that sqlx reads `folder` and the database at `uri` (a Neon-style connection
/// string: its `sslrootcert=system` is the emulator's CA here) as `applied` migrations, all
/// installed, nothing pending, and that its `run` then changes nothing.
pub async fn assert_sqlx_agrees(uri: &str, folder: &Path, applied: usize) {
    let ca = crate::neon::emulator_ca().file.display().to_string();
    let uri = uri.replace("sslrootcert=system", &format!("sslrootcert={ca}"));
    let options = PgConnectOptions::from_str(&uri).expect("sqlx reads the connection string");
    let mut conn = options.connect().await.expect("sqlx connects");
    let migrator = Migrator::new(folder).await.expect("sqlx reads the folder");
    let local: Vec<(i64, Vec<u8>)> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    let installed: Vec<(i64, Vec<u8>)> = conn
        .list_applied_migrations()
        .await
        .expect("sqlx lists applied migrations")
        .into_iter()
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    assert_eq!(installed.len(), applied, "{installed:?}");
    assert_eq!(
        local, installed,
        "sqlx's checksums of the folder are what was recorded"
    );
    assert_eq!(conn.dirty_version().await.expect("dirty version"), None);
    // `sqlx migrate run`: validates the applied ones, takes the same lock, applies nothing.
    migrator
        .run(&mut conn)
        .await
        .expect("sqlx migrate run succeeds");
    let after = conn.list_applied_migrations().await.expect("list again");
    assert_eq!(after.len(), applied, "sqlx applied nothing");
    conn.close().await.ok();
}

/// `sqlx migrate run` on `folder` against `uri` (a plain local URI).
pub async fn run(uri: &str, folder: &Path) -> Result<(), String> {
    let options = PgConnectOptions::from_str(uri).map_err(|e| e.to_string())?;
    let mut conn = options.connect().await.map_err(|e| e.to_string())?;
    let migrator = Migrator::new(folder).await.map_err(|e| e.to_string())?;
    migrator.run(&mut conn).await.map_err(|e| e.to_string())
}
