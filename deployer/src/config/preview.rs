//! `branch_from` under `[stages.<name>]`: a stage that takes a Neon branch of another
//! stage's project (a preview of production's data) instead of creating its own project.
//!
//! Neon's limits checked here, before any call: `expires_at` at most 30 days ahead
//! (<https://neon.com/docs/guides/branch-expiration>, "Restrictions"), branch names up to
//! 256 characters (`BranchCreateRequest.branch.name` in Neon's OpenAPI spec), and an LSN
//! written as PostgreSQL prints one (`0/16B3748`).

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::StagePolicy;
use super::check::{Checker, valid_stage_name};
use super::raw::RawStage;

/// Neon refuses an expiration further ahead than this.
pub const MAX_EXPIRES_IN_SECS: u64 = 30 * 24 * 3600;

/// How a stage branches from another stage's project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// The stage whose projects this one branches from.
    pub base: String,
    pub parent: ParentRef,
    /// Seconds from each deploy to the branch's `expires_at`.
    pub expires_in: Option<u64>,
    /// Neon's schema-only branch: the tables, none of their rows.
    pub schema_only: bool,
}

/// Where in the base project the branch starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentRef {
    /// The project's default branch, now.
    Default,
    /// A branch of the project, by name or ID, now.
    Branch(String),
    /// The default branch at this LSN.
    Lsn(String),
    /// The default branch as it was at this time (RFC 3339).
    At(String),
}

impl ParentRef {
    /// As written in infra.toml (recorded in the state, compared by `diff`).
    pub fn as_written(&self) -> Option<String> {
        match self {
            ParentRef::Default => None,
            ParentRef::Branch(b) => Some(b.clone()),
            ParentRef::Lsn(l) => Some(format!("lsn:{l}")),
            ParentRef::At(t) => Some(format!("at:{t}")),
        }
    }
}

/// `3d`, `12h`, `90m`: a whole number and its unit, in seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let unit = match s.chars().last()? {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = s[..s.len() - 1].parse().ok()?;
    (n > 0).then(|| n.checked_mul(unit)).flatten()
}

/// `0/16B3748`: two hexadecimal numbers, as PostgreSQL prints an LSN.
fn valid_lsn(s: &str) -> bool {
    s.split_once('/').is_some_and(|(hi, lo)| {
        [hi, lo]
            .iter()
            .all(|h| (1..=8).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

impl Checker<'_> {
    /// The stage table's branch settings, checked; `None` without `branch_from`.
    pub(super) fn preview(&mut self, stage: &str, raw: &RawStage) -> Option<Preview> {
        let Some(from) = &raw.branch_from else {
            let others = [
                raw.branch_parent
                    .as_ref()
                    .map(|s| ("branch_parent", s.span())),
                raw.expires_in.as_ref().map(|s| ("expires_in", s.span())),
                raw.schema_only.as_ref().map(|s| ("schema_only", s.span())),
            ];
            for (key, span) in others.into_iter().flatten() {
                self.error(
                    span,
                    format!("`{key}` under [stages.{stage}] needs `branch_from`"),
                    Some(format!(
                        "add branch_from = \"<stage>\" under [stages.{stage}], or remove `{key}`"
                    )),
                );
            }
            return None;
        };
        let base = from.get_ref().clone();
        if !valid_stage_name(&base) {
            self.error(
                from.span(),
                format!("branch_from = \"{base}\" is not a stage name"),
                Some(
                    "name the stage whose project to branch from, e.g. branch_from = \"prod\""
                        .into(),
                ),
            );
        } else if base == stage {
            self.error(
                from.span(),
                format!("[stages.{stage}] cannot branch from itself"),
                Some("name another stage, e.g. branch_from = \"prod\"".into()),
            );
        }
        let parent = match &raw.branch_parent {
            None => ParentRef::Default,
            Some(p) => self.parent(p),
        };
        let expires_in = raw.expires_in.as_ref().and_then(|e| {
            let secs = parse_duration(e.get_ref());
            match secs {
                Some(s) if s <= MAX_EXPIRES_IN_SECS => Some(s),
                Some(_) => {
                    self.error(
                        e.span(),
                        format!("expires_in = \"{}\" is more than Neon allows", e.get_ref()),
                        Some("a branch may expire at most 30 days ahead: use 30d or less".into()),
                    );
                    None
                }
                None => {
                    self.error(
                        e.span(),
                        format!("expires_in = \"{}\" is not a duration", e.get_ref()),
                        Some("write a whole number and m, h or d, e.g. \"3d\" or \"12h\"".into()),
                    );
                    None
                }
            }
        });
        Some(Preview {
            base,
            parent,
            expires_in,
            schema_only: raw.schema_only.as_ref().is_some_and(|s| *s.get_ref()),
        })
    }

    fn parent(&mut self, p: &Spanned<String>) -> ParentRef {
        let text = p.get_ref();
        let hint = "use a branch name or ID, \"lsn:<lsn>\" (e.g. lsn:0/16B3748) or \"at:<RFC 3339 time>\" (e.g. at:2026-11-27T12:00:00Z)";
        if let Some(lsn) = text.strip_prefix("lsn:") {
            if valid_lsn(lsn) {
                return ParentRef::Lsn(lsn.to_owned());
            }
            self.error(
                p.span(),
                format!("branch_parent = \"{text}\": `{lsn}` is not an LSN"),
                Some(hint.into()),
            );
        } else if let Some(at) = text.strip_prefix("at:") {
            if crate::output::parse_rfc3339(at).is_some() {
                return ParentRef::At(at.to_owned());
            }
            self.error(
                p.span(),
                format!("branch_parent = \"{text}\": `{at}` is not an RFC 3339 time"),
                Some(hint.into()),
            );
        } else if text.is_empty() || text.len() > 256 {
            self.error(
                p.span(),
                "branch_parent must be 1 to 256 characters".to_owned(),
                Some(hint.into()),
            );
        } else {
            return ParentRef::Branch(text.clone());
        }
        ParentRef::Default
    }

    /// A base stage owns its project: it has its own `[stages.<base>]` table (else it
    /// would branch from itself through `[stages.default]`), and that table does not
    /// branch (previews of previews are not offered).
    pub(super) fn check_bases(
        &mut self,
        stages: &BTreeMap<String, StagePolicy>,
        previews: &BTreeMap<String, Preview>,
        spans: &BTreeMap<String, Range<usize>>,
    ) {
        for (table, preview) in previews {
            let span = spans.get(table).cloned().unwrap_or(0..0);
            let base = &preview.base;
            if base == table {
                continue;
            }
            if table == "default" && !stages.contains_key(base) {
                self.error(
                    span,
                    format!(
                        "[stages.default] branches from `{base}`, which has no [stages.{base}] table, so `{base}` would branch from itself"
                    ),
                    Some(format!("add a [stages.{base}] table (e.g. with protect = true)")),
                );
            } else if previews.contains_key(base) {
                self.error(
                    span,
                    format!(
                        "[stages.{table}] branches from `{base}`, which branches from `{}` itself",
                        previews[base].base
                    ),
                    Some(format!(
                        "branch from a stage that has its own project: branch_from = \"{}\"",
                        previews[base].base
                    )),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_lsns_in_their_written_forms() {
        assert_eq!(parse_duration("3d"), Some(3 * 86_400));
        assert_eq!(parse_duration("12h"), Some(12 * 3600));
        assert_eq!(parse_duration("90m"), Some(90 * 60));
        for bad in ["", "d", "0d", "3", "3w", "-1d", "1.5d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert!(valid_lsn("0/16B3748"));
        assert!(!valid_lsn("16B3748"));
        assert!(!valid_lsn("0/xyz"));
    }
}
