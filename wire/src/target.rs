//! A target as an admin declares it: where its runs go, what they run in,
//! and its run policy. Its own module because both the control plane's
//! admin API ([`crate::admin`]) and the admin-signed certificate an agent
//! enforces ([`crate::trust::TargetCertificate`]) carry it.

use crate::rule::ApprovalRule;
use serde::{Deserialize, Serialize};

/// A target as declared by an admin (`PUT /v1/targets/{name}`, or
/// `sealrun target apply -f targets.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Target name, unique in the org.
    pub name: String,
    /// Label of the private network the target lives in (informational).
    #[serde(default)]
    pub private_network: String,
    /// Pool whose agents serve it.
    #[serde(default = "TargetSpec::default_pool")]
    pub pool: String,
    /// Image used when a run names none.
    pub image: String,
    /// Other images a run may name with `--image` (`sealrun_wire::image`
    /// says how entries match: exact references, digests, or repository
    /// prefixes ending in `/*`). Empty: only `image`, which is always
    /// allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_images: Vec<String>,
    /// Docker network to attach run containers to; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Container limits.
    #[serde(default)]
    pub limits: ResourceLimits,
    /// Default and maximum run timeout.
    #[serde(default = "TargetSpec::default_timeout")]
    pub timeout_secs: u64,
    /// User to run as inside the container; absent means 65534:65534.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What runs the target accepts beyond its image and limits: whether
    /// ad-hoc commands are allowed, and which secrets only runbooks may use
    /// (TOML `[target.policy]`). Absent: the permissive default.
    #[serde(default, skip_serializing_if = "TargetPolicy::is_default")]
    pub policy: TargetPolicy,
}

/// A target's run policy (`[target.policy]` in `targets.toml`).
///
/// Runbooks (named, reviewed command templates) are always allowed; the
/// policy limits *ad-hoc* runs, whose argv the submitter writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPolicy {
    /// Whether ad-hoc commands (a submitted argv) are allowed at all.
    /// Default `true`.
    #[serde(default = "TargetPolicy::default_ad_hoc")]
    pub ad_hoc: bool,
    /// Secrets an ad-hoc command may not reference: only a runbook that
    /// names them injects them. Each a valid environment variable name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runbook_only_secrets: Vec<String>,
    /// Which runs need approval, how many, from whom (TOML
    /// `[targets.policy.approval]`). Absent: none do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        TargetPolicy {
            ad_hoc: true,
            runbook_only_secrets: Vec::new(),
            approval: None,
        }
    }
}

impl TargetPolicy {
    fn default_ad_hoc() -> bool {
        true
    }

    /// Whether it is the default policy (left out of a target's JSON, so
    /// specs stored before policies existed compare equal to re-applied ones).
    pub fn is_default(&self) -> bool {
        *self == TargetPolicy::default()
    }

    /// Whether an ad-hoc command may reference secret `name`.
    pub fn ad_hoc_may_use(&self, name: &str) -> bool {
        !self.runbook_only_secrets.iter().any(|s| s == name)
    }
}

impl TargetSpec {
    /// Every image a run of this target may use: its own `image`, then its
    /// `allowed_images` ([`crate::image::effective`]).
    pub fn effective_images(&self) -> Vec<String> {
        crate::image::effective(&self.image, &self.allowed_images)
    }

    /// The pool targets belong to unless they name one.
    pub fn default_pool() -> String {
        "default".to_owned()
    }
    fn default_timeout() -> u64 {
        3600
    }
}

/// Resource limits applied to a run's container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// Memory limit in MiB (swap is disabled).
    #[serde(default = "ResourceLimits::default_memory_mb")]
    pub memory_mb: u64,
    /// CPU quota in thousandths of a CPU (1000 = one core).
    #[serde(default = "ResourceLimits::default_millicpus")]
    pub millicpus: u64,
    /// Maximum number of processes.
    #[serde(default = "ResourceLimits::default_pids")]
    pub pids: u64,
}

impl ResourceLimits {
    fn default_memory_mb() -> u64 {
        512
    }
    fn default_millicpus() -> u64 {
        1000
    }
    fn default_pids() -> u64 {
        128
    }
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            memory_mb: Self::default_memory_mb(),
            millicpus: Self::default_millicpus(),
            pids: Self::default_pids(),
        }
    }
}

/// A limit outside what the container engine honours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("limits.{limit} {value} is out of range: the accepted range is {min} to {max} ({why})")]
pub struct LimitError {
    /// `memory_mb`, `millicpus` or `pids`.
    pub limit: &'static str,
    /// The value given.
    pub value: u64,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
    /// Where the range comes from.
    pub why: &'static str,
}

impl ResourceLimits {
    /// Accepted `memory_mb`: Docker's minimum of 6 MiB, up to 4 TiB.
    pub const MEMORY_MB: (u64, u64) = (6, 4 * 1024 * 1024);
    /// Accepted `millicpus`: Docker's minimum of 0.01 CPU, up to 512 CPUs. An
    /// engine also refuses more than its host's CPUs, which the agent checks
    /// against its own engine before it creates a container.
    pub const MILLICPUS: (u64, u64) = (10, 512_000);
    /// Accepted `pids`: the shim and the command need two, and the kernel
    /// counts at most 4,194,304 (`PID_MAX_LIMIT`).
    pub const PIDS: (u64, u64) = (2, 4_194_304);

    /// Checks every limit against what the container engine honours (a value
    /// it refuses would fail every run of the target; 0 it reads as
    /// "unlimited"). The message names the limit and the accepted range.
    pub fn check(&self) -> Result<(), LimitError> {
        let ranges = [
            (
                "memory_mb",
                self.memory_mb,
                Self::MEMORY_MB,
                "MiB; Docker refuses less than 6",
            ),
            (
                "millicpus",
                self.millicpus,
                Self::MILLICPUS,
                "thousandths of a CPU: 0.01 to 512 CPUs, and at most the CPUs of the agent's host",
            ),
            (
                "pids",
                self.pids,
                Self::PIDS,
                "processes: the init shim and the command need 2; the kernel counts at most 4194304",
            ),
        ];
        for (limit, value, (min, max), why) in ranges {
            if !(min..=max).contains(&value) {
                return Err(LimitError {
                    limit,
                    value,
                    min,
                    max,
                    why,
                });
            }
        }
        Ok(())
    }
}
