//! `[state]`: where a stage's state and lock live. `local` (the default) is `.deployer/`
//! beside infra.toml; `s3` is a bucket shared by a team and its CI.

use toml::Spanned;

use super::check::Checker;
use super::raw::RawState;

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    Local,
    S3 {
        /// None: `deployer-state-<account-id>-<region>`, created on first use.
        bucket: Option<String>,
        /// Key prefix, without slashes at either end (may be empty).
        prefix: String,
    },
}

/// S3's rules for general purpose bucket names: 3 to 63 lowercase letters, digits, dots
/// and hyphens, starting and ending with a letter or digit, no two dots in a row.
fn valid_bucket(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last())
        && !name.contains("..")
}

/// A key prefix: path segments of letters, digits, `-`, `_` and `.`, no empty or dot-only
/// segment.
fn valid_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || prefix.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

impl Checker<'_> {
    pub(super) fn state(&mut self, raw: Option<Spanned<RawState>>) -> StateBackend {
        let Some(raw) = raw else {
            return StateBackend::Local;
        };
        let raw = raw.into_inner();
        let s3 = match &raw.backend {
            None => false,
            Some(b) if b.get_ref() == "local" => false,
            Some(b) if b.get_ref() == "s3" => true,
            Some(b) => {
                self.error(
                    b.span(),
                    format!(
                        "state backend `{}` is not one this deployer has",
                        b.get_ref()
                    ),
                    Some("use backend = \"local\" (the default) or backend = \"s3\"".into()),
                );
                false
            }
        };
        if let Some(bucket) = &raw.bucket
            && !valid_bucket(bucket.get_ref())
        {
            self.error(
                bucket.span(),
                format!("`{}` is not a valid S3 bucket name", bucket.get_ref()),
                Some("3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit".into()),
            );
        }
        if let Some(prefix) = &raw.prefix
            && !valid_prefix(prefix.get_ref())
        {
            self.error(
                prefix.span(),
                format!("`{}` is not a usable key prefix", prefix.get_ref()),
                Some("path segments of letters, digits, `-`, `_` and `.`, separated by `/`, with no `/` at either end".into()),
            );
        }
        if !s3 {
            for span in [&raw.bucket, &raw.prefix]
                .into_iter()
                .flatten()
                .map(|v| v.span())
            {
                self.error(
                    span,
                    "`bucket` and `prefix` apply only to the s3 backend",
                    Some("add backend = \"s3\" under [state], or remove them".into()),
                );
            }
            return StateBackend::Local;
        }
        StateBackend::S3 {
            bucket: raw.bucket.map(Spanned::into_inner),
            prefix: raw.prefix.map(Spanned::into_inner).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_names_follow_s3s_rules() {
        for ok in [
            "abc",
            "deployer-state-123456789012-us-east-1",
            "my.team.state",
        ] {
            assert!(super::valid_bucket(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "-edge",
            "edge-",
            "two..dots",
            "under_score",
            &"a".repeat(64),
        ] {
            assert!(!super::valid_bucket(bad), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_clean_paths() {
        for ok in ["", "deployer", "team/a-b_c.d"] {
            assert!(super::valid_prefix(ok), "{ok}");
        }
        for bad in ["/lead", "trail/", "a//b", "a/../b", "sp ace"] {
            assert!(!super::valid_prefix(bad), "{bad}");
        }
    }
}
