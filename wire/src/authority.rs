//! Signed runs: what a person signs to run a command ([`RunIntent`]), what
//! approvers sign ([`ApprovalStatement`]), and the agent's check of both,
//! with the target's admin-signed certificate, against the admin keys in
//! its own configuration ([`authorize`]).
//!
//! The control plane relays all of it with the run ([`Authority`]); it can
//! make none of it. A control plane that injects a run, changes one after it
//! was signed, drops an approval the target's certified policy demands,
//! replays a signed run (the agent remembers nonces: [`Authorized::nonce`])
//! or relays an approval by the submitter gets the run refused, before any
//! secret is opened or container created.
//!
//! ```
//! use sealrun_wire::authority::{authorize, Authority, Execution, RunIntent};
//! use sealrun_wire::role::Role;
//! use sealrun_wire::target::TargetSpec;
//! use sealrun_wire::trust::{SigningKey, TargetCertificate, UserCertificate};
//!
//! let admin = SigningKey::generate();
//! let alice = SigningKey::generate();
//! let spec: TargetSpec =
//!     serde_json::from_str(r#"{"name": "db", "image": "busybox"}"#).unwrap();
//! let target = admin.sign(&TargetCertificate {
//!     org: "acme".into(), target: "db".into(), public_key: "K".into(),
//!     key_id: "k1_00".into(), spec: spec.clone(), issued_at_ms: 0, expires_at_ms: 10_000,
//! });
//! let submitter = admin.sign(&UserCertificate {
//!     org: "acme".into(), user: "alice".into(), role: Role::Operator, groups: vec![],
//!     public_key: alice.public_key().to_string(), issued_at_ms: 0, expires_at_ms: 10_000,
//! });
//! let intent = RunIntent {
//!     org: "acme".into(), target: "db".into(), argv: vec!["true".into()],
//!     env: Default::default(), secrets: vec![], image: "busybox".into(),
//!     timeout_secs: 3600, stdin: false, submitter: "alice".into(), break_glass: None,
//!     nonce: "00112233445566778899aabbccddeeff".into(), issued_at_ms: 0, expires_at_ms: 10_000,
//! };
//! let authority = Authority { target: Some(target), run: alice.sign(&intent), submitter, approvals: vec![] };
//! let mut run = Execution::of_intent(&intent, &spec);
//! let trusted = [admin.public_key()];
//! assert!(authorize(&run, &authority, &trusted, "K", 5_000).is_ok());
//! // The same signature does not cover another command.
//! let changed = vec!["rm".to_owned(), "-rf".to_owned(), "/".to_owned()];
//! run.argv = &changed;
//! assert!(authorize(&run, &authority, &trusted, "K", 5_000).is_err());
//! ```

use crate::role::Role;
use crate::rule::ApprovalRule;
use crate::target::{ResourceLimits, TargetSpec};
use crate::trust::{Signed, SignerKey, Statement, TargetCertificate, TrustError, UserCertificate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How far in the future a signed run's issue time may be (clocks differ).
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// How long the CLI's signature on a run counts: long enough for it to
/// wait for approvals and an agent, short enough that an agent need not
/// remember its nonce for long.
pub const RUN_SIGNATURE_TTL_MS: i64 = 24 * 3600 * 1000;

/// What a person signs to run a command: the exact run, once (`nonce`),
/// until `expires_at_ms`. Its digest ([`Signed::digest`]) is what
/// approvals of the run bind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunIntent {
    /// The org's name.
    pub org: String,
    /// Target name.
    pub target: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Plain environment variables.
    pub env: BTreeMap<String, String>,
    /// Names of the secrets it is given.
    pub secrets: Vec<String>,
    /// Image it runs in.
    pub image: String,
    /// Timeout in seconds.
    pub timeout_secs: u64,
    /// Whether the submitter streams it input.
    pub stdin: bool,
    /// The submitting user's name.
    pub submitter: String,
    /// Break-glass reason: skip the approval the target's rule demands
    /// (only for roles the rule lists).
    pub break_glass: Option<String>,
    /// Random, once per run: an agent runs a signed run at most once.
    pub nonce: String,
    /// Unix milliseconds it was signed.
    pub issued_at_ms: i64,
    /// Unix milliseconds after which no agent starts it.
    pub expires_at_ms: i64,
}

impl RunIntent {
    /// A fresh nonce: 16 random bytes, hex.
    pub fn fresh_nonce() -> String {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        hex::encode(bytes)
    }

    /// Whether `run` is, field by field, what this intent says: the one
    /// list of what a signature binds, for the agent ([`authorize`]) and
    /// for the control plane's check at submit. [`Refusal::Changed`] names
    /// the first field that differs.
    pub fn check_matches(&self, run: &Execution<'_>) -> Result<(), Refusal> {
        let intent = self;
        if run.target != intent.target {
            return Err(changed("target", SIGNED, intent.target.clone()));
        }
        if run.argv != intent.argv.as_slice() {
            return Err(changed("argv", SIGNED, "the command differs".into()));
        }
        if run.env != &intent.env {
            return Err(changed("env", SIGNED, "the environment differs".into()));
        }
        if !run
            .secrets
            .iter()
            .copied()
            .eq(intent.secrets.iter().map(String::as_str))
        {
            return Err(changed("secrets", SIGNED, "the secret list differs".into()));
        }
        if run.image != intent.image {
            return Err(changed(
                "image",
                SIGNED,
                format!("{} was signed", intent.image),
            ));
        }
        if run.timeout_secs != intent.timeout_secs {
            return Err(changed(
                "timeout",
                SIGNED,
                format!("{} s was signed", intent.timeout_secs),
            ));
        }
        if run.stdin != intent.stdin {
            return Err(changed("stdin", SIGNED, "input streaming differs".into()));
        }
        Ok(())
    }
}

impl Statement for RunIntent {
    const KIND: &'static str = "signed run";
    const CONTEXT: &'static [u8] = b"sealrun run v1\n";
}

/// What an approver signs: I approve the run whose signed intent has this
/// digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStatement {
    /// The org's name.
    pub org: String,
    /// [`Signed::digest`] of the run's [`RunIntent`].
    pub run_digest: String,
    /// The approving user's name.
    pub approver: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

impl Statement for ApprovalStatement {
    const KIND: &'static str = "approval";
    const CONTEXT: &'static [u8] = b"sealrun approval v1\n";
}

/// An approval with its approver's certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedApproval {
    /// The approval.
    pub approval: Signed<ApprovalStatement>,
    /// The approver's certificate.
    pub certificate: Signed<UserCertificate>,
}

/// Everything an agent checks before it runs a signed run, relayed by the
/// control plane with the assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// The target's certificate: key, spec and policy (`None`: no admin
    /// certified the target, and the agent refuses the run).
    pub target: Option<Signed<TargetCertificate>>,
    /// The run, signed by its submitter.
    pub run: Signed<RunIntent>,
    /// The submitter's certificate.
    pub submitter: Signed<UserCertificate>,
    /// The approvals given.
    pub approvals: Vec<SignedApproval>,
}

/// The run an agent is about to execute: what it acts on, whatever the
/// control plane says the run is.
#[derive(Clone, Debug)]
pub struct Execution<'a> {
    /// Target name.
    pub target: &'a str,
    /// Image.
    pub image: &'a str,
    /// Command.
    pub argv: &'a [String],
    /// Plain environment.
    pub env: &'a BTreeMap<String, String>,
    /// Secret names, in order.
    pub secrets: Vec<&'a str>,
    /// Timeout.
    pub timeout_secs: u64,
    /// Whether stdin is streamed.
    pub stdin: bool,
    /// Network attached.
    pub network: Option<&'a str>,
    /// User it runs as.
    pub user: Option<&'a str>,
    /// Container limits.
    pub limits: &'a ResourceLimits,
}

impl<'a> Execution<'a> {
    /// The execution a signed intent asks for on a target declared as
    /// `spec` (for tests and examples).
    pub fn of_intent(intent: &'a RunIntent, spec: &'a TargetSpec) -> Execution<'a> {
        Execution {
            target: &intent.target,
            image: &intent.image,
            argv: &intent.argv,
            env: &intent.env,
            secrets: intent.secrets.iter().map(String::as_str).collect(),
            timeout_secs: intent.timeout_secs,
            stdin: intent.stdin,
            network: spec.network.as_deref(),
            user: spec.user.as_deref(),
            limits: &spec.limits,
        }
    }
}

/// Why an agent refuses a run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The run carries no signatures at all.
    #[error(
        "the run is not signed: this agent runs only runs signed by a certified user (sealrun run signs them)"
    )]
    Unsigned,
    /// No admin certified the target.
    #[error(
        "target {0} is not certified: an admin runs `sealrun target trust {0}` (this agent enforces the certified declaration and policy)"
    )]
    TargetNotCertified(String),
    /// A certificate or signature does not hold.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The certified target key is not this agent's.
    #[error(
        "the target certificate is for key {certified}, not this agent's key for target {target}"
    )]
    NotOurKey {
        /// Target name.
        target: String,
        /// The certified key.
        certified: String,
    },
    /// What the agent was handed is not what was signed or certified.
    #[error("the run's {field} is not what {by}: {detail}")]
    Changed {
        /// Which field.
        field: &'static str,
        /// "its submitter signed" or "an admin certified for the target".
        by: &'static str,
        /// What differs.
        detail: String,
    },
    /// The submitter's role does not run commands.
    #[error("user {user} has role {role}, which does not run commands")]
    Role {
        /// User name.
        user: String,
        /// Their certified role.
        role: Role,
    },
    /// The signature on the run is out of date.
    #[error("the run's signature expired (at {0} ms since the Unix epoch)")]
    Expired(i64),
    /// The run claims to be signed in the future.
    #[error("the run's signature is dated in the future ({0} ms since the Unix epoch)")]
    FromTheFuture(i64),
    /// The certified policy forbids it.
    #[error("the target's certified policy forbids it: {0}")]
    Policy(String),
    /// Fewer valid approvals than the certified rule demands.
    #[error("the run needs {needed} approval(s) from {from}; it has {valid}{ignored}")]
    Approvals {
        /// How many the rule demands.
        needed: u32,
        /// Who may approve.
        from: String,
        /// How many count.
        valid: u32,
        /// Why others did not count (`; not counted: ...`), or empty.
        ignored: String,
    },
}

/// What an agent learned from a run it may execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// Who signed it.
    pub submitter: String,
    /// Who approved it (counted approvals).
    pub approvers: Vec<String>,
    /// Whether it skipped approval by break-glass.
    pub break_glass: bool,
    /// Its nonce: the agent refuses a nonce it has run before.
    pub nonce: String,
    /// Until when the agent must remember the nonce.
    pub expires_at_ms: i64,
    /// When the target's certificate was issued: an agent refuses a
    /// certificate older than one it already ran a run under (a control
    /// plane replaying a looser, still unexpired declaration).
    pub target_certified_at_ms: i64,
}

fn changed(field: &'static str, by: &'static str, detail: String) -> Refusal {
    Refusal::Changed { field, by, detail }
}

const SIGNED: &str = "its submitter signed";
const CERTIFIED: &str = "an admin certified for the target";

/// Checks, against the admin keys `trusted`, that `run` is exactly what a
/// certified user signed, on a target an admin certified with `target_key`
/// (this agent's key for it), within the target's certified spec and
/// policy, with the approvals that policy demands from certified
/// approvers other than the submitter, and unexpired at `now_ms`. The
/// caller then refuses a nonce it has seen ([`Authorized::nonce`]).
pub fn authorize(
    run: &Execution<'_>,
    authority: &Authority,
    trusted: &[SignerKey],
    target_key: &str,
    now_ms: i64,
) -> Result<Authorized, Refusal> {
    // The target: certified by a trusted admin, for this agent's key.
    let Some(target) = &authority.target else {
        return Err(Refusal::TargetNotCertified(run.target.to_owned()));
    };
    let cert = target.verify(trusted)?;
    let org = cert.org.clone();
    cert.check(&org, run.target, now_ms)?;
    if cert.public_key != target_key {
        return Err(Refusal::NotOurKey {
            target: run.target.to_owned(),
            certified: cert.key_id,
        });
    }
    check_spec(run, &cert.spec)?;

    // The run: signed by a user a trusted admin certified.
    let (intent, key) = authority.run.open()?;
    let submitter = authority.submitter.verify(trusted)?;
    submitter.check(&org, &intent.submitter, &key, now_ms)?;
    if !matches!(submitter.role, Role::Admin | Role::Operator) {
        return Err(Refusal::Role {
            user: submitter.user,
            role: submitter.role,
        });
    }
    if intent.org != org {
        return Err(changed("org", SIGNED, format!("{} was signed", intent.org)));
    }
    intent.check_matches(run)?;
    if intent.expires_at_ms < now_ms {
        return Err(Refusal::Expired(intent.expires_at_ms));
    }
    // What an agent records of it: hex only, so it is one word on a line.
    let nonce_ok = (16..=128).contains(&intent.nonce.len())
        && intent.nonce.bytes().all(|b| b.is_ascii_hexdigit());
    if !nonce_ok {
        return Err(changed(
            "nonce",
            SIGNED,
            "it is not 16 to 128 hex digits".into(),
        ));
    }
    if intent.issued_at_ms > now_ms + CLOCK_SKEW_MS {
        return Err(Refusal::FromTheFuture(intent.issued_at_ms));
    }

    // The policy it was certified with.
    let policy = &cert.spec.policy;
    if !policy.ad_hoc {
        return Err(Refusal::Policy(
            "ad-hoc commands are not allowed on this target".into(),
        ));
    }
    if let Some(s) = intent.secrets.iter().find(|s| !policy.ad_hoc_may_use(s)) {
        return Err(Refusal::Policy(format!("secret {s} is for runbooks only")));
    }
    let mut authorized = Authorized {
        submitter: intent.submitter.clone(),
        approvers: Vec::new(),
        break_glass: false,
        nonce: intent.nonce.clone(),
        expires_at_ms: intent.expires_at_ms,
        target_certified_at_ms: cert.issued_at_ms,
    };
    let Some(rule) = &policy.approval else {
        return Ok(authorized);
    };
    if !rule.applies(None, !intent.secrets.is_empty()) {
        return Ok(authorized);
    }
    if intent.break_glass.is_some() && rule.allows_break_glass(submitter.role) {
        authorized.break_glass = true;
        return Ok(authorized);
    }
    let digest = authority.run.digest();
    let mut ignored = Vec::new();
    let mut approvers = BTreeSet::new();
    for given in &authority.approvals {
        match approver(
            given,
            rule,
            trusted,
            &org,
            &digest,
            &intent.submitter,
            now_ms,
        ) {
            Ok(name) => {
                approvers.insert(name);
            }
            Err(why) => ignored.push(why),
        }
    }
    let valid = u32::try_from(approvers.len()).unwrap_or(u32::MAX);
    if valid < rule.approvals {
        return Err(Refusal::Approvals {
            needed: rule.approvals,
            from: rule.approvers(),
            valid,
            ignored: if ignored.is_empty() {
                String::new()
            } else {
                format!("; not counted: {}", ignored.join("; "))
            },
        });
    }
    authorized.approvers = approvers.into_iter().collect();
    Ok(authorized)
}

/// The approver's name, if `given` counts under `rule`; else why not.
fn approver(
    given: &SignedApproval,
    rule: &ApprovalRule,
    trusted: &[SignerKey],
    org: &str,
    digest: &str,
    submitter: &str,
    now_ms: i64,
) -> Result<String, String> {
    let (statement, key) = given.approval.open().map_err(|e| e.to_string())?;
    let who = statement.approver.clone();
    let cert = given
        .certificate
        .verify(trusted)
        .map_err(|e| format!("{who}: {e}"))?;
    cert.check(org, &who, &key, now_ms)
        .map_err(|e| format!("{who}: {e}"))?;
    if statement.org != org || statement.run_digest != digest {
        return Err(format!("{who}: approved another run"));
    }
    if who == submitter {
        return Err(format!("{who}: the submitter never approves their own run"));
    }
    let eligible = if rule.from_groups.is_empty() && rule.from_roles.is_empty() {
        matches!(cert.role, Role::Admin | Role::Operator)
    } else {
        rule.from_roles.contains(&cert.role)
            || cert.groups.iter().any(|g| rule.from_groups.contains(g))
    };
    if !eligible {
        return Err(format!("{who}: not among {}", rule.approvers()));
    }
    Ok(who)
}

/// The run stays within the target's certified spec.
fn check_spec(run: &Execution<'_>, spec: &TargetSpec) -> Result<(), Refusal> {
    let allowed = spec.effective_images();
    if !crate::image::allows(&allowed, run.image).unwrap_or(false) {
        return Err(changed(
            "image",
            CERTIFIED,
            format!("{} is not among {}", run.image, allowed.join(", ")),
        ));
    }
    if run.network != spec.network.as_deref() {
        return Err(changed("network", CERTIFIED, format!("{:?}", run.network)));
    }
    if run.user != spec.user.as_deref() {
        return Err(changed("user", CERTIFIED, format!("{:?}", run.user)));
    }
    if run.limits != &spec.limits {
        return Err(changed("limits", CERTIFIED, format!("{:?}", run.limits)));
    }
    if run.timeout_secs > spec.timeout_secs {
        return Err(changed(
            "timeout",
            CERTIFIED,
            format!("{} s is over {} s", run.timeout_secs, spec.timeout_secs),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rule::ApprovalScope;
    use crate::trust::SigningKey;

    struct World {
        admin: SigningKey,
        alice: SigningKey,
        bob: SigningKey,
        carol: SigningKey,
        spec: TargetSpec,
    }

    const NOW: i64 = 1_000_000;

    impl World {
        fn new() -> World {
            World {
                admin: SigningKey::generate(),
                alice: SigningKey::generate(),
                bob: SigningKey::generate(),
                carol: SigningKey::generate(),
                spec: serde_json::from_str(r#"{"name": "db", "image": "busybox"}"#).unwrap(),
            }
        }

        fn with_rule(mut self, rule: ApprovalRule) -> World {
            self.spec.policy.approval = Some(rule);
            self
        }

        fn user(
            &self,
            name: &str,
            key: &SigningKey,
            role: Role,
            groups: &[&str],
        ) -> Signed<UserCertificate> {
            self.admin.sign(&UserCertificate {
                org: "acme".into(),
                user: name.into(),
                role,
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                public_key: key.public_key().to_string(),
                issued_at_ms: 0,
                expires_at_ms: NOW * 2,
            })
        }

        fn intent(&self) -> RunIntent {
            RunIntent {
                org: "acme".into(),
                target: "db".into(),
                argv: vec!["psql".into(), "-c".into(), "select 1".into()],
                env: BTreeMap::from([("PGHOST".into(), "db".into())]),
                secrets: vec!["DB_PASSWORD".into()],
                image: "busybox".into(),
                timeout_secs: 600,
                stdin: false,
                submitter: "alice".into(),
                break_glass: None,
                nonce: "0123456789abcdef".into(),
                issued_at_ms: NOW - 10,
                expires_at_ms: NOW + 10,
            }
        }

        fn authority(&self, intent: &RunIntent) -> Authority {
            Authority {
                target: Some(self.admin.sign(&TargetCertificate {
                    org: "acme".into(),
                    target: "db".into(),
                    public_key: "K".into(),
                    key_id: "k1_00".into(),
                    spec: self.spec.clone(),
                    issued_at_ms: 0,
                    expires_at_ms: NOW * 2,
                })),
                run: self.alice.sign(intent),
                submitter: self.user("alice", &self.alice, Role::Operator, &[]),
                approvals: Vec::new(),
            }
        }

        fn approve(
            &self,
            authority: &mut Authority,
            name: &str,
            key: &SigningKey,
            groups: &[&str],
        ) {
            authority.approvals.push(SignedApproval {
                approval: key.sign(&ApprovalStatement {
                    org: "acme".into(),
                    run_digest: authority.run.digest(),
                    approver: name.into(),
                    at_ms: NOW,
                }),
                certificate: self.user(name, key, Role::Operator, groups),
            });
        }

        fn check(&self, intent: &RunIntent, authority: &Authority) -> Result<Authorized, Refusal> {
            let run = Execution::of_intent(intent, &self.spec);
            authorize(&run, authority, &[self.admin.public_key()], "K", NOW)
        }
    }

    fn two_from_dba() -> ApprovalRule {
        ApprovalRule {
            require: ApprovalScope::AdHoc,
            approvals: 2,
            from_groups: vec!["dba".into()],
            ..ApprovalRule::default()
        }
    }

    #[test]
    fn a_run_signed_by_a_certified_operator_is_authorized() {
        let w = World::new();
        let intent = w.intent();
        let ok = w.check(&intent, &w.authority(&intent)).unwrap();
        assert_eq!(ok.submitter, "alice");
        assert_eq!(ok.nonce, "0123456789abcdef");
    }

    #[test]
    fn every_field_the_agent_acts_on_is_covered_by_the_signature() {
        let w = World::new();
        let signed = w.intent();
        let authority = w.authority(&signed);
        type Change = Box<dyn Fn(&mut RunIntent)>;
        let cases: Vec<(&str, Change)> = vec![
            ("argv", Box::new(|i| i.argv.push("; drop table x".into()))),
            (
                "env",
                Box::new(|i| {
                    i.env.insert("LD_PRELOAD".into(), "/x".into());
                }),
            ),
            ("secrets", Box::new(|i| i.secrets.push("ROOT_KEY".into()))),
            ("image", Box::new(|i| i.image = "busybox:evil".into())),
            ("timeout", Box::new(|i| i.timeout_secs = 601)),
            ("stdin", Box::new(|i| i.stdin = true)),
            ("target", Box::new(|i| i.target = "web".into())),
        ];
        for (field, change) in cases {
            let mut executed = signed.clone();
            change(&mut executed);
            let refused = w.check(&executed, &authority).unwrap_err();
            assert!(
                matches!(&refused, Refusal::Changed { field: f, .. } if *f == field)
                    || (field == "target" && matches!(refused, Refusal::Trust(_)))
                    || (field == "image"
                        && matches!(refused, Refusal::Changed { field: "image", .. })),
                "{field}: {refused}"
            );
        }
    }

    #[test]
    fn a_run_signed_by_an_uncertified_key_is_refused() {
        let w = World::new();
        let intent = w.intent();
        let mut authority = w.authority(&intent);
        // Mallory signs with her own key and relays alice's certificate.
        authority.run = SigningKey::generate().sign(&intent);
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Trust(TrustError::Mismatch { what: "key", .. }))
        ));
    }

    #[test]
    fn a_certificate_made_by_anyone_but_a_trusted_admin_is_refused() {
        let w = World::new();
        let intent = w.intent();
        let mut authority = w.authority(&intent);
        let forger = World {
            admin: SigningKey::generate(),
            ..World::new()
        };
        authority.submitter = forger.user("alice", &w.alice, Role::Admin, &[]);
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Trust(TrustError::Untrusted { .. }))
        ));
    }

    #[test]
    fn an_auditor_cannot_run_commands_even_with_a_valid_signature() {
        let w = World::new();
        let intent = w.intent();
        let mut authority = w.authority(&intent);
        authority.submitter = w.user("alice", &w.alice, Role::Auditor, &[]);
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Role { .. })
        ));
    }

    #[test]
    fn an_expired_signature_is_refused() {
        let w = World::new();
        let mut intent = w.intent();
        intent.expires_at_ms = NOW - 1;
        assert_eq!(
            w.check(&intent, &w.authority(&intent)),
            Err(Refusal::Expired(NOW - 1))
        );
    }

    #[test]
    fn a_run_needing_approval_counts_only_eligible_approvers_other_than_the_submitter() {
        let w = World::new().with_rule(two_from_dba());
        let intent = w.intent();
        let mut authority = w.authority(&intent);
        // The submitter approving herself, through a certificate in dba.
        w.approve(&mut authority, "alice", &w.alice, &["dba"]);
        w.approve(&mut authority, "bob", &w.bob, &["dba"]);
        let refused = w.check(&intent, &authority).unwrap_err();
        let Refusal::Approvals { valid, ignored, .. } = &refused else {
            panic!("{refused}");
        };
        assert_eq!(*valid, 1);
        assert!(
            ignored.contains("the submitter never approves"),
            "{ignored}"
        );
        // Outside the groups: not counted either.
        w.approve(&mut authority, "carol", &w.carol, &["web"]);
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Approvals { valid: 1, .. })
        ));
        // Positive control: carol in dba makes two.
        authority.approvals.pop();
        w.approve(&mut authority, "carol", &w.carol, &["dba"]);
        let ok = w.check(&intent, &authority).unwrap();
        assert_eq!(ok.approvers, ["bob", "carol"]);
    }

    #[test]
    fn an_approval_of_another_run_does_not_count() {
        let w = World::new().with_rule(ApprovalRule {
            approvals: 1,
            ..two_from_dba()
        });
        let intent = w.intent();
        let mut authority = w.authority(&intent);
        let mut other = intent.clone();
        other.nonce = "fedcba9876543210".into();
        let mut elsewhere = w.authority(&other);
        w.approve(&mut elsewhere, "bob", &w.bob, &["dba"]);
        authority.approvals = elsewhere.approvals;
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Approvals { valid: 0, .. })
        ));
    }

    #[test]
    fn break_glass_skips_approval_only_for_the_roles_the_certified_rule_names() {
        let rule = ApprovalRule {
            break_glass_roles: vec![Role::Admin],
            ..two_from_dba()
        };
        let w = World::new().with_rule(rule);
        let mut intent = w.intent();
        intent.break_glass = Some("outage".into());
        let mut authority = w.authority(&intent);
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Approvals { .. })
        ));
        authority.submitter = w.user("alice", &w.alice, Role::Admin, &[]);
        assert!(w.check(&intent, &authority).unwrap().break_glass);
    }

    #[test]
    fn the_certified_policy_and_spec_bind_what_the_control_plane_hands_out() {
        let mut w = World::new();
        w.spec.policy.runbook_only_secrets = vec!["DB_PASSWORD".into()];
        let intent = w.intent();
        assert!(matches!(
            w.check(&intent, &w.authority(&intent)),
            Err(Refusal::Policy(_))
        ));
        w.spec.policy.runbook_only_secrets.clear();
        let authority = w.authority(&intent);
        // A network the admin did not certify.
        let mut run = Execution::of_intent(&intent, &w.spec);
        run.network = Some("host");
        assert!(matches!(
            authorize(&run, &authority, &[w.admin.public_key()], "K", NOW),
            Err(Refusal::Changed {
                field: "network",
                ..
            })
        ));
        // Another agent's key.
        let run = Execution::of_intent(&intent, &w.spec);
        assert!(matches!(
            authorize(&run, &authority, &[w.admin.public_key()], "other", NOW),
            Err(Refusal::NotOurKey { .. })
        ));
    }
}
