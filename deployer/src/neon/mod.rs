//! The Neon API v2, shaped like it: `client` is the one JSON helper (authentication,
//! retries of what is safe to retry, waiting for the operations a change starts), and one
//! file per resource of the API (`projects`, `branches`, `endpoints`, `roles`,
//! `databases`) has a method per call the deployer makes, taking a typed request and
//! returning the typed model of its answer (`models`).
//!
//! Neon quirks handled here: a project with a running operation answers 423 to every change
//! (so each change waits for its operations before the next one); 429 carries Retry-After;
//! a 5xx on a POST may still have created the resource, so creates are not blindly retried:
//! callers look for what they meant to create first (`resources::create_or_adopt`).

mod branches;
mod client;
mod databases;
mod endpoints;
mod error;
pub mod models;
mod operations;
mod projects;
mod rate;
mod roles;

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use branches::{BranchCreateRequest, BranchUpdate, NewBranch, NewBranchEndpoint};
pub use client::Neon;
pub use databases::{DatabaseUpdate, secure_uri};
pub use error::NeonError;
pub use projects::{NewProject, ProjectUpdate};

/// Neon's public API.
pub const DEFAULT_API_HOST: &str = "https://console.neon.tech/api/v2";

/// How long one operation may run before the deployer stops waiting.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

/// Path segments and query values: everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_like_rfc_3986_components() {
        assert_eq!(super::encode("my db/ü?x=1"), "my%20db%2F%C3%BC%3Fx%3D1");
        assert_eq!(super::encode("a-b_c.d~e"), "a-b_c.d~e");
    }
}
