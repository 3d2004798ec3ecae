//! The stage's state during a run: what the steps record, saved through the stage's store.

use std::sync::{Arc, Mutex};

use crate::state::{Held, Pending, ResourceState, StageState, StateError, Store};

/// The stage's state during a run: every change is saved at once, one write at a time
/// (each S3 write is fenced on the one before), and only while the run holds the lock.
#[derive(Debug)]
pub struct Recorder {
    state: Mutex<StageState>,
    store: Arc<Store>,
    writes: tokio::sync::Mutex<()>,
}

impl Recorder {
    /// The recorder of a run that holds the stage's lock (`_held` says so).
    pub fn new(state: StageState, store: Arc<Store>, _held: &Held) -> Self {
        Recorder {
            state: Mutex::new(state),
            store,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Refuses to go on once the lock may belong to another run.
    pub fn check_lease(&self) -> Result<(), StateError> {
        crate::lease::check().map_err(|_| StateError::LeaseLost {
            stage: self.lock().stage.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StageState> {
        // A panic elsewhere cannot leave the state half-changed: every change is one insert.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the state as it is now.
    pub fn snapshot(&self) -> StageState {
        self.lock().clone()
    }

    pub fn into_state(self) -> StageState {
        self.state.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    async fn update(&self, change: impl FnOnce(&mut StageState)) -> Result<(), StateError> {
        let _turn = self.writes.lock().await;
        self.check_lease()?;
        let snapshot = {
            let mut state = self.lock();
            change(&mut state);
            state.serial += 1;
            state.clone()
        };
        self.store.save(&snapshot).await
    }

    /// A write that changes nothing but the serial: with S3, it succeeds only if no other
    /// run wrote since, so a change that cannot be adopted by name (a project) is sent only
    /// by the run that surely owns the stage.
    pub(crate) async fn confirm(&self) -> Result<(), StateError> {
        self.update(|_| {}).await
    }

    pub(crate) async fn record(
        &self,
        name: &str,
        resource: ResourceState,
    ) -> Result<(), StateError> {
        self.update(|s| {
            s.pending.remove(name);
            s.resources.insert(name.to_owned(), resource);
        })
        .await
    }

    pub(crate) async fn forget(&self, name: &str) -> Result<(), StateError> {
        self.update(|s| {
            s.resources.remove(name);
        })
        .await
    }

    /// Notes a create about to be sent, so a resumed run looks for it first.
    pub(crate) async fn mark_pending(
        &self,
        name: &str,
        pending: Pending,
    ) -> Result<(), StateError> {
        self.update(|s| {
            s.pending.insert(name.to_owned(), pending);
        })
        .await
    }

    pub(crate) fn pending(&self, name: &str) -> Option<Pending> {
        self.lock().pending.get(name).cloned()
    }
}
