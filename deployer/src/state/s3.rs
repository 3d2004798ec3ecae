//! State in S3, shared by a team and its CI: `<prefix>/<app>/<stage>/state.json` and
//! `.../lock.json`, both written with S3's conditional requests so that two runs can never
//! both believe they hold a stage, nor overwrite each other's state.
//!
//! - The lock is created with `If-None-Match: *` (only one creator wins). Its holder renews a
//!   lease with `If-Match` on the lock's ETag; a lock whose lease has run out, judged by S3's
//!   clock (its `Date` header against the lock's `LastModified`, never the local clock), is
//!   taken over with `If-Match` on the ETag read, so only one taker wins. Release is a
//!   conditional delete.
//! - Every state write is `If-Match` on the ETag this run last read or wrote
//!   (`If-None-Match: *` for a stage never written), with a `serial` that only grows. A 412
//!   means another run wrote: this one stops, and nothing is overwritten. That is what makes
//!   a wrongful `unlock --force` or a takeover of a paused holder harmless.
//!
//! AWS: "Conditional writes" and "Conditional deletes" in the S3 User Guide; concurrent
//! conditional requests on one key may also answer 409 `ConditionalRequestConflict`, which
//! is the same lost race as 412.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::delete_object::builders::DeleteObjectFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;

use super::{StageState, StateError};

mod base;
mod code;
mod lock;

use base::BASE_OBJECT;
pub use lock::S3Lock;

/// How long a lock stays live without renewal; `DEPLOYER_LOCK_LEASE_SECONDS` overrides it
/// (tests use a few seconds). The holder renews every third of it.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// S3's clock, as its last answer's `Date` header gave it.
#[derive(Debug, Default)]
struct S3Clock(Mutex<Option<(SystemTime, Instant)>>);

impl S3Clock {
    /// S3's time now: its last `Date` plus the time since (whole seconds, as S3 gives).
    fn now(&self) -> Option<SystemTime> {
        let seen = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.map(|(date, at)| date + at.elapsed())
    }
}

#[derive(Debug)]
struct ClockInterceptor(Arc<S3Clock>);

impl Intercept for ClockInterceptor {
    fn name(&self) -> &'static str {
        "S3Clock"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| {
                aws_sdk_s3::primitives::DateTime::from_str(
                    d,
                    aws_sdk_s3::primitives::DateTimeFormat::HttpDate,
                )
                .ok()
            })
            .and_then(|d| SystemTime::try_from(d).ok());
        if let Some(date) = date {
            *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((date, Instant::now()));
        }
        Ok(())
    }
}

/// One stage's objects in a bucket.
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    pub bucket: String,
    /// `<prefix>/<app>/`, or `<app>/` without a prefix.
    app_key: String,
    clock: Arc<S3Clock>,
    /// Each stage's state object as this run last read or wrote it (`None`: there was
    /// none). Per object: a run reads a preview's base stage and writes its own, and a
    /// conditional write carries the ETag of the object it writes, never another's.
    seen: tokio::sync::Mutex<HashMap<String, Option<Seen>>>,
    /// The stages whose lock this run holds: their state is read to be written.
    held: Mutex<std::collections::HashSet<String>>,
    /// Empty states this run created to settle a 404 (below), by stage: their ETag. One
    /// the run never wrote over is deleted when it lets the stage go, so a run that
    /// changed nothing leaves nothing.
    claims: Mutex<HashMap<String, String>>,
    /// The `base.json` this run last wrote, by stage.
    bases: tokio::sync::Mutex<HashMap<String, Vec<u8>>>,
    lease: Duration,
    /// The account that must own the bucket: every call sends it as `ExpectedBucketOwner`,
    /// so a bucket another account made (the default name is predictable) is refused
    /// with 403 instead of receiving the state's passwords.
    owner: String,
}

/// What a GET found.
enum Fetched {
    Found(Vec<u8>, String, Option<SystemTime>),
    Missing,
    /// 403: these credentials may not read it.
    Denied(StateError),
}

/// A state object as this run last read or wrote it.
#[derive(Debug, Clone)]
struct Seen {
    etag: String,
    body: Vec<u8>,
}

/// Reads of a held stage's state tried while S3 hides an object it has (below): about 30 s
/// in all, from a quarter of a second doubling.
const HIDDEN_READS: u32 = 7;

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// A lost race on a conditional request: 412, or 409 `ConditionalRequestConflict`.
fn lost_race<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    status(e) == Some(412)
        || e.as_service_error()
            .and_then(|s| s.code())
            .is_some_and(|c| c == "PreconditionFailed" || c == "ConditionalRequestConflict")
}

/// 404 `NoSuchKey`: the object is not there.
pub(super) fn not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    status(e) == Some(404)
        || e.as_service_error()
            .and_then(|s| s.code())
            .is_some_and(|c| c == "NoSuchKey")
}

fn remote<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    action: impl Into<String>,
    e: &SdkError<E, HttpResponse>,
) -> StateError {
    StateError::Remote {
        action: action.into(),
        source: Box::new(crate::aws::Detail::of_sdk(e)),
    }
}

impl S3Store {
    /// The store for `app`'s stages in `bucket` under `prefix`, owned by account `owner`;
    /// the client's configuration is the deployer's AWS one, in `region` when the bucket
    /// lives in another region than the app.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        region: Option<&str>,
        bucket: String,
        prefix: &str,
        app: &str,
        owner: String,
    ) -> S3Store {
        let clock = Arc::new(S3Clock::default());
        let mut config =
            aws_sdk_s3::config::Builder::from(sdk).interceptor(ClockInterceptor(clock.clone()));
        if let Some(region) = region {
            config = config.region(aws_config::Region::new(region.to_owned()));
        }
        // A custom endpoint (moto, MinIO, LocalStack) serves buckets by path, not by host.
        if sdk.endpoint_url().is_some() {
            config = config.force_path_style(true);
        }
        let lease = std::env::var("DEPLOYER_LOCK_LEASE_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s >= 3)
            .map_or(DEFAULT_LEASE, Duration::from_secs);
        let app_key = if prefix.is_empty() {
            format!("{app}/")
        } else {
            format!("{prefix}/{app}/")
        };
        S3Store {
            client: Client::from_conf(config.build()),
            bucket,
            app_key,
            clock,
            seen: tokio::sync::Mutex::new(HashMap::new()),
            held: Mutex::default(),
            claims: Mutex::default(),
            bases: tokio::sync::Mutex::default(),
            lease,
            owner,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A PutObject of `body` at `key` in the bucket, owned as expected, typed by the key's
    /// extension (no encryption header: the bucket's default applies; see `save_state`).
    pub(super) fn put(&self, key: &str, body: Vec<u8>) -> PutObjectFluentBuilder {
        let content_type = if key.ends_with(".zip") {
            "application/zip"
        } else {
            "application/json"
        };
        self.client
            .put_object()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
    }

    /// A DeleteObject of `key` in the bucket, owned as expected.
    pub(super) fn delete_request(&self, key: &str) -> DeleteObjectFluentBuilder {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .key(key)
    }

    fn key(&self, stage: &str, object: &str) -> String {
        format!("{}{stage}/{object}", self.app_key)
    }

    /// `s3://bucket/<prefix>/<app>/<stage>/state.json`, for messages.
    pub fn url(&self, stage: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(stage, "state.json"))
    }

    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String, Option<SystemTime>)>, StateError> {
        match self.fetch(key).await? {
            Fetched::Found(bytes, etag, modified) => Ok(Some((bytes, etag, modified))),
            Fetched::Missing => Ok(None),
            Fetched::Denied(e) => Err(e),
        }
    }

    /// An object, or that it is missing, or that these credentials may not read it (a
    /// preview's CI role, say, before another stage's state).
    async fn fetch(&self, key: &str) -> Result<Fetched, StateError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_owned();
                let modified = out
                    .last_modified()
                    .and_then(|d| SystemTime::try_from(*d).ok());
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StateError::Remote {
                        action: format!("read s3://{}/{key}", self.bucket),
                        source: Box::new(e),
                    })?
                    .into_bytes()
                    .to_vec();
                Ok(Fetched::Found(bytes, etag, modified))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Ok(Fetched::Missing)
            }
            // The default bucket, not made yet (a command that only reads): no state.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchBucket") => {
                Ok(Fetched::Missing)
            }
            Err(e) if status(&e) == Some(403) => Ok(Fetched::Denied(remote(
                format!("read s3://{}/{key}", self.bucket),
                &e,
            ))),
            Err(e) => Err(remote(format!("read s3://{}/{key}", self.bucket), &e)),
        }
    }

    /// The stage's state, or an empty one; remembers its ETag for the fenced writes.
    ///
    /// A stage this run holds and whose state reads 404 is settled with a create
    /// (`If-None-Match: *`) of its empty state before anything is planned on it: after a
    /// bucket's versioning is first enabled, S3 may answer 404 NoSuchKey to reads of objects
    /// written since, for up to 15 minutes (S3 User Guide, "Enabling versioning on
    /// buckets"), while conditional writes see the object. So a 412 there means the state
    /// exists: it is read again, with back-off, rather than deployed over as if the stage
    /// were new (which would make every resource a second time).
    pub async fn load(&self, app: &str, stage: &str) -> Result<StageState, StateError> {
        let key = self.key(stage, "state.json");
        let location = format!("s3://{}/{key}", self.bucket);
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(stage);
        if let Some((body, etag, _)) = self.get(&key).await? {
            let state = self.remember(stage, etag, body, &location).await?;
            // What previews read, written by a run that holds the stage even when it
            // changes nothing: a stage deployed before base.json existed gets one.
            if held {
                self.write_base(&state).await;
            }
            return Ok(state);
        }
        if !held {
            self.seen.lock().await.insert(stage.to_owned(), None);
            return Ok(StageState::empty(app, stage));
        }
        let empty = StageState::empty(app, stage);
        let body = serde_json::to_vec_pretty(&empty).map_err(|e| StateError::Remote {
            action: "serialize the state".into(),
            source: Box::new(e),
        })?;
        let created = self.put(&key, body.clone()).if_none_match("*").send().await;
        match created {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_owned();
                self.claims
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(stage.to_owned(), etag.clone());
                return self.remember(stage, etag, body, &location).await;
            }
            Err(e) if lost_race(&e) => {}
            Err(e) => return Err(remote(format!("write {location}"), &e)),
        }
        // It exists. This run may have read or written it already (it holds the stage).
        if let Some(Some(seen)) = self.seen.lock().await.get(stage).cloned() {
            return super::parse_state(&seen.body, &location);
        }
        for attempt in 0..HIDDEN_READS {
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            if let Some((body, etag, _)) = self.get(&key).await? {
                return self.remember(stage, etag, body, &location).await;
            }
        }
        Err(StateError::Hidden { location })
    }

    /// Deletes the empty state this run created for `stage` if nothing was written over it
    /// (a deploy that stopped before its first step, a `remove` of a stage never deployed).
    pub(super) async fn drop_unused_claim(&self, stage: &str) {
        let claim = self
            .claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stage);
        let Some(tag) = claim else { return };
        let mut seen = self.seen.lock().await;
        if !matches!(seen.get(stage), Some(Some(s)) if s.etag == tag) {
            return;
        }
        let key = self.key(stage, "state.json");
        let deleted = self.delete_request(&key).if_match(&tag).send().await;
        if deleted.is_ok() {
            seen.insert(stage.to_owned(), None);
        }
    }

    async fn remember(
        &self,
        stage: &str,
        etag: String,
        body: Vec<u8>,
        location: &str,
    ) -> Result<StageState, StateError> {
        let state = super::parse_state(&body, location)?;
        self.seen
            .lock()
            .await
            .insert(stage.to_owned(), Some(Seen { etag, body }));
        Ok(state)
    }

    /// Writes the state, fenced: only over the version this run last read or wrote; then
    /// what previews of the stage read, if that changed.
    pub async fn save(&self, state: &StageState) -> Result<(), StateError> {
        self.save_state(state).await?;
        self.write_base(state).await;
        Ok(())
    }

    async fn save_state(&self, state: &StageState) -> Result<(), StateError> {
        let key = self.key(&state.stage, "state.json");
        let body = serde_json::to_vec_pretty(state).map_err(|e| StateError::Remote {
            action: "serialize the state".into(),
            source: Box::new(e),
        })?;
        let mut seen = self.seen.lock().await;
        let last = seen.entry(state.stage.clone()).or_default();
        // No encryption header: the bucket's default applies (SSE-S3 on every bucket since
        // January 2023, set explicitly on the bucket the deployer makes), so a team bucket
        // whose policy requires SSE-KMS accepts the write and one whose default is SSE-KMS
        // keeps it (S3 User Guide, "Setting default server-side encryption behavior for
        // Amazon S3 buckets").
        let mut put = self.put(&key, body.clone());
        put = match last {
            Some(l) => put.if_match(&l.etag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(out) => {
                *last = Some(Seen {
                    etag: out.e_tag().unwrap_or_default().to_owned(),
                    body,
                });
                Ok(())
            }
            // A lost reply: S3 applied the write, its answer was lost, and the SDK's retry
            // met the write itself. The object then is exactly what this run sent.
            Err(e) if lost_race(&e) && self.is_ours(&key, &body, last).await? => Ok(()),
            // 404 to `If-Match`: the object this run read is gone (S3 User Guide,
            // "Conditional writes"), which is as lost a race as a 412.
            Err(e) if lost_race(&e) || (last.is_some() && not_found(&e)) => {
                Err(StateError::Fenced {
                    stage: state.stage.clone(),
                    location: self.url(&state.stage),
                })
            }
            Err(e) => Err(remote(format!("write {}", self.url(&state.stage)), &e)),
        }
    }

    /// Whether the object at `key` is `body`, as this run just sent it; if so, `last`
    /// becomes it.
    async fn is_ours(
        &self,
        key: &str,
        body: &[u8],
        last: &mut Option<Seen>,
    ) -> Result<bool, StateError> {
        match self.get(key).await? {
            Some((found, etag, _)) if found == body => {
                *last = Some(Seen { etag, body: found });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Deletes the stage's state (after `remove`), fenced like a write.
    pub async fn delete(&self, stage: &str) -> Result<(), StateError> {
        // What previews read goes first: a stage without a state has no base view.
        let base = self.key(stage, BASE_OBJECT);
        match self.delete_request(&base).send().await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(remote(format!("delete s3://{}/{base}", self.bucket), &e)),
        }
        self.bases.lock().await.remove(stage);
        let key = self.key(stage, "state.json");
        let seen = self.seen.lock().await;
        let Some(Some(Seen { etag: tag, .. })) = seen.get(stage) else {
            return Ok(());
        };
        match self.delete_request(&key).if_match(tag).send().await {
            Ok(_) => Ok(()),
            Err(e) if lost_race(&e) => Err(StateError::Fenced {
                stage: stage.to_owned(),
                location: self.url(stage),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.code() == Some("NoSuchKey")) =>
            {
                Ok(())
            }
            Err(e) => Err(remote(format!("delete {}", self.url(stage)), &e)),
        }
    }

    /// Every stage of the app with a state in the bucket.
    pub async fn stages(&self, app: &str) -> Result<Vec<StageState>, StateError> {
        let mut stages = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .prefix(&self.app_key)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                // The default bucket, not made yet: no stage has a state.
                Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchBucket") => {
                    break;
                }
                Err(e) => {
                    return Err(remote(
                        format!("list s3://{}/{}", self.bucket, self.app_key),
                        &e,
                    ));
                }
            };
            for object in page.contents() {
                let Some(stage) = object
                    .key()
                    .and_then(|k| k.strip_prefix(&self.app_key))
                    .and_then(|k| k.strip_suffix("/state.json"))
                else {
                    continue;
                };
                // A stage whose state these credentials may not read (a preview's CI role
                // and prod's state) is listed by what its previews may read.
                let found = match self.fetch(&self.key(stage, "state.json")).await? {
                    Fetched::Found(bytes, _, _) => Some((bytes, self.url(stage))),
                    Fetched::Missing => None,
                    Fetched::Denied(denied) => {
                        let key = self.key(stage, BASE_OBJECT);
                        match self.fetch(&key).await? {
                            Fetched::Found(bytes, _, _) => {
                                Some((bytes, format!("s3://{}/{key}", self.bucket)))
                            }
                            Fetched::Missing => None,
                            Fetched::Denied(_) => return Err(denied),
                        }
                    }
                };
                if let Some((bytes, location)) = found {
                    let mut state = super::parse_state(&bytes, &location)?;
                    state.app = app.to_owned();
                    stages.push(state);
                }
            }
        }
        Ok(stages)
    }
}
