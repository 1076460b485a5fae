//! The control plane's protocol timings and resource limits.

use std::time::Duration;

/// Protocol timings and resource limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A running run whose lease is not renewed within this becomes `lost`
    /// (judged only while the control plane has been able to hear from
    /// agents for a whole lease: see `Control::sweep_leases`). At least two
    /// heartbeat intervals ([`Settings::check`]).
    pub lease_ttl: Duration,
    /// How often agents heartbeat. A stall of the control plane longer than
    /// this (a stopped process, a writer that could not write) counts as an
    /// outage, after which agents get a full lease to be heard again.
    pub heartbeat_interval: Duration,
    /// How long a poll is held open when there is no work.
    pub poll_timeout: Duration,
    /// Largest log chunk an agent may upload.
    pub max_chunk_bytes: u64,
    /// Per-run cap on stored output; past it a truncation marker is stored.
    pub max_log_bytes: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// SIGTERM-to-SIGKILL delay agents apply when canceling.
    pub cancel_grace: Duration,
    /// Connected agents an org may have at once.
    pub max_agents_per_org: u32,
    /// How often expired leases are looked for.
    pub lease_sweep_interval: Duration,
    /// Lifetime of an enrollment token when the request names none.
    pub enrollment_ttl: Duration,
    /// A run still queued this long after it was submitted (no agent took
    /// it) becomes `expired`: a run is never started hours after anyone
    /// expected it.
    pub queue_ttl: Duration,
    /// How long in-flight requests (long polls, log streams) may take to
    /// finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// Answer a change only once it is on disk (`fdatasync` of the WAL,
    /// shared by every change committed meanwhile). Turning it off answers
    /// once committed to the OS: a crash of the process loses nothing, a
    /// power cut may lose the last moments, including run assignments (a run
    /// could then be handed out twice). Keep it on unless the disk's fsync
    /// latency is unbearable and the host is trusted not to lose power.
    pub durable_commits: bool,
    /// Faults the store injects on demand, for tests of what the real
    /// thing cannot be made to do (an fsync failing after its commit).
    /// Compiled only into tests and builds with the `fault-injection`
    /// feature (enabled by the test kit alone); no flag or config file
    /// reaches it.
    #[cfg(any(test, feature = "fault-injection"))]
    pub faults: Faults,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease_ttl: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(10),
            poll_timeout: Duration::from_secs(25),
            max_chunk_bytes: 64 * 1024,
            max_log_bytes: 64 * 1024 * 1024,
            max_body_bytes: 4 * 1024 * 1024,
            cancel_grace: Duration::from_secs(10),
            max_agents_per_org: 100,
            lease_sweep_interval: Duration::from_secs(1),
            enrollment_ttl: Duration::from_secs(24 * 3600),
            queue_ttl: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(5),
            durable_commits: true,
            #[cfg(any(test, feature = "fault-injection"))]
            faults: Faults::default(),
        }
    }
}

impl Settings {
    /// Refuses settings under which healthy runs would be lost: a lease must
    /// outlast two heartbeat intervals, so that one heartbeat lost on the way
    /// (or answered late) never costs an agent its runs. The message is one
    /// line, for the operator who set them.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat_interval.is_zero() {
            return Err("the heartbeat interval must be longer than zero".into());
        }
        let minimum = self.heartbeat_interval.saturating_mul(2);
        if self.lease_ttl < minimum {
            return Err(format!(
                "a lease of {} is shorter than two heartbeat intervals ({} each): healthy runs would be lost; use a lease of at least {} (--lease-ttl-secs)",
                seconds(self.lease_ttl),
                seconds(self.heartbeat_interval),
                seconds(minimum),
            ));
        }
        Ok(())
    }

    /// An agent counts as connected if it was heard from within this: a full
    /// poll hold plus two heartbeats, so a healthy agent never flickers.
    pub fn connected_window(&self) -> Duration {
        self.poll_timeout + self.heartbeat_interval * 2
    }

    /// Agents heard from at or after this (Unix ms) count as connected at
    /// `now`.
    pub(crate) fn connected_since(&self, now: i64) -> i64 {
        now.saturating_sub(millis(self.connected_window()))
    }
}

/// `d` for a person: whole seconds when it is, else milliseconds.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Faults the store injects on demand (tests only): a shared handle, so a
/// test keeps a clone of the one it put in [`Settings`] and arms it while
/// the control plane runs.
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    failing_syncs: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Milliseconds the next answers wait ([`Faults::delay_next_answers`]).
    answer_delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[cfg(any(test, feature = "fault-injection"))]
impl Faults {
    /// Makes the next `n` syncs of committed writes report a failure (after
    /// the commit, as a disk that fails `fdatasync` would).
    pub fn fail_next_syncs(&self, n: u32) {
        self.failing_syncs
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes the answers to the next batch of writes made durable wait
    /// `delay` more, as a slow disk (or a slow `COMMIT`) would: the writes
    /// are committed, their writers not yet told.
    pub fn delay_next_answers(&self, delay: std::time::Duration) {
        self.answer_delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Waits the delay armed for these answers, if one is (once).
    pub(crate) fn delay_answers(&self) {
        let ms = self
            .answer_delay_ms
            .swap(0, std::sync::atomic::Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    /// Whether this sync is to fail (counting it down).
    pub(crate) fn sync_fails(&self) -> bool {
        self.failing_syncs
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
    }
}

/// Every handle is the same fault source as far as comparing settings goes.
#[cfg(any(test, feature = "fault-injection"))]
impl PartialEq for Faults {
    fn eq(&self, _: &Faults) -> bool {
        true
    }
}

#[cfg(any(test, feature = "fault-injection"))]
impl Eq for Faults {}

/// `d` in milliseconds, as the database keeps times; a duration too long for
/// that is as good as forever.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_shorter_than_two_heartbeats_is_refused_with_what_would_do() {
        let s = Settings {
            lease_ttl: Duration::from_secs(5),
            ..Settings::default()
        };
        let refused = s.check().expect_err("refused");
        assert!(refused.contains("a lease of 5 s"), "{refused}");
        assert!(refused.contains("at least 20 s"), "{refused}");
        assert!(!refused.contains('\n'));
        let zero = Settings {
            lease_ttl: Duration::ZERO,
            ..Settings::default()
        };
        assert!(zero.check().is_err());
    }

    #[test]
    fn a_lease_of_two_heartbeats_or_more_is_accepted() {
        assert_eq!(Settings::default().check(), Ok(()));
        let s = Settings {
            lease_ttl: Duration::from_secs(20),
            ..Settings::default()
        };
        assert_eq!(s.check(), Ok(()));
    }
}
