//! The alias `live`: the release a function serves. Its function URL and the URL's two
//! public permissions belong to the alias (`Qualifier = live`), so the URL's hostname never
//! changes between releases, and a release goes out, or is rolled back, with one
//! `UpdateAlias` ("Lambda function aliases", Lambda developer guide).
//!
//! After `live` moves, one request to the URL itself must answer other than 403 within a
//! short bounded wait: a missing or denied permission is caught the day it happens. With a
//! custom AWS endpoint (an emulator; `AWS_ENDPOINT_URL_LAMBDA` or `AWS_ENDPOINT_URL`), the
//! request goes to that endpoint with the URL's hostname as `Host`, as emulators serve
//! function URLs.

use std::time::{Duration, Instant};

use aws_sdk_lambda::Client;

use crate::aws::{AwsError, is_code};

/// The alias every release goes out through.
pub const LIVE: &str = "live";

/// How long the URL may answer 403 after `live` moved (a new permission takes a moment).
const URL_CHECK_WAIT: Duration = Duration::from_secs(10);

/// Why the URL check failed: it answered 403 throughout (or never answered).
#[derive(Debug, thiserror::Error)]
#[error("the function URL {url} {what} after {}s", waited.as_secs())]
pub struct UrlForbidden {
    pub url: String,
    pub what: String,
    pub waited: Duration,
}

impl UrlForbidden {
    pub fn hint(&self) -> &'static str {
        "`deployer refresh` shows what the URL lacks and `deployer deploy` adds it; if both permissions are there, an SCP or permissions boundary denies lambda:InvokeFunctionUrl or lambda:InvokeFunction"
    }
}

/// The version `live` points at; `None` before the first release.
pub async fn live_version(lambda: &Client, name: &str) -> Result<Option<String>, AwsError> {
    match lambda
        .get_alias()
        .function_name(name)
        .name(LIVE)
        .send()
        .await
    {
        Ok(a) => Ok(a.function_version().map(str::to_owned)),
        Err(e) if is_code(&e, "ResourceNotFoundException") => Ok(None),
        Err(e) => Err(AwsError::sdk(
            format!("read alias `{LIVE}` of `{name}`"),
            &e,
        )),
    }
}

/// Points `live` at `version` (made on the first release); true if it moved.
pub async fn point(lambda: &Client, name: &str, version: &str) -> Result<bool, AwsError> {
    let current = live_version(lambda, name).await?;
    point_from(lambda, name, current, version).await
}

/// [`point`], given where `live` points now (read alongside other work).
pub async fn point_from(
    lambda: &Client,
    name: &str,
    current: Option<String>,
    version: &str,
) -> Result<bool, AwsError> {
    match current {
        Some(v) if v == version => Ok(false),
        Some(_) => {
            lambda
                .update_alias()
                .function_name(name)
                .name(LIVE)
                .function_version(version)
                .send()
                .await
                .map_err(|e| {
                    AwsError::sdk(
                        format!("point `{LIVE}` of `{name}` at version {version}"),
                        &e,
                    )
                })?;
            Ok(true)
        }
        None => {
            match lambda
                .create_alias()
                .function_name(name)
                .name(LIVE)
                .function_version(version)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                // Another run (or the SDK's retry of a lost reply) made it: point it.
                Err(e) if is_code(&e, "ResourceConflictException") => {
                    Box::pin(point(lambda, name, version)).await
                }
                Err(e) => Err(AwsError::sdk(
                    format!("create alias `{LIVE}` of `{name}`"),
                    &e,
                )),
            }
        }
    }
}

/// The custom Lambda endpoint, if the SDK is pointed at one.
fn custom_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Requests `url` + `path` until it answers other than 403, for a short while.
pub async fn check_url(url: &str, path: &str) -> Result<(), UrlForbidden> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let host = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let target = match custom_endpoint() {
        Some(endpoint) => format!("{}{path}", endpoint.trim_end_matches('/')),
        None => format!("{}{path}", url.trim_end_matches('/')),
    };
    let started = Instant::now();
    loop {
        let mut req = http.get(&target);
        if custom_endpoint().is_some() {
            req = req.header("host", &host);
        }
        // Anything but 403 shows the URL is reachable: the check of the code was the
        // version's own, before it went live.
        let what = match req.send().await {
            Ok(r) if r.status().as_u16() != 403 => return Ok(()),
            Ok(_) => {
                "answers 403 Forbidden: its public permissions are missing or denied".to_owned()
            }
            Err(e) => format!("does not answer ({e})"),
        };
        if started.elapsed() >= URL_CHECK_WAIT {
            return Err(UrlForbidden {
                url: url.to_owned(),
                what,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
