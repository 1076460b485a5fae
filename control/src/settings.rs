//! The control plane's protocol timings and resource limits.

use std::time::Duration;

/// Protocol timings and resource limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A running run whose lease is not renewed within this becomes `lost`.
    pub lease_ttl: Duration,
    /// How often agents heartbeat (should be well under `lease_ttl`).
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
        }
    }
}

impl Settings {
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

/// `d` in milliseconds, as the database keeps times; a duration too long for
/// that is as good as forever.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
