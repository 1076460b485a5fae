//! Org administration: tokens, pools, targets, secrets and agents.

use sealrun_vault::KeyId;
use serde::{Deserialize, Serialize};

pub use crate::role::Role;
pub use crate::target::{TargetPolicy, TargetSpec};

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
    /// The public signing key an admin certified for that user
    /// (`ed25519:...`), if any: what the CLI signs runs and approvals with
    /// only if it holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// The keys that signed the org's certificates (of targets, users and
    /// runbooks), `ed25519:...`, for `sealrun login` to offer for pinning
    /// once the person has checked a fingerprint with their admin. The
    /// control plane's say-so: never trusted without that check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certifiers: Vec<String>,
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

/// A target's public key (`GET /v1/targets/{name}/public-key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyView {
    /// Key id.
    pub key_id: KeyId,
    /// Public key, base64.
    pub key: String,
    /// The target's run-report key (`ed25519:...`), as its agent presented
    /// it with the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_key: Option<String>,
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
    pub certificate: Option<crate::trust::Signed<crate::trust::TargetCertificate>>,
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
    /// When it was last heard from, Unix milliseconds. A poll that finds
    /// nothing to claim records it only once it is half a heartbeat
    /// interval old (such a poll is answered without a write), so it may
    /// lag by up to that.
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
