//! How a run fails, as the user sees it: `error: ...`, one `caused by: ...` line per source,
//! at most one `hint: ...`, and an exit code (2 for bad input, 1 for remote failures).
//! Core modules keep `thiserror` enums with their sources; this module turns them into a
//! [`Failure`] with the exit code and hint that fit.

use std::error::Error as StdError;
use std::fmt;

use crate::aws::AwsError;
use crate::build::BuildError;
use crate::config::ConfigErrors;
use crate::neon::NeonError;
use crate::state::StateError;

pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Exit code 2: the input was wrong and nothing was changed.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code 1: a remote service (or this machine) failed.
pub const EXIT_FAILED: u8 = 1;

/// A failed run: what went wrong (with its sources), what to do, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: BoxError,
    pub hint: Option<String>,
    /// Further failures of the same run (steps that failed side by side).
    pub also: Vec<Failure>,
}

/// A message with the error that caused it kept as its source, so the cause prints as its
/// own `caused by:` line instead of being flattened into the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Because {
    message: String,
    #[source]
    source: BoxError,
}

/// `message`, caused by `source`.
pub fn because(message: impl Into<String>, source: impl Into<BoxError>) -> Because {
    Because {
        message: message.into(),
        source: source.into(),
    }
}

impl Failure {
    pub fn bad_input(error: impl Into<BoxError>) -> Self {
        Failure {
            code: EXIT_BAD_INPUT,
            error: error.into(),
            hint: None,
            also: Vec::new(),
        }
    }

    pub fn remote(error: impl Into<BoxError>) -> Self {
        Failure {
            code: EXIT_FAILED,
            error: error.into(),
            hint: None,
            also: Vec::new(),
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Several failures as one: the first is reported first, the others after it.
    pub fn many(mut failures: Vec<Failure>) -> Option<Failure> {
        if failures.is_empty() {
            return None;
        }
        let mut first = failures.remove(0);
        first.code = first
            .code
            .max(failures.iter().map(|f| f.code).max().unwrap_or(0));
        first.also = failures;
        Some(first)
    }
}

impl fmt::Display for Failure {
    /// `error: ...`, `caused by: ...` per source, `hint: ...`, for each failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.error)?;
        let mut source = self.error.source();
        while let Some(s) = source {
            write!(f, "\ncaused by: {s}")?;
            source = s.source();
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        for other in &self.also {
            write!(f, "\n{other}")?;
        }
        Ok(())
    }
}

impl From<crate::preview::PreviewError> for Failure {
    fn from(e: crate::preview::PreviewError) -> Self {
        let hint = e.hint();
        Failure::bad_input(e).hint(hint)
    }
}

impl From<ConfigErrors> for Failure {
    fn from(e: ConfigErrors) -> Self {
        // Each problem carries its own place and hint in the message.
        Failure::bad_input(e)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        match &e {
            StateError::Locked { stage, .. } => {
                let hint = format!(
                    "wait for it to finish; if no deploy is running, `deployer unlock --stage {stage}`"
                );
                Failure::remote(e).hint(hint)
            }
            StateError::Parse { .. } => {
                Failure::bad_input(e).hint("restore it from a backup or fix the JSON")
            }
            StateError::Invalid { .. } => Failure::bad_input(e).hint(
                "restore it from a backup (with S3 state, the object's previous version in the bucket)",
            ),
            StateError::UnknownVersion { .. } => {
                Failure::bad_input(e).hint("upgrade deployer to the version that wrote it")
            }
            StateError::Fenced { stage, .. } | StateError::LeaseLost { stage } => {
                let hint = format!(
                    "another run deployed stage `{stage}` meanwhile; run `deployer deploy --stage {stage}` again to converge on what it left"
                );
                Failure::remote(e).hint(hint)
            }
            StateError::NotOurBucket {
                bucket,
                account,
                default,
            } => {
                let hint = if *default {
                    format!(
                        "`{bucket}` is the deployer's default name, which anyone can predict, and another account may have made it first; name a bucket account {account} owns with `bucket = \"...\"` under [state] in infra.toml"
                    )
                } else {
                    format!(
                        "name a bucket account {account} owns under [state] in infra.toml, or let these credentials use this one (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject)"
                    )
                };
                Failure::bad_input(e).hint(hint)
            }
            StateError::NoBaseView { stage, .. } => {
                let hint = format!(
                    "deploy stage `{stage}` once with this deployer (with its own credentials): it writes base.json, which previews read"
                );
                Failure::remote(e).hint(hint)
            }
            StateError::Hidden { .. } => Failure::remote(e).hint(
                "nothing was changed; run the command again in a few minutes, once S3 serves the object",
            ),
            StateError::Bucket { .. } => Failure::bad_input(e)
                .hint("check `[state]` in infra.toml and that the AWS credentials may use S3"),
            _ => Failure::remote(e),
        }
    }
}

impl From<NeonError> for Failure {
    fn from(e: NeonError) -> Self {
        let hint = e.hint();
        Failure::remote(e).maybe_hint(hint)
    }
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        let hint = e.hint();
        Failure::remote(e).maybe_hint(hint)
    }
}

impl From<BuildError> for Failure {
    fn from(e: BuildError) -> Self {
        let hint = e.hint();
        Failure::remote(e).maybe_hint(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot create role `app`")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn prints_the_chain_one_cause_a_line_then_the_hint() {
        let f = Failure::remote(Outer(std::io::Error::other("connection reset"))).hint("try again");
        assert_eq!(
            f.to_string(),
            "error: cannot create role `app`\ncaused by: connection reset\nhint: try again"
        );
    }
}
