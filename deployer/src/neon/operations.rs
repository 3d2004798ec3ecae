//! Waiting for the operations a change starts: Neon runs them in the background, one at a
//! time per project, and reports each as `scheduling`, `running`, `finished`, `failed`,
//! `error` (Neon retries it), `cancelling`, `cancelled` or `skipped`.

use std::time::{Duration, Instant};

use super::models::{Operation, OperationResponse, OperationStatus};
use super::{Neon, NeonError, OPERATION_TIMEOUT};

/// How long an operation may stay in `error` (Neon retries those: `failures_count` grows,
/// `retry_at` moves) before the deployer stops waiting for Neon's retries to succeed.
const ERROR_PATIENCE: Duration = Duration::from_secs(120);

/// Operations are polled every [`POLL_FIRST`] for their first [`POLL_FAST_FOR`] (most take a
/// second or a few; polling slower would add as much to every step), then at intervals
/// doubling up to [`POLL_MAX`]. At most four polls a second per operation, far below Neon's
/// 40 requests per second per route (and [`super::rate`] keeps the account's 700 a minute).
const POLL_FIRST: Duration = Duration::from_millis(250);
const POLL_FAST_FOR: Duration = Duration::from_secs(10);
const POLL_MAX: Duration = Duration::from_secs(2);

impl Neon {
    /// Polls each operation until it has finished; bounded, and says which one failed.
    /// `scheduling`/`running`/`cancelling`: wait. `error`: Neon is retrying it; wait, for at
    /// most [`ERROR_PATIENCE`] without progress. `failed`/`cancelled`: fail, with Neon's message.
    pub(super) async fn wait_for(&self, ops: &[Operation]) -> Result<(), NeonError> {
        for op in ops {
            let started = Instant::now();
            let mut current = op.clone();
            let mut error_since: Option<Instant> = None;
            let mut delay = POLL_FIRST;
            loop {
                let failed = |status: &OperationStatus, current: &Operation| NeonError::Operation {
                    id: op.id.clone(),
                    action: op.action.clone(),
                    status: format!("{status:?}").to_lowercase(),
                    failures: current.failures_count,
                    message: current.error.clone(),
                };
                match current.status {
                    OperationStatus::Finished | OperationStatus::Skipped => break,
                    OperationStatus::Failed | OperationStatus::Cancelled => {
                        return Err(failed(&current.status, &current));
                    }
                    OperationStatus::Error => {
                        let since = *error_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > ERROR_PATIENCE {
                            return Err(failed(&current.status, &current));
                        }
                        tracing::info!(
                            operation = %op.id,
                            failures = current.failures_count,
                            last_retry = current.retry_at.as_deref().unwrap_or("-"),
                            "Neon is retrying the operation"
                        );
                    }
                    _ => error_since = None,
                }
                if started.elapsed() > OPERATION_TIMEOUT {
                    return Err(NeonError::OperationTimeout {
                        id: op.id.clone(),
                        action: op.action.clone(),
                    });
                }
                tokio::time::sleep(delay).await;
                if started.elapsed() > POLL_FAST_FOR {
                    delay = (delay * 2).min(POLL_MAX);
                }
                let answer: OperationResponse = self
                    .get(&format!("/projects/{}/operations/{}", op.project_id, op.id))
                    .await?;
                current = answer.operation;
            }
        }
        Ok(())
    }
}
