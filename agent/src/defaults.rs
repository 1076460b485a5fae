//! The defaults of [`crate::AgentConfig`], defined once: [`crate::AgentConfig::new`]
//! uses them, and so does `sealrun agent` for every setting that no flag,
//! environment variable or `agent.toml` key gives.

use std::time::Duration;

/// Where the identity file and target keys live.
pub const STATE_DIR: &str = "/var/lib/sealrun-agent";
/// Runs executed at once.
pub const CONCURRENCY: u32 = 4;
/// How long runs in progress get to finish on shutdown before they are killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// The agent name when none is given and the host name cannot be read.
pub const NAME: &str = "agent";

/// The host name (`/etc/hostname`, trimmed), which `sealrun agent` uses as
/// the agent name when none is given; `None` if it cannot be read.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}
