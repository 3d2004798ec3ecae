//! `migrations = "<dir>"` on a project or a database, and `[migrations]`: the folder is read
//! and checked with infra.toml (sqlx-cli's format, `crate::migrate::folder`), so a folder
//! that breaks it is bad input before any call; and every function that reaches a database
//! with migrations (through a link or its environment) waits for them.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::check::Checker;
use super::raw::RawMigrations;
use super::{Kind, MigrationsSpec, Resource, Spec, migrations_of};

/// The longest `lock_timeout` accepted: beyond it, the app's queries would queue for
/// minutes behind a waiting migration, which is what the setting is there to prevent.
const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// `500ms`, `2s`, `1m`.
fn parse_timeout(s: &str) -> Option<Duration> {
    let (n, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        return None;
    };
    let n: u64 = n.parse().ok()?;
    (n > 0).then(|| Duration::from_millis(n * unit))
}

impl Checker<'_> {
    /// `[migrations] lock_timeout`, or the default.
    pub(super) fn migration_settings(&mut self, raw: Option<&Spanned<RawMigrations>>) -> Duration {
        let Some(t) = raw.and_then(|r| r.get_ref().lock_timeout.as_ref()) else {
            return crate::migrate::DEFAULT_LOCK_TIMEOUT;
        };
        match parse_timeout(t.get_ref()) {
            Some(d) if d <= MAX_LOCK_TIMEOUT => d,
            _ => {
                self.error(
                    t.span(),
                    format!(
                        "lock_timeout = \"{}\" is not a duration of 10m or less",
                        t.get_ref()
                    ),
                    Some(
                        "write milliseconds, seconds or minutes, e.g. lock_timeout = \"2s\"".into(),
                    ),
                );
                crate::migrate::DEFAULT_LOCK_TIMEOUT
            }
        }
    }

    /// The migration set of `database` from its `migrations` key, its folder read and
    /// checked (relative to infra.toml).
    pub(super) fn migration_set(
        &mut self,
        database: &str,
        dir: &Spanned<String>,
        lock_timeout: Duration,
    ) -> Option<(Range<usize>, Resource)> {
        let base = self.file.parent().unwrap_or(std::path::Path::new("."));
        let path = base.join(dir.get_ref());
        let migrations = match crate::migrate::folder::read(&path) {
            Ok(m) => m,
            Err(e) => {
                let shown = e
                    .file
                    .strip_prefix(base)
                    .unwrap_or(&e.file)
                    .display()
                    .to_string();
                self.error(dir.span(), format!("{shown}: {}", e.message), Some(e.hint));
                return None;
            }
        };
        let spec = Spec::Migrations(MigrationsSpec {
            database: database.to_owned(),
            dir: dir.get_ref().clone(),
            migrations,
            lock_timeout,
        });
        Some((
            dir.span(),
            Resource {
                name: migrations_of(database),
                kind: Kind::Migrations,
                spec,
                import: None,
                deps: BTreeSet::from([database.to_owned()]),
            },
        ))
    }
}

/// Makes every function wait for the migration sets of the databases it reaches: those its
/// environment names, and those its links' properties name. Its new code may need the new
/// schema, and when a migration fails the old code keeps serving the old one.
pub(super) fn functions_wait_for_migrations(resources: &mut [(Range<usize>, Resource)]) {
    let links: BTreeMap<String, BTreeSet<String>> = resources
        .iter()
        .filter(|(_, r)| r.kind == Kind::Link)
        .map(|(_, r)| (r.name.clone(), r.deps.clone()))
        .collect();
    let sets: BTreeMap<String, String> = resources
        .iter()
        .filter_map(|(_, r)| match &r.spec {
            Spec::Migrations(m) => Some((m.database.clone(), r.name.clone())),
            _ => None,
        })
        .collect();
    for (_, r) in resources.iter_mut() {
        if r.kind != Kind::Function {
            continue;
        }
        let reached: BTreeSet<String> = r
            .deps
            .iter()
            .flat_map(|d| std::iter::once(d).chain(links.get(d).into_iter().flatten()))
            .cloned()
            .collect();
        r.deps
            .extend(reached.iter().filter_map(|n| sets.get(n)).cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::parse_timeout;
    use std::time::Duration;

    #[test]
    fn lock_timeouts_read_in_milliseconds_seconds_or_minutes() {
        assert_eq!(parse_timeout("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("0s"), None);
        assert_eq!(parse_timeout("2"), None);
    }
}
