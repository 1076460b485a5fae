//! How to run the agent: [`AgentConfig`] and the targets it serves.

use crate::defaults;
use crate::error::Error;
use crate::pool::PoolConfig;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// A target this agent serves, with where its keypair lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// Target name, as declared on the control plane.
    pub name: String,
    /// Key file; `None` means `<state_dir>/keys/<name>.key`. Generated (mode 0600)
    /// on first start if absent.
    pub key_file: Option<PathBuf>,
    /// The images this agent runs for the target, whatever the control plane
    /// allows (entries as [`sealrun_wire::image`] reads them): what holds if
    /// the control plane, or an admin token, is compromised. `None`: the
    /// target's own list, as the control plane sends it with each run.
    pub allowed_images: Option<Vec<String>>,
    /// The target's warm pool ([`crate::pool`]); size 0, the default, is none.
    pub pool: PoolConfig,
}

impl TargetConfig {
    /// A target whose key lives in the state directory.
    pub fn new(name: impl Into<String>) -> TargetConfig {
        TargetConfig {
            name: name.into(),
            key_file: None,
            allowed_images: None,
            pool: PoolConfig::default(),
        }
    }
}

/// Most containers kept warm per target: each is a container and an idle
/// process on the engine's host.
pub const MAX_POOL_SIZE: usize = 64;
/// Shortest maximum age of a pool member.
pub const MIN_POOL_AGE: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest maximum age of a pool member: a day.
pub const MAX_POOL_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How to run the agent.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `https://host:port` of the control plane.
    pub server_url: String,
    /// CA certificate (PEM) to pin; when given it is the only one trusted. Without
    /// it the system's CA bundle is used.
    pub ca_cert: Option<PathBuf>,
    /// Holds `agent.json` (agent id and token, mode 0600) and `keys/<target>.key`.
    pub state_dir: PathBuf,
    /// Needed only while `state_dir` holds no identity yet.
    pub enrollment_token: Option<String>,
    /// Agent name shown to admins (unique in the org).
    pub name: String,
    /// Targets served.
    pub targets: Vec<TargetConfig>,
    /// Runs executed at once.
    pub concurrency: u32,
    /// Docker endpoint (`unix:///path` or `tcp://host:port`); `None` means the
    /// local socket.
    pub docker_host: Option<String>,
    /// On shutdown: how long runs in progress get to finish before they are killed.
    pub shutdown_grace: Duration,
    /// Agent-side cap on any run's timeout.
    pub max_run_timeout: Option<Duration>,
    /// The static `sealrun-init` shim every run container starts with (a path on
    /// the Docker engine's host); `None` searches [`crate::init::default_candidates`]
    /// (`../lib/sealrun/sealrun-init` from the executable's directory, then
    /// [`crate::init::SEARCH_PATHS`]). The agent refuses to start without a usable one.
    pub init_binary: Option<PathBuf>,
    /// The admin public keys this agent trusts (its trust file): with them,
    /// it runs only runs whose signatures they back ([`crate::gate`]);
    /// `None` runs what the control plane hands out (and says so at start).
    pub trusted_admins: Option<Vec<sealrun_wire::trust::SignerKey>>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server_url", &self.server_url)
            .field("ca_cert", &self.ca_cert)
            .field("state_dir", &self.state_dir)
            .field(
                "enrollment_token",
                &self.enrollment_token.as_ref().map(|_| "***"),
            )
            .field("name", &self.name)
            .field("targets", &self.targets)
            .field("concurrency", &self.concurrency)
            .field("docker_host", &self.docker_host)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_run_timeout", &self.max_run_timeout)
            .field("init_binary", &self.init_binary)
            .field("trusted_admins", &self.trusted_admins)
            .finish()
    }
}

impl AgentConfig {
    /// A configuration with defaults: no pinned CA, no enrollment token, no
    /// targets, [`defaults::CONCURRENCY`] runs at once (4), the local Docker
    /// socket, [`defaults::SHUTDOWN_GRACE`] (30 s), no timeout cap, the shim
    /// found in the default places.
    pub fn new(
        server_url: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        name: impl Into<String>,
    ) -> AgentConfig {
        AgentConfig {
            server_url: server_url.into(),
            ca_cert: None,
            state_dir: state_dir.into(),
            enrollment_token: None,
            name: name.into(),
            targets: Vec::new(),
            concurrency: defaults::CONCURRENCY,
            docker_host: None,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            max_run_timeout: None,
            init_binary: None,
            trusted_admins: None,
        }
    }

    /// Checks what can be checked without touching disk or network.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.name.trim().is_empty() {
            return bad("the agent name is empty".into());
        }
        if self.targets.is_empty() {
            return bad("the agent serves no target: name at least one".into());
        }
        let mut seen = HashSet::new();
        for t in &self.targets {
            if !seen.insert(t.name.as_str()) {
                return bad(format!("target {} is listed twice", t.name));
            }
            if t.pool.size > 0 && !(MIN_POOL_AGE..=MAX_POOL_AGE).contains(&t.pool.max_age) {
                return bad(format!(
                    "target {}: pool_max_age_secs must be between {} and {} (a member replaced every few seconds only loads the engine; one kept for days pins an old image)",
                    t.name,
                    MIN_POOL_AGE.as_secs(),
                    MAX_POOL_AGE.as_secs()
                ));
            }
            if t.pool.size > MAX_POOL_SIZE {
                return bad(format!(
                    "target {}: a pool of {} is more than the {MAX_POOL_SIZE} containers an agent keeps warm per target",
                    t.name, t.pool.size
                ));
            }
            if let Some(images) = &t.allowed_images {
                sealrun_wire::image::check_allowed_images(images)
                    .or_else(|e| bad(format!("target {}: {e}", t.name)))?;
            }
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        if self.trusted_admins.as_ref().is_some_and(Vec::is_empty) {
            return bad(
                "the trust file lists no admin key: the agent would refuse every run".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_pool(size: usize, max_age_secs: u64) -> AgentConfig {
        let mut config = AgentConfig::new("https://cp:8443", "/tmp/x", "a");
        let mut target = TargetConfig::new("demo");
        target.pool = PoolConfig {
            size,
            max_age: std::time::Duration::from_secs(max_age_secs),
        };
        config.targets = vec![target];
        config
    }

    #[test]
    fn a_pool_is_refused_beyond_its_size_and_age_bounds_and_accepted_within() {
        for (size, age) in [
            (MAX_POOL_SIZE + 1, 300),
            (2, 9),
            (2, 24 * 3600 + 1),
            (2, u64::MAX),
        ] {
            let err = with_pool(size, age).validate().unwrap_err().to_string();
            assert!(err.contains("demo"), "{size} {age}: {err}");
        }
        for (size, age) in [(MAX_POOL_SIZE, 10), (2, 300), (1, 24 * 3600), (0, 0)] {
            assert!(with_pool(size, age).validate().is_ok(), "{size} {age}");
        }
    }
}
