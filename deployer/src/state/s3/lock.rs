//! The stage's lock in S3: created with `If-None-Match: *`, renewed with `If-Match` every
//! third of its lease, taken over with `If-Match` once its lease ran out by S3's clock, and
//! released with a conditional delete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{S3Store, lost_race, not_found, remote};
use crate::state::StateError;

/// What the lock object says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockBody {
    /// `user@host`, or the CI run's URL.
    pub holder: String,
    pub command: String,
    pub started: String,
    pub lease_seconds: u64,
    /// This run, so a holder knows its own lock.
    pub run: String,
}

impl LockBody {
    fn describe(&self) -> String {
        format!(
            "`deployer {}` by {} (started {})",
            self.command, self.holder, self.started
        )
    }
}

/// The lock as read: its body, ETag and how long ago it was last renewed (S3's clock).
#[derive(Debug)]
pub struct LockSeen {
    pub body: LockBody,
    etag: String,
    pub age: Option<Duration>,
}

impl LockSeen {
    pub fn live(&self) -> bool {
        self.age
            .is_none_or(|age| age < Duration::from_secs(self.body.lease_seconds))
    }

    pub fn describe(&self) -> String {
        match self.age {
            Some(age) => format!(
                "{}, lease renewed {} s ago of {} s",
                self.body.describe(),
                age.as_secs(),
                self.body.lease_seconds
            ),
            None => self.body.describe(),
        }
    }
}

/// A held lock: renewed in the background until released. If a renewal fails (another run
/// took the lock over), or is overdue, [`crate::lease`] says so, and the run makes no
/// further remote change.
#[derive(Debug)]
pub struct S3Lock {
    store: Arc<S3Store>,
    key: String,
    etag: Arc<tokio::sync::Mutex<String>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Who we are, as the lock says it: the CI run's URL on GitHub Actions, else user@host.
fn holder() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(server), Some(repo), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        return format!("{server}/{repo}/actions/runs/{run}");
    }
    let user = var("USER").unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{user}@{host}")
}

fn run_id() -> String {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl S3Store {
    /// The lock, if there is one, with its age by S3's clock.
    pub async fn read_lock(&self, stage: &str) -> Result<Option<LockSeen>, StateError> {
        let key = self.key(stage, "lock.json");
        let Some((bytes, etag, modified)) = self.get(&key).await? else {
            return Ok(None);
        };
        let body: LockBody = serde_json::from_slice(&bytes).unwrap_or(LockBody {
            holder: "an unreadable lock".into(),
            command: "?".into(),
            started: "?".into(),
            lease_seconds: 0,
            run: String::new(),
        });
        let age = match (self.clock.now(), modified) {
            (Some(now), Some(modified)) => Some(now.duration_since(modified).unwrap_or_default()),
            _ => None,
        };
        Ok(Some(LockSeen { body, etag, age }))
    }

    /// Takes the stage's lock: creates it, or takes over one whose lease ran out; otherwise
    /// says who holds it. A lock that vanished between our create and our read (released,
    /// or hidden by a new bucket's versioning lag) is tried again a few times, with a pause.
    pub async fn lock(self: &Arc<Self>, stage: &str, command: &str) -> Result<S3Lock, StateError> {
        const ATTEMPTS: u32 = 5;
        // One body for every attempt: a lock this run made (a lost reply, below) is known
        // by its `run`.
        let body = LockBody {
            holder: holder(),
            command: command.to_owned(),
            started: crate::output::now_rfc3339(),
            lease_seconds: self.lease.as_secs(),
            run: run_id(),
        };
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            if let Some(lock) = self.try_lock(stage, &body).await? {
                self.held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(stage.to_owned());
                return Ok(lock);
            }
        }
        Err(StateError::Locked {
            stage: stage.to_owned(),
            holder: format!(
                "another run (the lock appeared and vanished {ATTEMPTS} times; try again)"
            ),
        })
    }

    /// One attempt at [`Self::lock`]; `None`: the lock vanished while we looked.
    async fn try_lock(
        self: &Arc<Self>,
        stage: &str,
        body: &LockBody,
    ) -> Result<Option<S3Lock>, StateError> {
        let key = self.key(stage, "lock.json");
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let created = self
            .put(&key, bytes.clone())
            .if_none_match("*")
            .send()
            .await;
        let etag = match created {
            Ok(out) => out.e_tag().unwrap_or_default().to_owned(),
            Err(e) if lost_race(&e) => {
                let Some(seen) = self.read_lock(stage).await? else {
                    // Released between our create and our read (or hidden by a new
                    // bucket's versioning lag): try again.
                    return Ok(None);
                };
                if seen.body.run == body.run {
                    // A lost reply: S3 made our lock, and the SDK's retry met it.
                    return Ok(Some(self.held_lock(key, body, seen.etag)));
                }
                if seen.live() {
                    return Err(StateError::Locked {
                        stage: stage.to_owned(),
                        holder: seen.describe(),
                    });
                }
                let taken = self.put(&key, bytes).if_match(&seen.etag).send().await;
                match taken {
                    Ok(out) => {
                        eprintln!(
                            "Took over the lock of stage `{stage}` from {}: its lease had expired",
                            seen.describe()
                        );
                        out.e_tag().unwrap_or_default().to_owned()
                    }
                    // 404 to `If-Match`: the expired lock was released meanwhile (S3 User
                    // Guide, "Conditional writes"): try again.
                    Err(e) if not_found(&e) => return Ok(None),
                    Err(e) if lost_race(&e) => {
                        let holder = match self.read_lock(stage).await? {
                            // A lost reply: the takeover was applied.
                            Some(now) if now.body.run == body.run => {
                                return Ok(Some(self.held_lock(key, body, now.etag)));
                            }
                            Some(now) => now.describe(),
                            None => "another run".into(),
                        };
                        return Err(StateError::Locked {
                            stage: stage.to_owned(),
                            holder,
                        });
                    }
                    Err(e) => {
                        return Err(remote(format!("take over s3://{}/{key}", self.bucket), &e));
                    }
                }
            }
            Err(e) => return Err(remote(format!("create s3://{}/{key}", self.bucket), &e)),
        };
        Ok(Some(self.held_lock(key, body, etag)))
    }

    /// The lock this run holds at `etag`, renewed from now on.
    fn held_lock(self: &Arc<Self>, key: String, body: &LockBody, etag: String) -> S3Lock {
        let etag = Arc::new(tokio::sync::Mutex::new(etag));
        crate::lease::arm(self.lease);
        let heartbeat = tokio::spawn(heartbeat(
            self.clone(),
            key.clone(),
            body.clone(),
            etag.clone(),
        ));
        S3Lock {
            store: self.clone(),
            key,
            etag,
            heartbeat,
        }
    }

    /// Deletes the lock if it is still the one seen (`deployer unlock`).
    pub async fn delete_lock(&self, stage: &str, seen: &LockSeen) -> Result<bool, StateError> {
        let key = self.key(stage, "lock.json");
        match self.delete_request(&key).if_match(&seen.etag).send().await {
            Ok(_) => Ok(true),
            // Changed (412) or gone (404) since it was seen: not the lock we were asked
            // to remove.
            Err(e) if lost_race(&e) || not_found(&e) => Ok(false),
            Err(e) => Err(remote(format!("delete s3://{}/{key}", self.bucket), &e)),
        }
    }
}

/// Renews the lease every third of it. A renewal refused (412: the lock was taken over; 404:
/// it was deleted, by `unlock --force`) or failing until the lease could have run out
/// marks the lock lost.
async fn heartbeat(
    store: Arc<S3Store>,
    key: String,
    body: LockBody,
    etag: Arc<tokio::sync::Mutex<String>>,
) {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(store.lease / 3).await;
        let mut tag = etag.lock().await;
        let put = store
            .put(&key, bytes.clone())
            .if_match(tag.as_str())
            .send()
            .await;
        match put {
            Ok(out) => {
                *tag = out.e_tag().unwrap_or_default().to_owned();
                renewed = Instant::now();
                crate::lease::renewed();
            }
            Err(e) if lost_race(&e) && is_ours(&store, &key, &body, &mut tag).await => {
                // A lost reply: the renewal was applied and the SDK's retry met it.
                renewed = Instant::now();
                crate::lease::renewed();
            }
            Err(e) if lost_race(&e) || not_found(&e) => {
                tracing::warn!("the stage's lock was taken over or removed; stopping");
                crate::lease::lose();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not renew the stage's lock");
                if renewed.elapsed() >= store.lease * 2 / 3 {
                    crate::lease::lose();
                    return;
                }
            }
        }
    }
}

/// Whether the lock at `key` is still this run's (same `run`); if so, `tag` becomes its
/// ETag.
async fn is_ours(store: &S3Store, key: &str, body: &LockBody, tag: &mut String) -> bool {
    let Ok(Some((bytes, etag, _))) = store.get(key).await else {
        return false;
    };
    let ours = serde_json::from_slice::<LockBody>(&bytes).is_ok_and(|b| b.run == body.run);
    if ours {
        *tag = etag;
    }
    ours
}

impl S3Lock {
    /// Stops renewing and deletes the lock, if it is still ours. The ETag's mutex is taken
    /// before the heartbeat is stopped: a renewal in flight finishes and records its new
    /// ETag first, so the delete carries the lock's current one (not one a renewal just
    /// replaced, which would answer 412 and leave the lock for a whole lease).
    pub async fn release(self) {
        let current = self.etag.lock().await;
        self.heartbeat.abort();
        crate::lease::disarm();
        if let Some(stage) = self
            .key
            .strip_prefix(self.store.app_key.as_str())
            .and_then(|k| k.strip_suffix("/lock.json"))
        {
            self.store.drop_unused_claim(stage).await;
            self.store
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(stage);
        }
        let tag = current.clone();
        drop(current);
        let deleted = self
            .store
            .delete_request(&self.key)
            .if_match(tag)
            .send()
            .await;
        if let Err(e) = deleted {
            if not_found(&e) {
                // Already gone (removed with `unlock --force`): nothing to release.
            } else if lost_race(&e) {
                eprintln!(
                    "warning: the stage's lock was taken over by another run; left it to that run"
                );
            } else {
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not release the stage's lock; it expires with its lease");
            }
        }
    }
}
