//! Org administration: tokens, pools, targets, secrets and agents.

use crate::agent::ResourceLimits;
use crate::approval::ApprovalRule;
use sealrun_vault::KeyId;
use serde::{Deserialize, Serialize};

pub use crate::role::Role;

/// `GET /v1/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// Org name.
    pub org: String,
    /// Token name (for users) or agent name.
    pub name: String,
    /// `admin`, `operator`, `auditor` or `agent`.
    pub role: String,
    /// The user the token belongs to (absent for agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `POST /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// A label for the token (e.g. the machine it lives on); empty or
    /// absent: the user's name.
    #[serde(default)]
    pub name: String,
    /// The user it belongs to (who must exist); it acts with the user's
    /// role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Without `user`: the role of user `name`, which is created with it
    /// if it does not exist (and refused if it exists with another role).
    /// With `user`: if given, it must be that user's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Seconds until the token stops working; absent: it works until
    /// revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A token's metadata; never its value or hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Public token id (also the token's prefix).
    pub id: String,
    /// Label.
    pub name: String,
    /// The user it belongs to.
    #[serde(default)]
    pub user: String,
    /// Role (its user's).
    pub role: Role,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds, if revoked.
    pub revoked_at_ms: Option<i64>,
    /// Unix milliseconds after which it no longer works, if it expires.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

/// Answer to `POST /v1/tokens`: the only time the token value is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token's metadata.
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token. Store it now: it cannot be shown again.
    pub token: String,
}

/// `GET /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Tokens of the caller's org.
    pub tokens: Vec<TokenView>,
}

/// `POST /v1/pools`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolCreate {
    /// Pool name, unique in the org.
    pub name: String,
}

/// An agent pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// Pool name.
    pub name: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// `GET /v1/pools`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolList {
    /// Pools of the caller's org.
    pub pools: Vec<PoolView>,
}

/// `POST /v1/pools/{pool}/enrollment-tokens` answer: shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentToken {
    /// Pool the token enrolls agents into.
    pub pool: String,
    /// The token.
    pub token: String,
    /// Unix milliseconds after which it no longer enrolls.
    pub expires_at_ms: i64,
    /// How many agents it enrolls at most; absent: any number until it
    /// expires.
    #[serde(default)]
    pub max_agents: Option<u32>,
}

/// `POST /v1/pools/{pool}/enrollment-tokens` body (optional: an empty body
/// or `{}` takes the server's default lifetime and enrolls one agent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenCreate {
    /// Seconds until the token stops enrolling agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// How many agents it may enroll (default 1: single use). Only a
    /// registration that succeeds counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_agents: Option<u32>,
    /// Enroll any number of agents until it expires (instead of
    /// `max_agents`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlimited: bool,
}

/// An enrollment token's metadata; never its value or hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentTokenView {
    /// Public token id (also part of the token), for `DELETE /v1/tokens/{id}`.
    pub id: String,
    /// Pool it enrolls agents into.
    pub pool: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds after which it no longer enrolls.
    pub expires_at_ms: i64,
    /// Unix milliseconds, if revoked.
    pub revoked_at_ms: Option<i64>,
    /// How many agents it enrolls at most; absent: any number.
    #[serde(default)]
    pub max_agents: Option<u32>,
    /// How many agents it has enrolled.
    #[serde(default)]
    pub agents_enrolled: u32,
}

/// `GET /v1/pools/{pool}/enrollment-tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentTokenList {
    /// The pool's enrollment tokens, newest first.
    pub tokens: Vec<EnrollmentTokenView>,
}

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

/// A target's public key (`GET /v1/targets/{name}/public-key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyView {
    /// Key id.
    pub key_id: KeyId,
    /// Public key, base64.
    pub key: String,
}

/// A target as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetView {
    /// The declared spec.
    #[serde(flatten)]
    pub spec: TargetSpec,
    /// Pinned by the first agent that served it (or the first agent with
    /// the key a re-key named).
    pub public_key: Option<PublicKeyView>,
    /// After a re-key (`POST /v1/targets/{name}/rekey`), until an agent
    /// presenting exactly this key connects: the only key the target
    /// accepts. `public_key` is empty meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_key_id: Option<KeyId>,
    /// An admin's certificate of the target's key (`sealrun target trust`),
    /// which `sealrun secret set` checks against the admin keys its user
    /// trusts before it seals anything to `public_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::trust::SignedCertificate>,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
}

/// `POST /v1/targets/{name}/rekey`: move a target to another agent key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    /// The id of the new key (as the refused agent reports it, or as
    /// `sealrun agent --print-key-ids` prints it): from now on only an agent
    /// presenting exactly this key may serve the target.
    pub key_id: KeyId,
    /// Delete the secrets sealed to the old key (the new key cannot open
    /// them). Without it, a target that has secrets is refused, naming them.
    #[serde(default)]
    pub drop_secrets: bool,
}

/// What a re-key did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekeyed {
    /// The target.
    pub target: String,
    /// The key it had (none if no agent had served it yet).
    pub old_key_id: Option<KeyId>,
    /// The only key it accepts now.
    pub new_key_id: KeyId,
    /// Secrets sealed to the old key, deleted (set them again).
    pub secrets_deleted: Vec<String>,
    /// The agents that served it with the old key: they get none of its
    /// runs any more (runs they are running finish). Revoke them once
    /// retired.
    pub agents_stopped: Vec<AgentRef>,
}

/// An agent, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    /// Agent id (`agt_...`).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// `PUT /v1/targets`: targets to declare or replace all at once, or none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpecs {
    /// Each declared once.
    pub targets: Vec<TargetSpec>,
}

/// `GET /v1/targets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetList {
    /// Targets of the caller's org.
    pub targets: Vec<TargetView>,
}

/// A secret's metadata (`GET /v1/targets/{t}/secrets`); never its ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretView {
    /// Secret name (the env var it becomes).
    pub name: String,
    /// Increases with every write.
    pub version: u64,
    /// Key it was sealed to.
    pub key_id: KeyId,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
    /// Who wrote it.
    pub updated_by: String,
}

/// `GET /v1/targets/{t}/secrets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    /// Secrets of the target.
    pub secrets: Vec<SecretView>,
}

/// An agent as seen by admins (`GET /v1/agents`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Pool.
    pub pool: String,
    /// Targets it serves.
    pub targets: Vec<String>,
    /// Whether it has polled or heartbeated recently.
    pub connected: bool,
    /// Unix milliseconds.
    pub last_seen_ms: Option<i64>,
    /// Agent version.
    pub version: Option<String>,
}

/// `GET /v1/agents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    /// Agents of the caller's org.
    pub agents: Vec<AgentView>,
}
