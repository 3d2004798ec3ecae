//! What previews read of a stage: `base.json` beside its `state.json`, the stage's
//! [`StageState::base_view`] (its projects' and branches' IDs and names, no secret), so a
//! preview's CI role needs no access to the state and its passwords.

use super::{Fetched, S3Store};
use crate::state::{StageState, StateError};

/// Beside each stage's `state.json`: what previews of it read.
pub(super) const BASE_OBJECT: &str = "base.json";

impl S3Store {
    /// What a preview stage reads of its base stage `stage`: its `base.json` (IDs and
    /// names, no secret), or, for a base deployed before base.json existed, its state.
    pub async fn load_base(&self, app: &str, stage: &str) -> Result<StageState, StateError> {
        let key = self.key(stage, BASE_OBJECT);
        match self.fetch(&key).await? {
            Fetched::Found(bytes, _, _) => {
                return crate::state::parse_state(&bytes, &format!("s3://{}/{key}", self.bucket));
            }
            Fetched::Missing | Fetched::Denied(_) => {}
        }
        // A base deployed before base.json existed: its state, if these credentials may
        // read it (a preview's CI role may not).
        let state = self.key(stage, "state.json");
        match self.fetch(&state).await? {
            Fetched::Found(bytes, _, _) => {
                crate::state::parse_state(&bytes, &format!("s3://{}/{state}", self.bucket))
            }
            Fetched::Missing => Ok(StageState::empty(app, stage)),
            Fetched::Denied(_) => Err(StateError::NoBaseView {
                stage: stage.to_owned(),
                location: format!("s3://{}/{key}", self.bucket),
            }),
        }
    }

    /// Writes `state`'s [`StageState::base_view`] when it differs from the one this run
    /// last wrote. Derived from the state just written, so unconditional; a failure is a
    /// warning (the next write tries again), never a failed deploy.
    pub(super) async fn write_base(&self, state: &StageState) {
        let view = state.base_view();
        let mut written = self.bases.lock().await;
        if view.resources.is_empty() && !written.contains_key(&state.stage) {
            return;
        }
        let Ok(body) = serde_json::to_vec_pretty(&view) else {
            return;
        };
        if written.get(&state.stage) == Some(&body) {
            return;
        }
        let key = self.key(&state.stage, BASE_OBJECT);
        let put = self.put(&key, body.clone()).send().await;
        match put {
            Ok(_) => {
                written.insert(state.stage.clone(), body);
            }
            Err(e) => eprintln!(
                "warning: could not write s3://{}/{key} (what previews of stage `{}` read): {}",
                self.bucket,
                state.stage,
                crate::aws::Detail::of_sdk(&e)
            ),
        }
    }
}
