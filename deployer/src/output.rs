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

/// Now as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = now_unix() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
