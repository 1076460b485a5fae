//! Four-eyes approvals: the rule a target (or a runbook) declares, the
//! digest that binds an approval to one exact run specification, and what
//! `GET /v1/approvals...` answers.
//!
//! An approval is given for a *digest*: SHA-256 over a canonical encoding of
//! everything that decides what a run does ([`RunSpec`]). The control plane
//! computes it when the run is submitted and stores it with the run; an
//! approver's client recomputes it from the spec it showed and sends it
//! back, and the control plane refuses an approval whose digest is not the
//! run's. A run's spec never changes after submit, so changing anything is a
//! new run, with its own digest and its own approvals.
//!
//! The encoding ([`RunSpec::canonical`]) is length-prefixed, so no two specs
//! encode alike: a domain tag `sealrun-run-spec-v1`, then each field in a
//! fixed order, every string as its UTF-8 length (8 bytes, big-endian) and
//! bytes, every list as its element count (8 bytes) and elements, a map as
//! its pair count and each name then value (in name order), integers as 8
//! bytes big-endian (the user id as two's complement), an option as one
//! byte `0` (absent) or `1` followed by its value, a flag as one byte.

use crate::run::RunStatus;

pub use crate::rule::{ApprovalRule, ApprovalScope, MAX_APPROVALS, MAX_EXPIRES_IN_SECS, RuleError};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// A runbook a run calls, and the version it called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookRef {
    /// Runbook name.
    pub name: String,
    /// Its version when the run was submitted.
    pub version: u64,
}

/// Everything that decides what a run does, as an approver approves it:
/// the input of the spec digest ([`RunSpec::digest`]). Environment values
/// are shown (they are not secrets); secrets by name only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The org's name.
    pub org: String,
    /// Target name.
    pub target: String,
    /// The command and its arguments, exactly as the agent runs them.
    pub argv: Vec<String>,
    /// Plain environment variables, names and values.
    pub env: BTreeMap<String, String>,
    /// Names of the secrets it is given.
    pub secrets: Vec<String>,
    /// Image it runs in.
    pub image: String,
    /// Timeout in seconds.
    pub timeout_secs: u64,
    /// The runbook it calls, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<RunbookRef>,
    /// The id of the user who submitted it.
    pub submitter_user_id: i64,
    /// Whether the submitter streams it input.
    pub stdin: bool,
}

impl RunSpec {
    /// The canonical encoding (see the module docs).
    pub fn canonical(&self) -> Vec<u8> {
        fn str(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        fn count(out: &mut Vec<u8>, n: usize) {
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mut out = Vec::with_capacity(256);
        str(&mut out, "sealrun-run-spec-v1");
        str(&mut out, &self.org);
        str(&mut out, &self.target);
        count(&mut out, self.argv.len());
        for a in &self.argv {
            str(&mut out, a);
        }
        count(&mut out, self.env.len());
        for (name, value) in &self.env {
            str(&mut out, name);
            str(&mut out, value);
        }
        count(&mut out, self.secrets.len());
        for s in &self.secrets {
            str(&mut out, s);
        }
        str(&mut out, &self.image);
        out.extend_from_slice(&self.timeout_secs.to_be_bytes());
        match &self.runbook {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                str(&mut out, &r.name);
                out.extend_from_slice(&r.version.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.submitter_user_id.to_be_bytes());
        out.push(u8::from(self.stdin));
        out
    }

    /// `sha256:<hex>` of [`RunSpec::canonical`].
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.canonical())))
    }
}

/// One person's approval of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalGiven {
    /// The approver's user name.
    pub user: String,
    /// The approver's user id.
    pub user_id: i64,
    /// The digest they approved (always the run's).
    pub digest: String,
    /// What they said, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Why a request was rejected, and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The rejecting user's name.
    pub user: String,
    /// Their reason.
    pub reason: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A run that skipped approval by break-glass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// The reason its submitter gave.
    pub reason: String,
    /// Always `true`: a break-glass run is to be reviewed afterwards.
    pub review_required: bool,
}

/// An approval request: a run that needed (or skipped) approval, with the
/// full spec being approved (`GET /v1/approvals/{run_id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// The run's id.
    pub run_id: String,
    /// The run's status now (`pending_approval` while it waits).
    pub status: RunStatus,
    /// What is approved.
    pub spec: RunSpec,
    /// [`RunSpec::digest`] of `spec`, as stored with the run at submit.
    pub digest: String,
    /// Who submitted it (name).
    pub submitter: String,
    /// Unix milliseconds it was submitted.
    pub created_at_ms: i64,
    /// The rule that applied (for a break-glass run: the rule it skipped).
    pub rule: ApprovalRule,
    /// Approvals the rule demands.
    pub required: u32,
    /// Approvals given so far, oldest first.
    pub approvals: Vec<ApprovalGiven>,
    /// Who may still approve, for people ("group dba or role admin").
    pub approvers: String,
    /// Unix milliseconds after which a pending request expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Set when it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// Set when its submitter skipped approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// The run as its submitter signed it, if they did: then `digest` is
    /// this intent's digest, and an approver's client shows and signs what
    /// it says, not `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<crate::trust::Signed<crate::authority::RunIntent>>,
    /// For a run no person signed (a Slack command): the intent the
    /// control plane stated for it, as JSON text (a
    /// [`crate::authority::RunIntent`]). Then `digest` is its digest
    /// ([`crate::trust::digest_of`]), and an approver's client shows and
    /// signs what it says, as for a signed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stated: Option<String>,
}

impl ApprovalView {
    /// How many more approvals it needs.
    pub fn remaining(&self) -> u32 {
        self.required
            .saturating_sub(u32::try_from(self.approvals.len()).unwrap_or(u32::MAX))
    }
}

/// `GET /v1/approvals`, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalList {
    /// The requests.
    pub approvals: Vec<ApprovalView>,
}

/// `POST /v1/approvals/{run_id}/approve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The digest of the spec the approver was shown; refused (`409`) unless
    /// it is the run's.
    pub digest: String,
    /// Optional note, recorded in the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The approval signed with the approver's certified key, over the
    /// digest of the run's signed intent: an agent with a trust file counts
    /// only signed approvals of a signed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<crate::trust::Signed<crate::authority::ApprovalStatement>>,
    /// Or the approval asserted with one of the approver's certified
    /// passkeys (the web console): counted as a signed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passkey: Option<crate::authority::PasskeyApproval>,
}

/// `POST /v1/approvals/{run_id}/reject`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Why (mandatory, not blank).
    pub reason: String,
}

/// How the error of a run whose approval expired begins (a run that
/// expired in the queue says otherwise), so clients tell the two apart.
pub const APPROVAL_EXPIRED: &str = "expired: approval";

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec {
            org: "acme".into(),
            target: "prod-db".into(),
            argv: vec!["psql".into(), "-c".into(), "select 1".into()],
            env: BTreeMap::from([("PGDATABASE".into(), "app".into())]),
            secrets: vec!["DB_PASSWORD".into()],
            image: "postgres:16".into(),
            timeout_secs: 300,
            runbook: None,
            submitter_user_id: 7,
            stdin: false,
        }
    }

    /// One change to a spec.
    type Change = Box<dyn Fn(&mut RunSpec)>;

    #[test]
    fn every_field_of_the_spec_changes_the_digest() {
        let base = spec();
        let changes: Vec<(&str, Change)> = vec![
            ("org", Box::new(|s| s.org = "acme2".into())),
            ("target", Box::new(|s| s.target = "prod-db2".into())),
            ("argv element", Box::new(|s| s.argv[2] = "select 2".into())),
            ("argv length", Box::new(|s| s.argv.push(String::new()))),
            (
                "env value",
                Box::new(|s| {
                    s.env.insert("PGDATABASE".into(), "other".into());
                }),
            ),
            (
                "env name",
                Box::new(|s| {
                    s.env = BTreeMap::from([("PGDATABASF".into(), "app".into())]);
                }),
            ),
            (
                "env added",
                Box::new(|s| {
                    s.env.insert("A".into(), String::new());
                }),
            ),
            ("secret", Box::new(|s| s.secrets = vec!["DB_ADMIN".into()])),
            ("no secret", Box::new(|s| s.secrets.clear())),
            ("image", Box::new(|s| s.image = "postgres:17".into())),
            ("timeout", Box::new(|s| s.timeout_secs = 301)),
            (
                "runbook",
                Box::new(|s| {
                    s.runbook = Some(RunbookRef {
                        name: "q".into(),
                        version: 1,
                    });
                }),
            ),
            ("submitter", Box::new(|s| s.submitter_user_id = 8)),
            ("stdin", Box::new(|s| s.stdin = true)),
        ];
        let digest = base.digest();
        assert_eq!(digest, spec().digest(), "the digest is deterministic");
        for (what, change) in changes {
            let mut changed = spec();
            change(&mut changed);
            assert_ne!(
                changed.digest(),
                digest,
                "changing the {what} kept the digest"
            );
        }
        // The runbook's version matters too, not only its name.
        let mut v1 = spec();
        v1.runbook = Some(RunbookRef {
            name: "q".into(),
            version: 1,
        });
        let mut v2 = v1.clone();
        v2.runbook = Some(RunbookRef {
            name: "q".into(),
            version: 2,
        });
        assert_ne!(v1.digest(), v2.digest());
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_digest() {
        // Length prefixes: ["ab", "c"] and ["a", "bc"] differ, and so do an
        // argv element and an env pair holding the same text.
        let mut a = spec();
        a.argv = vec!["ab".into(), "c".into()];
        let mut b = spec();
        b.argv = vec!["a".into(), "bc".into()];
        assert_ne!(a.digest(), b.digest());
        let mut c = spec();
        c.org = "acmeprod-db".into();
        c.target = String::new();
        assert_ne!(c.digest(), spec().digest());
    }

    #[test]
    fn the_digest_is_sha256_of_the_canonical_encoding() {
        let s = spec();
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(s.canonical())));
        assert_eq!(s.digest(), expected);
        assert!(
            s.canonical()
                .starts_with(b"\0\0\0\0\0\0\0\x13sealrun-run-spec-v1")
        );
    }

    #[test]
    fn which_runs_a_rule_applies_to() {
        let rule = |require| ApprovalRule {
            require,
            runbooks: vec!["migrate".into()],
            ..ApprovalRule::default()
        };
        let none = rule(ApprovalScope::None);
        assert!(!none.applies(None, true));
        assert!(none.applies(Some("migrate"), false), "listed runbook");
        assert!(!none.applies(Some("report"), false));
        let ad_hoc = rule(ApprovalScope::AdHoc);
        assert!(ad_hoc.applies(None, false));
        assert!(!ad_hoc.applies(Some("report"), true));
        let secrets = rule(ApprovalScope::AdHocWithSecrets);
        assert!(secrets.applies(None, true));
        assert!(!secrets.applies(None, false));
        assert!(!secrets.applies(Some("report"), true));
        let all = rule(ApprovalScope::All);
        assert!(all.applies(Some("report"), false));
        assert!(all.applies(None, false));
    }

    #[test]
    fn a_rule_needs_at_least_one_approval_and_a_bounded_expiry() {
        assert!(ApprovalRule::default().check().is_ok());
        let zero = ApprovalRule {
            approvals: 0,
            ..ApprovalRule::default()
        };
        assert!(zero.check().unwrap_err().0.contains("approvals must be 1"));
        let long = ApprovalRule {
            expires_in_secs: MAX_EXPIRES_IN_SECS + 1,
            ..ApprovalRule::default()
        };
        assert!(long.check().unwrap_err().0.contains("expires_in_secs"));
        let bad_group = ApprovalRule {
            from_groups: vec!["DBA team".into()],
            ..ApprovalRule::default()
        };
        assert!(bad_group.check().unwrap_err().0.contains("from_groups"));
    }

    #[test]
    fn a_rule_reads_from_toml_shaped_json_with_defaults() {
        let rule: ApprovalRule =
            serde_json::from_str(r#"{"require": "ad_hoc_with_secrets", "from_groups": ["dba"]}"#)
                .unwrap();
        assert_eq!(rule.approvals, 1);
        assert_eq!(rule.expires_in_secs, 3600);
        assert!(rule.break_glass_roles.is_empty());
        assert_eq!(rule.approvers(), "group dba");
        assert!(serde_json::from_str::<ApprovalRule>(r#"{"from_roles": ["root"]}"#).is_err());
        assert!(serde_json::from_str::<ApprovalRule>(r#"{"aprovals": 2}"#).is_err());
    }
}
