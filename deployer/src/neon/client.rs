//! The one JSON helper every endpoint goes through: authentication, Neon's rate limits,
//! retries of what is safe to retry, the lease check before a change, and waiting for the
//! operations a change starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::models::{ErrorBody, Operations};
use super::{NeonError, rate};
use crate::retry::{self, Policy};

pub struct Neon {
    http: reqwest::Client,
    base: String,
    key: String,
    calls: AtomicU64,
    mutating_calls: AtomicU64,
    rate: rate::RateLimit,
}

impl std::fmt::Debug for Neon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neon").field("base", &self.base).finish()
    }
}

impl Neon {
    pub fn new(base: &str, key: &str) -> Self {
        Neon {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .user_agent(concat!("deployer/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            calls: AtomicU64::new(0),
            mutating_calls: AtomicU64::new(0),
            rate: rate::RateLimit::default(),
        }
    }

    /// (all calls, mutating calls) made so far.
    pub fn call_counts(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.mutating_calls.load(Ordering::Relaxed),
        )
    }

    /// One HTTP exchange, no retry.
    pub(super) async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, NeonError> {
        // A run that may have lost its stage's lock changes nothing more.
        if method != Method::GET && crate::lease::check().is_err() {
            return Err(NeonError::LeaseLost {
                method: method.clone(),
                path: path.to_owned(),
            });
        }
        self.rate.acquire().await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        if method != Method::GET {
            self.mutating_calls.fetch_add(1, Ordering::Relaxed);
        }
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("accept", "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        let transport = |source| NeonError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = resp.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or_else(|_| text.chars().take(200).collect());
        Err(NeonError::Api {
            method: method.clone(),
            path: path.to_owned(),
            status: status.as_u16(),
            message,
            retry_after: matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
            .then_some(retry_after)
            .flatten(),
        })
    }

    /// One call with retries ([`NeonError::verdict`]), its answer decoded as `T`.
    pub(super) async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, NeonError> {
        let text = retry::retry(
            Policy::NEON,
            || self.send(&method, path, body),
            NeonError::verdict,
        )
        .await?;
        serde_json::from_str(&text).map_err(|source| NeonError::Decode {
            method,
            path: path.to_owned(),
            source,
        })
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, NeonError> {
        self.request(Method::GET, path, None).await
    }

    /// A change: the call, then every operation it started, until finished.
    pub(super) async fn change<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, NeonError> {
        let (answer, ops) = self.start_change(method, path, body).await?;
        self.wait_for(&ops.operations).await?;
        Ok(answer)
    }

    /// A change's call, with retries: its answer and the operations it started, not yet
    /// waited for.
    pub(super) async fn start_change<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(T, Operations), NeonError> {
        let text = retry::retry(
            Policy::NEON,
            || self.send(&method, path, body),
            NeonError::verdict,
        )
        .await?;
        let decode = |source| NeonError::Decode {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let ops: Operations = serde_json::from_str(&text).map_err(decode)?;
        Ok((serde_json::from_str(&text).map_err(decode)?, ops))
    }

    /// Deletes what `path` names and waits for its operations; already gone counts as deleted.
    pub(super) async fn delete(&self, path: &str) -> Result<(), NeonError> {
        match self.change::<Operations>(Method::DELETE, path, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A typed request body as JSON.
pub(super) fn body(request: &impl Serialize) -> Value {
    serde_json::to_value(request).expect("a request body serializes")
}
