//! What the deployer prints: one line per resource change, like SST's
//! `Created MyAppProject neon:Project (5.7s)`, on stdout; progress and errors on stderr.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Created`, `Updated`, `Deleted`...: one line per finished step.
pub fn step(verb: &str, name: &str, kind: &str, took: Duration) {
    println!("{verb:<9} {name} {kind} ({:.1}s)", took.as_secs_f64());
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now as RFC 3339 (UTC, whole seconds).
pub fn now_rfc3339() -> String {
    rfc3339(now_unix())
}

/// Seconds since the epoch as RFC 3339 (UTC, whole seconds: `2026-11-27T12:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Seconds since the epoch of an RFC 3339 timestamp (Neon's `created_at`); `None` if it is
/// not one.
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|d| d.unix_timestamp())
}

/// Masks a secret for display: `npg_…(16 chars)`.
pub fn mask(secret: &str) -> String {
    if secret.is_empty() {
        String::new()
    } else {
        format!(
            "****** ({} chars; --reveal to show)",
            secret.chars().count()
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_neon_timestamps_and_refuses_others() {
        assert_eq!(
            super::parse_rfc3339("2026-11-27T03:20:00Z"),
            Some(1_795_749_600)
        );
        assert_eq!(
            super::parse_rfc3339("2026-11-27T04:20:00+01:00"),
            Some(1_795_749_600)
        );
        assert_eq!(super::parse_rfc3339("yesterday"), None);
        assert_eq!(super::now_rfc3339().len(), 20);
    }
}
