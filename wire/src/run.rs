//! Runs: what an operator submits and what anyone with read access sees.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a run was submitted from, recorded in the run and the audit trail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunSource {
    /// The `sealrun` CLI.
    Cli,
    /// A Slack slash command.
    Slack,
    /// Any other API client.
    #[default]
    Api,
}

/// The product name the `sealrun` CLI sends in its `User-Agent`
/// (`sealrun-cli/<version>`): runs it submits are recorded with source
/// `cli`, others submitted with a user token `api`. Any client can send
/// it (it is informational), but no request can make a run's source
/// `slack`: that is set only for runs from the Slack route.
pub const CLI_PRODUCT: &str = "sealrun-cli";

impl RunSource {
    /// Every source.
    pub const ALL: [RunSource; 3] = [RunSource::Cli, RunSource::Slack, RunSource::Api];

    /// The lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            RunSource::Cli => "cli",
            RunSource::Slack => "slack",
            RunSource::Api => "api",
        }
    }

    /// The source named `s` ([`as_str`](RunSource::as_str)'s inverse).
    pub fn parse(s: &str) -> Option<RunSource> {
        RunSource::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The life of a run.
///
/// ```text
/// pending_approval ──approved──> queued ──assign──> running ──finish──> succeeded | failed | timed_out | canceled | error
///   ├──rejected──> rejected            │                   └──lease lapses──> lost
///   ├──not approved in time──> expired ├──cancel──> canceled
///   └──cancel──> canceled              └──not taken in time──> expired
/// ```
/// Every state but `pending_approval`, `queued` and `running` is terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for an agent of its target.
    Queued,
    /// Handed to exactly one agent, which holds a lease on it.
    Running,
    /// The command exited 0.
    Succeeded,
    /// The command exited non-zero (or was killed by a signal / OOM).
    Failed,
    /// Canceled by a user before or while it ran.
    Canceled,
    /// Killed because it ran past its timeout.
    TimedOut,
    /// The agent stopped renewing its lease; the run may or may not have
    /// executed and is never handed out again (at-most-once).
    Lost,
    /// sealrun itself could not run the command (image pull failed, bad
    /// secret, Docker error...).
    Error,
    /// It waited in the queue longer than the control plane's queue TTL
    /// without an agent taking it, or for approval longer than its rule
    /// allows (its error says which): it never ran.
    Expired,
    /// Waiting for the approvals its target's (or runbook's) rule demands;
    /// never handed to an agent in this state.
    PendingApproval,
    /// An approver rejected it (its error holds the reason): it never ran.
    Rejected,
}

impl RunStatus {
    /// All statuses, in life-cycle order.
    pub const ALL: [RunStatus; 11] = [
        RunStatus::PendingApproval,
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Canceled,
        RunStatus::TimedOut,
        RunStatus::Lost,
        RunStatus::Error,
        RunStatus::Expired,
        RunStatus::Rejected,
    ];

    /// Whether no further transition can happen.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunStatus::PendingApproval | RunStatus::Queued | RunStatus::Running
        )
    }

    /// The snake_case name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Lost => "lost",
            RunStatus::Error => "error",
            RunStatus::Expired => "expired",
            RunStatus::PendingApproval => "pending_approval",
            RunStatus::Rejected => "rejected",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/runs`: submit a command to run on a target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Name of the target (in the caller's org). May be left empty for a
    /// runbook with exactly one target.
    #[serde(default)]
    pub target: String,
    /// The command and its arguments; run directly, never through a shell.
    /// Empty (or left out) for a runbook run, whose argv the runbook renders.
    #[serde(default)]
    pub argv: Vec<String>,
    /// Plain (non-secret) environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the target's secrets to expose to the command as env vars.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Overrides the target's run timeout (capped by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Overrides the target's default image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Refuse the run (`409`) instead of queueing it when no connected agent
    /// serves the target now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_agent: bool,
    /// The command reads input: the submitter streams it with
    /// `PUT /v1/runs/{id}/stdin` ([`StdinSent`] answers), and the command's
    /// stdin ends when that body does. Without it the command reads an empty
    /// stdin at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Skip the approval the target's rule demands, for this reason
    /// (break-glass): only roles the rule lists may, the run is audited as
    /// `run.break_glass` and flagged for review. Blank is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    /// Run a runbook instead of an ad-hoc argv: the control plane renders
    /// its argv from the parameters and takes its secrets, image and
    /// timeout; a request with a runbook gives no `argv`, `env`, `secrets`,
    /// `image` or `stdin` of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<RunbookCall>,
    /// The run as its submitter signed it (`sealrun run` signs with the
    /// user's certified key): it must say exactly what this request asks
    /// for, image and timeout included. The agent checks it again, against
    /// the admin keys it trusts, before anything runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<crate::trust::Signed<crate::authority::RunIntent>>,
}

pub use crate::runbook::RunbookCall;

/// `PUT /v1/runs/{id}/stdin` answer: how much of the body reached the run.
///
/// The input is relayed to the agent running the command and never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdinSent {
    /// Bytes of the body the control plane accepted for the run.
    pub bytes: u64,
    /// Whether the whole body was accepted and its end passed on (the
    /// command's stdin then ends). `false` when the run ended first, e.g. a
    /// command that stopped reading and exited, or a canceled run.
    pub complete: bool,
}

/// `POST /v1/runs` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCreated {
    /// The new run's id.
    pub id: String,
    /// `queued`, or `pending_approval` when its target's rule demands
    /// approval first.
    pub status: RunStatus,
    /// Whether a connected agent serves the target now. When not, the run
    /// waits for one until `expires_at_ms`.
    #[serde(default = "served_by_default")]
    pub served: bool,
    /// Unix milliseconds after which the run, if still queued, expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// For a run waiting for approval: how many approvals it needs, from
    /// whom, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalProgress>,
}

/// How far a run submitted for approval is (`sealrun_wire::approval` has
/// the rest of the approval types).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalProgress {
    /// Approvals given.
    pub approved: u32,
    /// Approvals needed.
    pub required: u32,
    /// Who may approve ("group dba").
    pub approvers: String,
    /// Unix milliseconds after which the request expires.
    pub expires_at_ms: i64,
}

fn served_by_default() -> bool {
    true
}

/// A run as shown to users (`GET /v1/runs/{id}`). Never holds secret values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// Run id.
    pub id: String,
    /// Target name.
    pub target: String,
    /// Command argv.
    pub argv: Vec<String>,
    /// Names (only) of the secrets the run referenced.
    pub secrets: Vec<String>,
    /// Image the run used.
    pub image: String,
    /// Current status.
    pub status: RunStatus,
    /// Exit code of the command, when it exited.
    pub exit_code: Option<i64>,
    /// Why sealrun could not run it, or what killed it (redacted by the agent).
    pub error: Option<String>,
    /// Where it was submitted from.
    pub source: RunSource,
    /// Who submitted it (token name, or `slack:<team>/<user>`).
    pub submitter: String,
    /// Agent that ran it.
    pub agent: Option<String>,
    /// Timeout in seconds.
    pub timeout_secs: u64,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds the agent was assigned the run.
    pub started_at_ms: Option<i64>,
    /// Unix milliseconds it reached a terminal state.
    pub finished_at_ms: Option<i64>,
    /// Bytes of (redacted) output stored.
    pub log_bytes: u64,
    /// Whether output past the per-run cap was dropped.
    pub log_truncated: bool,
    /// Whether the command was given the submitter's input on stdin.
    #[serde(default)]
    pub stdin: bool,
    /// Bytes of input relayed to the agent, once the run has ended (the
    /// input itself is never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_bytes: Option<u64>,
    /// How many masks (`***`) the agent's redactor wrote in each stream of
    /// the output, once the run has ended: each is a run of output that
    /// held a secret or a covered encoding of one. Absent before the run
    /// ends, and for runs finished by agents that did not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redactions: Option<Redactions>,
    /// The runbook the run was rendered from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// That runbook's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_version: Option<u64>,
    /// How the run ended, as the agent that ran it signed it (with the
    /// target's report key, which the target's certificate names): what a
    /// client checks the status, exit code and redaction counts against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::trust::Signed<crate::report::RunReport>>,
}

/// Masks the redactor wrote in each stream of a run's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redactions {
    /// In standard output.
    pub stdout: u64,
    /// In standard error.
    pub stderr: u64,
}

/// `GET /v1/runs` answer, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunList {
    /// The runs.
    pub runs: Vec<RunView>,
}
