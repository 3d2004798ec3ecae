//! A migrations folder in sqlx-cli's format, read as sqlx reads it
//! (`sqlx-core/src/migrate/source.rs`): `<VERSION>_<DESCRIPTION>.sql`, or a reversible pair
//! `<VERSION>_<DESCRIPTION>.up.sql` / `.down.sql`; the description is the name's rest with
//! `_` as spaces; the checksum is SHA-384 of the whole file; a file whose first line is
//! `-- no-transaction` runs outside a transaction. Where sqlx silently skips a `.sql` file
//! it cannot name, or lets two files share a version, this is stricter: bad input, naming
//! the file, before anything runs. Files that do not end in `.sql` (a README) are left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One migration to apply: a simple file or the `.up.sql` of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub description: String,
    /// The file's name (`20260101000000_create_users.sql`).
    pub file: String,
    pub sql: String,
    /// SHA-384 of the file, as `_sqlx_migrations.checksum` holds it.
    pub checksum: Vec<u8>,
    /// The file starts with `-- no-transaction`.
    pub no_tx: bool,
}

impl Migration {
    pub fn checksum_hex(&self) -> String {
        hex(&self.checksum)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-384, as sqlx's `checksum`.
pub fn checksum(sql: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, sql.as_bytes())
        .as_ref()
        .to_vec()
}

/// Why a folder cannot be used; `file` is the file (or the folder) to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderError {
    pub file: PathBuf,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Simple,
    Up,
    Down,
}

/// Reads `dir`: its migrations to apply, in version order.
pub fn read(dir: &Path) -> Result<Vec<Migration>, FolderError> {
    let err = |file: &Path, message: String, hint: &str| FolderError {
        file: file.to_owned(),
        message,
        hint: hint.to_owned(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        err(
            dir,
            format!("cannot read the migrations folder: {e}"),
            "create it (sqlx migrate add <description> makes the first file), or fix the path, which is relative to infra.toml",
        )
    })?;
    // version -> the files of that version, by shape
    let mut by_version: BTreeMap<i64, Vec<(Shape, String, PathBuf)>> = BTreeMap::new();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            err(
                dir,
                format!("cannot read the folder: {e}"),
                "check its permissions",
            )
        })?;
        let path = entry.path();
        // std::fs::metadata follows symlinks, as sqlx does.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if name.ends_with(".sql") {
            names.push((name, path));
        }
    }
    names.sort();
    for (name, path) in names {
        let shape = if name.ends_with(".up.sql") {
            Shape::Up
        } else if name.ends_with(".down.sql") {
            Shape::Down
        } else {
            Shape::Simple
        };
        let version = name
            .split_once('_')
            .and_then(|(v, _)| v.parse::<i64>().ok())
            .filter(|v| *v > 0);
        let Some(version) = version else {
            return Err(err(
                &path,
                format!("`{name}` is not named <VERSION>_<DESCRIPTION>.sql"),
                "name it with a positive whole-number version, `_` and a description, e.g. 20260101120000_create_users.sql (`sqlx migrate add create_users` names it so)",
            ));
        };
        by_version
            .entry(version)
            .or_default()
            .push((shape, name, path));
    }
    let mut out = Vec::new();
    for (version, files) in by_version {
        let shapes: Vec<Shape> = files.iter().map(|f| f.0).collect();
        let up = match shapes.as_slice() {
            [Shape::Simple] => &files[0],
            [a, b] if shapes.contains(&Shape::Up) && shapes.contains(&Shape::Down) && a != b => {
                files.iter().find(|f| f.0 == Shape::Up).expect("an up file")
            }
            [Shape::Up] | [Shape::Down] => {
                let (shape, name, path) = &files[0];
                let other = if *shape == Shape::Up { "down" } else { "up" };
                return Err(err(
                    path,
                    format!(
                        "`{name}` is half of a reversible migration: its .{other}.sql is missing"
                    ),
                    "add the other half (sqlx migrate add -r makes both), or rename it to <VERSION>_<DESCRIPTION>.sql",
                ));
            }
            _ => {
                let listed: Vec<&str> = files.iter().map(|f| f.1.as_str()).collect();
                return Err(err(
                    &files[1].2,
                    format!(
                        "version {version} is used by more than one migration: {}",
                        listed.join(", ")
                    ),
                    "give each migration its own version (sqlx uses the time it was added: 20260101120000)",
                ));
            }
        };
        let (shape, name, path) = up;
        let sql = std::fs::read_to_string(path).map_err(|e| {
            err(
                path,
                format!("cannot read `{name}`: {e}"),
                "a migration is UTF-8 text",
            )
        })?;
        let suffix = if *shape == Shape::Up {
            ".up.sql"
        } else {
            ".sql"
        };
        let description = name
            .split_once('_')
            .map(|(_, d)| d.trim_end_matches(suffix).replace('_', " "))
            .unwrap_or_default();
        out.push(Migration {
            version,
            description,
            file: name.clone(),
            no_tx: sql.starts_with("-- no-transaction"),
            checksum: checksum(&sql),
            sql,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, sql) in files {
            std::fs::write(dir.path().join(name), sql).unwrap();
        }
        dir
    }

    #[test]
    fn reads_simple_and_reversible_migrations_as_sqlx_does() {
        let dir = folder(&[
            (
                "2_add_index.up.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
            ),
            ("2_add_index.down.sql", "DROP INDEX i;\n"),
            ("1_create_table.sql", "CREATE TABLE t (a int);\n"),
            ("README.md", "not a migration"),
        ]);
        let got = read(dir.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].version, got[0].description.as_str()),
            (1, "create table")
        );
        assert_eq!(
            (got[1].file.as_str(), got[1].description.as_str()),
            ("2_add_index.up.sql", "add index")
        );
        assert!(got[1].no_tx && !got[0].no_tx);
        // SHA-384 of the file: 48 bytes, what sqlx stores.
        assert_eq!(got[0].checksum.len(), 48);
        assert_eq!(got[0].checksum, checksum("CREATE TABLE t (a int);\n"));
    }

    #[test]
    fn a_folder_that_breaks_the_format_names_the_file() {
        for (files, file, says) in [
            (
                vec![("1_a.sql", ""), ("1_b.sql", "")],
                "1_b.sql",
                "more than one",
            ),
            (
                vec![("create_users.sql", "")],
                "create_users.sql",
                "is not named",
            ),
            (vec![("0_zero.sql", "")], "0_zero.sql", "is not named"),
            (
                vec![("3_x.up.sql", "")],
                "3_x.up.sql",
                ".down.sql is missing",
            ),
        ] {
            let dir = folder(&files);
            let e = read(dir.path()).unwrap_err();
            assert_eq!(e.file.file_name().unwrap(), file, "{e:?}");
            assert!(e.message.contains(says), "{e:?}");
        }
    }
}
