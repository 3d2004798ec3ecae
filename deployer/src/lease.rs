//! The run's hold on its stage's S3 lock, for every remote call to consult: a run may only
//! change anything while its lease is surely its own. A holder paused past its lease (a
//! laptop lid, SIGSTOP) wakes up with its last renewal too old and stops before its next
//! call, even before its heartbeat learns that another run took over.
//!
//! Both clocks must agree that the lease holds. `Instant` is monotonic but, on Linux and
//! macOS, does not advance while the machine is suspended (it is `CLOCK_MONOTONIC`, not
//! `CLOCK_BOOTTIME`; Rust's `Instant` docs): after ten minutes with the lid closed it says
//! a few seconds passed. The wall clock (`SystemTime`) does advance across a suspend, but
//! may be stepped; so a lease is ours only while neither says it ran out.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The two clocks the lease is measured on; tests give their own.
pub trait Clocks: Send {
    fn monotonic(&self) -> Instant;
    fn wall(&self) -> SystemTime;
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClocks;

impl Clocks for SystemClocks {
    fn monotonic(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// How far the wall clock may step back (an NTP correction) without ending the lease.
pub const WALL_SLACK: Duration = Duration::from_secs(1);

/// A lease as one run holds it.
#[derive(Debug)]
pub struct Lease {
    renewed: Instant,
    renewed_wall: SystemTime,
    /// How long after a renewal the lock is surely still ours: two thirds of the lease,
    /// which leaves a renewal's worth of margin.
    safe_for: Duration,
    lost: bool,
}

impl Lease {
    /// A lease taken now, for `lease`.
    pub fn taken(clocks: &dyn Clocks, lease: Duration) -> Lease {
        Lease {
            renewed: clocks.monotonic(),
            renewed_wall: clocks.wall(),
            safe_for: lease * 2 / 3,
            lost: false,
        }
    }

    /// Renewed now.
    pub fn renew(&mut self, clocks: &dyn Clocks) {
        self.renewed = clocks.monotonic();
        self.renewed_wall = clocks.wall();
    }

    /// Whether the lease is surely still this run's: not lost, and within its safe time
    /// by both clocks. A wall clock stepped back by more than [`WALL_SLACK`] cannot say how
    /// long it has been, which counts as run out; less is an adjustment, not a jump.
    pub fn holds(&self, clocks: &dyn Clocks) -> bool {
        let by_monotonic = clocks.monotonic().saturating_duration_since(self.renewed);
        let by_wall = match clocks.wall().duration_since(self.renewed_wall) {
            Ok(passed) => passed,
            Err(back) if back.duration() < WALL_SLACK => Duration::ZERO,
            Err(_) => Duration::MAX,
        };
        !self.lost && by_monotonic < self.safe_for && by_wall < self.safe_for
    }
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
    with(|l| *l = Some(Lease::taken(&SystemClocks, lease)));
}

/// The heartbeat renewed the lease.
pub fn renewed() {
    with(|l| {
        if let Some(l) = l {
            l.renew(&SystemClocks);
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
        Some(l) if !l.holds(&SystemClocks) => Err(LeaseLost),
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Clocks a test moves by hand: a suspend advances the wall clock only.
    struct Frozen(Mutex<(Instant, SystemTime)>);

    impl Frozen {
        fn new() -> Frozen {
            Frozen(Mutex::new((Instant::now(), SystemTime::now())))
        }

        fn advance(&self, monotonic: Duration, wall: Duration) {
            let mut c = self.0.lock().unwrap();
            c.0 += monotonic;
            c.1 += wall;
        }

        fn step_wall_back(&self, by: Duration) {
            let mut c = self.0.lock().unwrap();
            c.1 -= by;
        }
    }

    impl Clocks for Frozen {
        fn monotonic(&self) -> Instant {
            self.0.lock().unwrap().0
        }

        fn wall(&self) -> SystemTime {
            self.0.lock().unwrap().1
        }
    }

    #[test]
    fn a_suspend_that_stops_the_monotonic_clock_still_ends_the_lease() {
        let clocks = Frozen::new();
        let lease = Lease::taken(&clocks, Duration::from_secs(60));
        clocks.advance(Duration::from_secs(10), Duration::from_secs(10));
        assert!(lease.holds(&clocks), "10 s into a 60 s lease");
        // The lid is closed for ten minutes: Instant does not move, the wall clock does.
        clocks.advance(Duration::ZERO, Duration::from_secs(600));
        assert!(
            !lease.holds(&clocks),
            "the wall clock says the lease ran out"
        );
    }

    #[test]
    fn either_clock_running_out_ends_the_lease_and_a_renewal_restarts_both() {
        let clocks = Frozen::new();
        let mut lease = Lease::taken(&clocks, Duration::from_secs(60));
        // Two thirds of the lease by the monotonic clock, whatever the wall clock says.
        clocks.advance(Duration::from_secs(40), Duration::ZERO);
        assert!(!lease.holds(&clocks));
        lease.renew(&clocks);
        assert!(lease.holds(&clocks));
        // A correction of the wall clock is no jump; a step back of seconds cannot say how
        // long it has been: not ours.
        clocks.step_wall_back(Duration::from_millis(200));
        assert!(lease.holds(&clocks));
        clocks.step_wall_back(Duration::from_secs(5));
        assert!(!lease.holds(&clocks));
        lease.renew(&clocks);
        lease.lost = true;
        assert!(!lease.holds(&clocks), "the heartbeat saw another holder");
    }
}
