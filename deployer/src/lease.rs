//! The run's hold on its stage's S3 lock, for every remote call to consult: a run may only
//! change anything while its lease is surely its own. A holder paused past its lease (a
//! laptop lid, SIGSTOP) wakes up with its last renewal too old and stops before its next
//! call, even before its heartbeat learns that another run took over.

use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Lease {
    renewed: Instant,
    /// How long after a renewal the lock is surely still ours: two thirds of the lease,
    /// which leaves a renewal's worth of margin.
    safe_for: Duration,
    lost: bool,
}

static LEASE: Mutex<Option<Lease>> = Mutex::new(None);

/// Why a call was not made.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "this run no longer surely holds the stage's lock (its lease ran out or another run took it over)"
)]
pub struct LeaseLost;

fn with<T>(f: impl FnOnce(&mut Option<Lease>) -> T) -> T {
    f(&mut LEASE.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The lock was just taken, for `lease`.
pub fn arm(lease: Duration) {
    with(|l| {
        *l = Some(Lease {
            renewed: Instant::now(),
            safe_for: lease * 2 / 3,
            lost: false,
        })
    });
}

/// The heartbeat renewed the lease.
pub fn renewed() {
    with(|l| {
        if let Some(l) = l {
            l.renewed = Instant::now();
        }
    });
}

/// The heartbeat learned the lock is another run's.
pub fn lose() {
    with(|l| {
        if let Some(l) = l {
            l.lost = true;
        }
    });
}

/// The lock was released: nothing to guard any more.
pub fn disarm() {
    with(|l| *l = None);
}

/// Ok while no lease is held (local state) or the lease is surely still ours.
pub fn check() -> Result<(), LeaseLost> {
    with(|l| match l {
        Some(l) if l.lost || l.renewed.elapsed() >= l.safe_for => Err(LeaseLost),
        _ => Ok(()),
    })
}
