//! Approval rules: which runs of a target (or of a runbook) need approval,
//! how many, and from whom. Its own module because the target's declared
//! policy ([`crate::target`]), the control plane's approvals
//! ([`crate::approval`]) and the agent's check of a signed run
//! ([`crate::authority`]) all read it.

use crate::role::Role;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which runs of a target need approval ([`ApprovalRule::require`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalScope {
    /// None (except the runbooks the rule lists).
    #[default]
    None,
    /// Ad-hoc commands (a submitted argv), not runbooks.
    AdHoc,
    /// Ad-hoc commands that reference at least one secret.
    AdHocWithSecrets,
    /// Every run, runbooks included.
    All,
}

impl ApprovalScope {
    /// The wire (and TOML) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalScope::None => "none",
            ApprovalScope::AdHoc => "ad_hoc",
            ApprovalScope::AdHocWithSecrets => "ad_hoc_with_secrets",
            ApprovalScope::All => "all",
        }
    }
}

impl fmt::Display for ApprovalScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest wait for approval a rule may set: 7 days.
pub const MAX_EXPIRES_IN_SECS: u64 = 7 * 24 * 3600;
/// Most approvals a rule may demand.
pub const MAX_APPROVALS: u32 = 10;

/// Who must approve which runs of a target (TOML
/// `[targets.policy.approval]`), or every run of a runbook that carries
/// its own (it then replaces the target's rule for that runbook's runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Which runs need approval. Default `none`.
    #[serde(default)]
    pub require: ApprovalScope,
    /// Runbooks whose runs need approval whatever `require` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runbooks: Vec<String>,
    /// How many distinct people must approve (at least 1; default 1).
    #[serde(default = "ApprovalRule::default_approvals")]
    pub approvals: u32,
    /// Approvers must be members of one of these groups...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_groups: Vec<String>,
    /// ...or hold one of these roles. Neither set: any admin or operator.
    /// The submitter never counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_roles: Vec<Role>,
    /// How long a request waits for its approvals before it expires
    /// (default 3600; at most [`MAX_EXPIRES_IN_SECS`]).
    #[serde(default = "ApprovalRule::default_expires_in")]
    pub expires_in_secs: u64,
    /// Roles that may skip approval with `--break-glass "reason"` (loudly
    /// audited and flagged for review). Default none: no break-glass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub break_glass_roles: Vec<Role>,
}

impl Default for ApprovalRule {
    fn default() -> Self {
        ApprovalRule {
            require: ApprovalScope::None,
            runbooks: Vec::new(),
            approvals: ApprovalRule::default_approvals(),
            from_groups: Vec::new(),
            from_roles: Vec::new(),
            expires_in_secs: ApprovalRule::default_expires_in(),
            break_glass_roles: Vec::new(),
        }
    }
}

/// A rule that cannot be enforced as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl ApprovalRule {
    fn default_approvals() -> u32 {
        1
    }

    fn default_expires_in() -> u64 {
        3600
    }

    /// Whether a run needs approval under this rule: `runbook` is the
    /// runbook it calls (`None` for an ad-hoc command), `with_secrets`
    /// whether it references a secret. A runbook's own rule (its
    /// `approval`, which replaces the target's for its runs) is asked the
    /// same way.
    pub fn applies(&self, runbook: Option<&str>, with_secrets: bool) -> bool {
        if let Some(name) = runbook {
            if self.runbooks.iter().any(|r| r == name) {
                return true;
            }
        }
        match self.require {
            ApprovalScope::None => false,
            ApprovalScope::AdHoc => runbook.is_none(),
            ApprovalScope::AdHocWithSecrets => runbook.is_none() && with_secrets,
            ApprovalScope::All => true,
        }
    }

    /// Whether `role` may skip approval with a reason.
    pub fn allows_break_glass(&self, role: Role) -> bool {
        self.break_glass_roles.contains(&role)
    }

    /// Who may approve, for people: "2 approvals from group dba or role
    /// admin" (the submitter never counts).
    pub fn approvers(&self) -> String {
        let mut from: Vec<String> = self
            .from_groups
            .iter()
            .map(|g| format!("group {g}"))
            .collect();
        from.extend(self.from_roles.iter().map(|r| format!("role {r}")));
        if from.is_empty() {
            "any admin or operator".to_owned()
        } else {
            from.join(" or ")
        }
    }

    /// Checks what the wire types cannot: at least one approval (and at most
    /// [`MAX_APPROVALS`]), an expiry of 1 s to [`MAX_EXPIRES_IN_SECS`],
    /// group and runbook names that are names. Groups need not exist yet
    /// (they may be created after the target); which roles may approve at
    /// all is the control plane's permission table's to say.
    pub fn check(&self) -> Result<(), RuleError> {
        if self.approvals == 0 || self.approvals > MAX_APPROVALS {
            return Err(RuleError(format!(
                "approval.approvals must be 1 to {MAX_APPROVALS} (got {})",
                self.approvals
            )));
        }
        if self.expires_in_secs == 0 || self.expires_in_secs > MAX_EXPIRES_IN_SECS {
            return Err(RuleError(format!(
                "approval.expires_in_secs must be 1 to {MAX_EXPIRES_IN_SECS} (7 days; got {})",
                self.expires_in_secs
            )));
        }
        for g in &self.from_groups {
            crate::names::object("group", g)
                .map_err(|e| RuleError(format!("approval.from_groups: {e}")))?;
        }
        for r in &self.runbooks {
            crate::names::object("runbook", r)
                .map_err(|e| RuleError(format!("approval.runbooks: {e}")))?;
        }
        Ok(())
    }
}
