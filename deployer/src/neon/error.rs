//! What a Neon call can fail with, and what each failure means: worth retrying, uncertain
//! (a 5xx may still have created the resource), a 404, or one the user must fix (with a hint).

use std::time::Duration;

use reqwest::Method;

use super::OPERATION_TIMEOUT;
use super::models::OperationId;
use crate::retry::Verdict;

#[derive(Debug, thiserror::Error)]
pub enum NeonError {
    #[error("Neon answered {status} to {method} {path}: {message}")]
    Api {
        method: Method,
        path: String,
        status: u16,
        message: String,
        /// Seconds, from a 429's or 503's `Retry-After`.
        retry_after: Option<u64>,
    },
    #[error(
        "stopped before {method} {path}: this run no longer surely holds the stage's lock (its lease ran out or another run took it over)"
    )]
    LeaseLost { method: Method, path: String },
    #[error("cannot reach the Neon API ({method} {path})")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Neon's answer to {method} {path} is not what its API documents")]
    Decode {
        method: Method,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("Neon operation `{action}` ({id}) ended `{status}` after {failures} failed attempt(s){}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Operation {
        id: OperationId,
        action: String,
        status: String,
        failures: i64,
        message: Option<String>,
    },
    #[error("Neon could not list all of {what}: it knows projects {} exist but did not describe them in time", unavailable.join(", "))]
    Incomplete {
        what: String,
        unavailable: Vec<String>,
    },
    #[error("Neon refused the branch's expiry (`expires_at`, an Early Access field of Neon's API)")]
    ExpiryRefused {
        #[source]
        source: Box<NeonError>,
    },
    #[error("Neon operation `{action}` ({id}) did not finish within {} minutes", OPERATION_TIMEOUT.as_secs() / 60)]
    OperationTimeout { id: OperationId, action: String },
}

impl NeonError {
    pub fn status(&self) -> Option<u16> {
        match self {
            NeonError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request may or may not have been carried out (5xx or no answer).
    pub fn uncertain(&self) -> bool {
        match self {
            NeonError::Api { status, .. } => *status >= 500,
            NeonError::Transport { .. } => true,
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// What the user should do, for errors retrying cannot fix.
    pub fn hint(&self) -> Option<String> {
        if let NeonError::ExpiryRefused { .. } = self {
            return Some(
                "branch expiry needs Neon's Early Access programme: join it, or remove `expires_in` from the stage's table ([stages.default] or [stages.<name>]) and let `deployer prune --older-than 7d` remove old previews; the branch was not made".to_owned(),
            );
        }
        if let NeonError::Incomplete { .. } = self {
            return Some(
                "nothing was created (one of them may be this stage's); run the deploy again in a minute".to_owned(),
            );
        }
        if let NeonError::Api {
            status: 400,
            message,
            ..
        } = self
            && message.contains("org_id")
        {
            return Some(
                "your Neon account belongs to an organization: set org_id under [neon.project.<Name>] in infra.toml (for example org_id = \"${env.NEON_ORG_ID}\" with NEON_ORG_ID in .env); the ID (org-...) is on the organization's Settings page in the Neon console".to_owned(),
            );
        }
        if let NeonError::Api {
            status: 403,
            method,
            path,
            ..
        } = self
            && *method == Method::DELETE
            && path.trim_matches('/').split('/').count() == 2
            && path.starts_with("/projects/")
        {
            // Neon's organization roles: only an Admin may delete a project; a Member's
            // key (and a project-scoped key) may not.
            return Some(
                "only an organization admin may delete a Neon project: this key is a member's (or project-scoped); run the remove with an admin's or an organization API key, or keep the project with removal = \"retain\" for the stage".to_owned(),
            );
        }
        match self.status() {
            Some(401) => {
                Some("check NEON_API_KEY (environment or .env): Neon did not accept it".to_owned())
            }
            Some(403) => {
                Some("the API key has no access to this project or organisation".to_owned())
            }
            _ => None,
        }
    }

    /// Whether one call is worth repeating: 423 and 429 always; 5xx and lost connections
    /// unless the call was a POST, which may have been carried out (callers look first).
    pub(super) fn verdict(&self) -> Verdict {
        match self {
            NeonError::Api {
                status: 429,
                retry_after: Some(secs),
                ..
            } => Verdict::RetryAfter(Duration::from_secs(*secs)),
            NeonError::Api {
                status: 503,
                retry_after: Some(secs),
                method,
                ..
            } if method != Method::POST => Verdict::RetryAfter(Duration::from_secs(*secs)),
            NeonError::Api {
                status: 423 | 429, ..
            } => Verdict::Retry,
            NeonError::Api { status, method, .. } if *status >= 500 && method != Method::POST => {
                Verdict::Retry
            }
            NeonError::Transport { method, .. } if method != Method::POST => Verdict::Retry,
            _ => Verdict::Stop,
        }
    }
}
