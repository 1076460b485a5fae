//! The agent protocol. Agents only ever dial out: every message here is a
//! request from an agent to the control plane, answered synchronously.
//!
//! ```text
//! POST /v1/agent/register    (enrollment token) RegisterRequest  -> Registered
//! POST /v1/agent/challenge   (agent token)      ChallengeRequest -> Challenges
//! POST /v1/agent/connect     (agent token)      ConnectRequest   -> AgentSettings
//! POST /v1/agent/audit       (agent token)      AuditLinksRequest -> AuditLinks
//! POST /v1/agent/poll        (agent token)      PollRequest      -> 200 Assignment | 204 (held ~25 s)
//! POST /v1/agent/heartbeat   (agent token)      Heartbeat        -> HeartbeatAck
//! POST /v1/agent/runs/{id}/logs   (agent token) LogUpload        -> LogUploadAck
//! POST /v1/agent/runs/{id}/finish (agent token) FinishRequest    -> 204
//! POST /v1/agent/deregister  (agent token)                       -> 204
//! ```

use crate::run::{Redactions, RunStatus};
pub use crate::target::{LimitError, ResourceLimits};
use sealrun_vault::SealedSecret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A target an agent serves, with the public half of its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedTarget {
    /// Target name, as declared by an admin.
    pub name: String,
    /// The target's public key, base64 (see `sealrun_vault::PublicKey`).
    pub public_key: String,
    /// The public half of the key derived from it that signs run reports
    /// (`ed25519:...`, [`crate::report`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_key: Option<String>,
}

/// Enrolls a new agent in the pool the enrollment token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Human-readable agent name (unique in the org).
    pub name: String,
    /// The targets it will serve, with their keys, checked as connecting
    /// checks them: an agent that would be refused (a key mismatch, an
    /// undeclared target) is refused before it is enrolled, so the refusal
    /// uses up nothing of the enrollment token. Absent: checked on connect
    /// only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ServedTarget>,
}

/// Answer to a registration: the agent's identity, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// Stable agent id.
    pub agent_id: String,
    /// Bearer token for every later call; the server keeps only its hash.
    pub agent_token: String,
}

/// Sent on every agent start: which targets it serves, with their keys.
///
/// A target's key is pinned by the first agent that presents it; a different
/// key later is refused (`409`) and audited. Runs the agent held before this
/// call are marked `lost`: a process that connects afresh cannot be running
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// The agent's version string.
    pub version: String,
    /// How many runs it executes at once.
    pub max_concurrency: u32,
    /// The targets it serves.
    pub targets: Vec<ServedTarget>,
    /// Proof that it holds each target's private key: one answered
    /// [`Challenge`] per target. A target without a valid proof is refused
    /// (`403`) and audited: a public key is public, so presenting one
    /// proves nothing.
    #[serde(default)]
    pub proofs: Vec<Proof>,
}

/// The name a challenge's nonce is sealed under. Not a valid secret name
/// (secret names are environment variable names), so a challenge can never
/// make an agent open one of its secrets and hand back the value: the
/// vault opens a sealed value only under the name it was sealed for.
pub const PROOF_NAME: &str = "sealrun:proof-of-possession";

/// `POST /v1/agent/challenge`: asks for one challenge per target the agent
/// is about to connect serving, each sealed to the key it will present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The targets, with the public keys the agent will present.
    pub targets: Vec<ServedTarget>,
}

/// Answer to a [`ChallengeRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenges {
    /// One per target asked about, valid for [`CHALLENGE_TTL_SECS`], usable once.
    pub challenges: Vec<Challenge>,
}

/// How long a challenge can be answered.
pub const CHALLENGE_TTL_SECS: u64 = 60;

/// A fresh random nonce sealed to a target's public key, under
/// [`PROOF_NAME`] and the target's name: only the holder of the target's
/// private key can open it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The target.
    pub target: String,
    /// Names the challenge in the [`Proof`].
    pub id: String,
    /// The nonce, sealed.
    pub sealed: SealedSecret,
}

impl Challenge {
    /// The proof that `keypair` (the target's) opens this challenge: the
    /// nonce, opened under [`PROOF_NAME`] and the target's name only, so a
    /// "challenge" that is really one of the target's sealed secrets does
    /// not open and no secret value is ever sent back.
    pub fn answer(
        &self,
        keypair: &sealrun_vault::TargetKeypair,
    ) -> Result<Proof, sealrun_vault::Error> {
        let nonce = sealrun_vault::open(keypair, PROOF_NAME, &self.target, &self.sealed)?;
        Ok(Proof {
            target: self.target.clone(),
            challenge_id: self.id.clone(),
            nonce: hex::encode(nonce.expose()),
        })
    }
}

/// `POST /v1/agent/audit`: the links of the org's audit chain from entry
/// `from_seq` on (inclusive), so the agent checks that the chain extends
/// what it saw before (`crate::audit::witness`). `0`: only the last link
/// (what an agent that saw nothing yet starts from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLinksRequest {
    /// The entry the agent remembers (0: none).
    pub from_seq: u64,
}

/// Answer to an [`AuditLinksRequest`]: at most [`MAX_AUDIT_LINKS`] links,
/// oldest first, and the seq of the trail's last entry (ask again from the
/// last link while it is behind).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLinks {
    /// The links.
    pub links: Vec<crate::audit::AuditLink>,
    /// The last entry's seq (0: the trail is empty).
    pub head_seq: u64,
}

/// Most links in one [`AuditLinks`].
pub const MAX_AUDIT_LINKS: u32 = 1000;

/// An answered [`Challenge`]: the nonce it sealed, as lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The target.
    pub target: String,
    /// [`Challenge::id`].
    pub challenge_id: String,
    /// The opened nonce, lowercase hex.
    pub nonce: String,
}

/// Knobs the control plane dictates to its agents (answer to connect).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSettings {
    /// The agent's id.
    pub agent_id: String,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: u64,
    /// A run whose lease is not renewed within this becomes `lost`.
    pub lease_ttl_ms: u64,
    /// How long the server holds a poll open.
    pub poll_timeout_ms: u64,
    /// Largest `data` of one log chunk.
    pub max_chunk_bytes: u64,
    /// Per-run cap on stored output.
    pub max_log_bytes: u64,
    /// Time between SIGTERM and SIGKILL when canceling.
    pub cancel_grace_ms: u64,
}

/// Asks for work. The agent sends it only when it has a free slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// Names this poll (1 to 64 ASCII letters, digits, `-` or `_`). An
    /// agent that got no answer (an error, a cut connection) asks again
    /// with the same id and is answered with the run handed out in that
    /// poll, if any, instead of that run staying held by nobody until its
    /// lease lapses; after an answer, the next poll takes a new id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_id: Option<String>,
}

/// A secret a run references, still sealed to the target's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedSecret {
    /// Secret name; also the env var it is exposed as.
    pub name: String,
    /// The ciphertext; only the target's agent can open it.
    pub sealed: SealedSecret,
}

/// A run handed to exactly one agent. The only message anywhere that carries
/// ciphertext out of the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Run id.
    pub run_id: String,
    /// Target name (selects the key that opens the secrets).
    pub target: String,
    /// Image to run.
    pub image: String,
    /// The images the target allows now (its own first; entries as
    /// `sealrun_wire::image` reads them): the agent refuses `image` before
    /// pulling anything unless one matches. The control plane checked it at
    /// submit; this catches a target narrowed since, and a control plane
    /// that skipped the check (an agent's own list in its configuration is
    /// what holds against a control plane that lies).
    #[serde(default)]
    pub allowed_images: Vec<String>,
    /// Command argv.
    pub argv: Vec<String>,
    /// Plain environment.
    pub env: BTreeMap<String, String>,
    /// Sealed secrets, opened by the agent just before the container starts.
    pub secrets: Vec<AssignedSecret>,
    /// Kill the command after this long.
    pub timeout_secs: u64,
    /// Container limits.
    pub limits: ResourceLimits,
    /// Docker network to attach; `None` means no network at all.
    pub network: Option<String>,
    /// `uid[:gid]` or user name to run as; `None` means 65534:65534.
    pub user: Option<String>,
    /// The command reads the submitter's input: stream it from
    /// `GET /v1/agent/runs/{id}/stdin` into the command's stdin, after the
    /// secret bundle. A body that ends without its final chunk means the
    /// input broke: the run must not go on with part of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// The signatures that authorize the run, for the agent to check
    /// against its own trust file before it opens a secret
    /// ([`crate::authority::authorize`]); absent for an unsigned run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Box<crate::authority::Authority>>,
}

impl Assignment {
    /// The nonce of the run's intent, if it carries one (signed by its
    /// submitter or stated for a Slack command), read without checking
    /// anything: for the agent's report, after the gate checked it all.
    pub fn nonce(&self) -> Option<String> {
        use crate::authority::{Mandate, RunIntent};
        let payload = match &self.authority.as_ref()?.mandate {
            Mandate::Submitter { run, .. } => &run.payload,
            Mandate::Nobody { intent } => intent,
        };
        serde_json::from_str::<RunIntent>(payload)
            .ok()
            .map(|i| i.nonce)
    }

    /// The run as the agent executes it, for [`crate::authority::authorize`].
    pub fn execution(&self) -> crate::authority::Execution<'_> {
        crate::authority::Execution {
            target: &self.target,
            image: &self.image,
            argv: &self.argv,
            env: &self.env,
            secrets: self.secrets.iter().map(|s| s.name.as_str()).collect(),
            timeout_secs: self.timeout_secs,
            stdin: self.stdin,
            network: self.network.as_deref(),
            user: self.user.as_deref(),
            limits: &self.limits,
        }
    }
}

/// Renews the leases of the runs an agent is executing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Ids of the runs in progress.
    pub running: Vec<String>,
}

/// Answer to a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// Runs a user canceled: kill them and report `canceled`.
    pub cancel: Vec<String>,
    /// Runs the agent no longer holds (lease lapsed: now `lost`): kill them,
    /// their results would be refused.
    pub abandon: Vec<String>,
}

/// Reports how a run ended. Idempotent for the same outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    /// Terminal status: succeeded, failed, canceled, timed_out or error.
    pub status: RunStatus,
    /// The command's exit code, exactly as the container reported it.
    pub exit_code: Option<i64>,
    /// Redacted explanation (e.g. `OOM killed`, `image pull failed: ...`).
    pub error: Option<String>,
    /// Whether the kernel's OOM killer ended the command.
    #[serde(default)]
    pub oom_killed: bool,
    /// Number of log chunks the agent produced (`seq` of the next one), so
    /// the server can tell a complete log from one with a gap.
    pub next_seq: u64,
    /// Masks the redactor wrote in each output stream (zero from agents
    /// that did not count).
    #[serde(default)]
    pub redactions: Redactions,
    /// The agent's signed account of all of the above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::trust::Signed<crate::report::RunReport>>,
}
