//! Small helpers: a seeded PRNG, Neon-style IDs, RFC 3339 timestamps, a unified diff.

use std::time::{SystemTime, UNIX_EPOCH};

/// splitmix64: deterministic for a seed, good enough to pick IDs and faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator seeded from the clock, for IDs and passwords.
    pub fn from_clock() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Rng(nanos ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    fn word(&mut self, words: &[&'static str]) -> &'static str {
        words[self.below(words.len())]
    }

    fn chars(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }

    /// `shiny-wind-028834`
    pub fn project_id(&mut self) -> String {
        let (a, n) = (self.word(ADJECTIVES), self.word(NOUNS));
        format!("{a}-{n}-{:06}", self.below(1_000_000))
    }

    /// `br-aged-salad-a5ow2h3x`, `ep-cool-darkness-12345678`
    pub fn resource_id(&mut self, prefix: &str) -> String {
        let (a, n) = (self.word(ADJECTIVES), self.word(NOUNS));
        format!("{prefix}-{a}-{n}-{}", self.chars(8, LOWER_ALNUM))
    }

    /// A UUID (version 4 layout) for operations.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// `npg_` and 12 letters or digits, the shape of Neon's generated passwords.
    pub fn password(&mut self) -> String {
        format!("npg_{}", self.chars(12, ALNUM))
    }
}

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

const ADJECTIVES: &[&str] = &[
    "aged",
    "bold",
    "calm",
    "cool",
    "damp",
    "dry",
    "fancy",
    "green",
    "hidden",
    "late",
    "misty",
    "morning",
    "odd",
    "patient",
    "plain",
    "proud",
    "quiet",
    "rapid",
    "round",
    "shiny",
    "silent",
    "small",
    "snowy",
    "square",
    "still",
    "summer",
    "tiny",
    "twilight",
    "weathered",
    "wild",
    "winter",
    "young",
    "wispy",
    "lively",
    "polished",
    "purple",
];
const NOUNS: &[&str] = &[
    "band", "bird", "block", "boat", "breeze", "brook", "bush", "cake", "cell", "cherry", "cloud",
    "darkness", "dawn", "dew", "dream", "dust", "feather", "field", "fire", "flower", "fog",
    "forest", "frog", "frost", "glade", "grass", "haze", "hill", "lake", "leaf", "meadow", "moon",
    "mountain", "night", "paper", "pine", "pond", "rain", "river", "salad", "sea", "shadow",
    "silence", "sky", "smoke", "snow", "sound", "star", "sun", "sunset", "thunder", "tree",
    "violet", "voice", "water", "wave", "wind", "wood",
];

/// Now, as Neon writes times: `2026-11-27T03:20:00Z`.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc().unix_timestamp())
}

/// Formats seconds since the Unix epoch (UTC), whole seconds.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_ids_have_neons_shapes() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_749_600), "2026-11-27T03:20:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let mut rng = Rng::new(7);
        let id = rng.resource_id("br");
        assert!(id.starts_with("br-") && id.len() <= 60, "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_eq!(rng.uuid().len(), 36);
        assert_eq!(Rng::new(1).project_id(), Rng::new(1).project_id());
    }
}

/// A unified diff (`diff -u`, three lines of context) of `before` and `after`, line by line;
/// empty when they are the same.
pub fn unified_diff(before: &str, after: &str, before_name: &str, after_name: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    // Longest common subsequence, from the end: lcs[i][j] is that of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (' ' | '-' | '+', line, index in a, index in b).
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i], i, j));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i], i, j));
            i += 1;
        } else {
            ops.push(('+', b[j], i, j));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    if changed.is_empty() {
        return String::new();
    }
    let mut out = format!("--- {before_name}\n+++ {after_name}\n");
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(3);
        let mut end = changed[k] + 3;
        while k + 1 < changed.len() && changed[k + 1] <= end + 3 {
            k += 1;
            end = changed[k] + 3;
        }
        let end = end.min(ops.len() - 1);
        let hunk = &ops[start..=end];
        let a_len = hunk.iter().filter(|o| o.0 != '+').count();
        let b_len = hunk.iter().filter(|o| o.0 != '-').count();
        let (a_at, b_at) = (hunk[0].2 + 1, hunk[0].3 + 1);
        out.push_str(&format!("@@ -{a_at},{a_len} +{b_at},{b_len} @@\n"));
        for (mark, line, ..) in hunk {
            out.push_str(&format!("{mark}{line}\n"));
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod diff_tests {
    #[test]
    fn a_unified_diff_shows_the_changed_lines_with_context() {
        let before = "a\nb\nc\nd\ne\nf\ng\n";
        let after = "a\nb\nc\nD\ne\nf\ng\nh\n";
        assert_eq!(
            super::unified_diff(before, after, "main", "preview/pr-1"),
            "--- main\n+++ preview/pr-1\n@@ -1,7 +1,8 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n+h\n"
        );
        assert_eq!(super::unified_diff(before, before, "x", "y"), "");
    }
}
