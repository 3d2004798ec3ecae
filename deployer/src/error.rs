//! The deployer's failures, as the user sees them: a message, at most one hint, and an exit
//! code (2 for bad input, 1 for remote failures).

use std::fmt;

use crate::neon::NeonError;
use crate::state::StateError;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn bad_input(message: String, hint: Option<String>) -> Self {
        CliError {
            code: 2,
            message,
            hint,
        }
    }

    pub fn remote(message: String, hint: Option<String>) -> Self {
        CliError {
            code: 1,
            message,
            hint,
        }
    }

    /// A Neon failure while working on resource `name`.
    pub fn from_neon(name: &str, e: NeonError) -> Self {
        let hint = e.hint().map(str::to_owned);
        CliError::remote(format!("{name}: {}", chain(&e)), hint)
    }

    pub fn from_state(e: StateError) -> Self {
        match &e {
            StateError::Locked { stage, .. } => CliError::remote(
                e.to_string(),
                Some(format!(
                    "wait for it to finish; if no deploy is running, `deployer unlock --stage {stage}`"
                )),
            ),
            StateError::Parse { .. } => CliError::bad_input(
                chain(&e),
                Some("restore it from a backup or fix the JSON".into()),
            ),
            _ => CliError::remote(chain(&e), None),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// An error and its sources, `outer: inner`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    api::error::Chain(e).to_string()
}
