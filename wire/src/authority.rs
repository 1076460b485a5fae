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
//! use sealrun_wire::authority::{authorize, Authority, Execution, Mandate, RunIntent};
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
//!     key_id: "k1_00".into(), spec: spec.clone(), report_key: None, issued_at_ms: 0, expires_at_ms: 10_000,
//! });
//! let submitter = admin.sign(&UserCertificate {
//!     org: "acme".into(), user: "alice".into(), role: Role::Operator, groups: vec![],
//!     public_key: alice.public_key().to_string(), passkeys: vec![], issued_at_ms: 0, expires_at_ms: 10_000,
//! });
//! let intent = RunIntent {
//!     org: "acme".into(), target: "db".into(), argv: vec!["true".into()],
//!     env: Default::default(), secrets: vec![], image: "busybox".into(),
//!     timeout_secs: 3600, stdin: false, submitter: "alice".into(), break_glass: None,
//!     nonce: "00112233445566778899aabbccddeeff".into(), issued_at_ms: 0, expires_at_ms: 10_000,
//!     runbook: None,
//! };
//! let authority = Authority {
//!     target: Some(target),
//!     runbook: None,
//!     mandate: Mandate::Submitter { run: alice.sign(&intent), certificate: submitter },
//!     approvals: vec![],
//! };
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
use crate::runbook::{RunbookCall, RunbookCertificate, RunbookSpec};
use crate::target::{ResourceLimits, TargetSpec};
use crate::trust::{
    Signed, SignerKey, Statement, TargetCertificate, TrustError, UserCertificate, digest_of,
};
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
    /// The runbook it calls, with the parameters as given: an agent
    /// renders the runbook's admin-signed definition with them and runs it
    /// only if that gives exactly this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<RunbookCall>,
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

/// An approval with its approver's certificate: signed with their key (the
/// CLI) or asserted with one of their certified passkeys (the web console).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedApproval {
    /// The approval, signed with the approver's Ed25519 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Signed<ApprovalStatement>>,
    /// Or the approval asserted with a passkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passkey: Option<PasskeyApproval>,
    /// The approver's certificate.
    pub certificate: Signed<UserCertificate>,
}

/// An [`ApprovalStatement`] asserted with a passkey: the statement's JSON
/// text and the authenticator's signature over its
/// [`challenge`](crate::passkey::challenge).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyApproval {
    /// The statement, as the exact JSON text whose challenge was signed.
    pub statement: String,
    /// The assertion.
    pub assertion: crate::passkey::PasskeyAssertion,
}

impl PasskeyApproval {
    /// The statement, if `certificate` names the passkey that asserted it
    /// and the assertion is that passkey's over it.
    pub fn open(&self, certificate: &UserCertificate) -> Result<ApprovalStatement, String> {
        let passkey = certificate
            .passkeys
            .iter()
            .find(|p| p.credential_id == self.assertion.credential_id)
            .ok_or("the passkey that asserted it is not in the approver's certificate")?;
        let challenge = crate::passkey::challenge(ApprovalStatement::CONTEXT, &self.statement);
        passkey
            .verify(&challenge, &self.assertion)
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&self.statement).map_err(|e| format!("unreadable approval: {e}"))
    }
}

/// Who vouches for a run: the person who submitted it, by their signature,
/// or nobody (a Slack command: Slack holds no one's key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signed_by", rename_all = "snake_case")]
pub enum Mandate {
    /// Signed by its submitter.
    Submitter {
        /// The run, signed.
        run: Signed<RunIntent>,
        /// The submitter's certificate.
        certificate: Signed<UserCertificate>,
    },
    /// Signed by no one: the control plane states the run (a
    /// [`RunIntent`]'s JSON text, whose digest approvals sign). An agent
    /// runs it only as far as admins' signatures allow: a runbook certified
    /// with `allow_slack`, or with the approvals the rule demands.
    Nobody {
        /// The intent, as JSON text.
        intent: String,
    },
}

impl Mandate {
    /// What approvals of the run bind: the digest of its intent's text
    /// (of a stated one, under its own context: an approval of a signed
    /// run never counts for the same text relayed as unsigned).
    pub fn digest(&self) -> String {
        match self {
            Mandate::Submitter { run, .. } => run.digest(),
            Mandate::Nobody { intent } => stated_digest(intent),
        }
    }
}

/// The digest approvals of a stated intent (a run no person signed) bind.
pub fn stated_digest(intent: &str) -> String {
    digest_of(&format!("sealrun stated intent v1\n{intent}"))
}

/// Everything an agent checks before it runs a run, relayed by the control
/// plane with the assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// The target's certificate: key, spec and policy (`None`: no admin
    /// certified the target, and the agent refuses the run).
    pub target: Option<Signed<TargetCertificate>>,
    /// For a runbook run: the runbook's admin-signed definition (its
    /// latest certified version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<Signed<RunbookCertificate>>,
    /// Who vouches for the run.
    pub mandate: Mandate,
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
    /// No admin certified the runbook the run calls.
    #[error(
        "runbook {0} is not certified: an admin runs `sealrun runbook trust {0}` (this agent runs a runbook only as an admin signed it)"
    )]
    RunbookNotCertified(String),
    /// The run is not what the runbook's certified definition renders.
    #[error("the runbook an admin certified does not give this run: {0}")]
    Runbook(String),
    /// No person signed the run, and nothing admins signed allows that.
    #[error(
        "no person signed this run (a Slack command): this agent runs such a run only of a runbook an admin certified with allow_slack, or with the signed approvals its rule demands"
    )]
    UnsignedNotAllowed,
    /// The control plane's statement of an unsigned run cannot be read.
    #[error("the run's stated intent cannot be read: {0}")]
    Unreadable(String),
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
    /// For a runbook run: the runbook's name and when its certified
    /// definition was issued (refused likewise if older than one run
    /// under before).
    pub runbook_certified: Option<(String, i64)>,
    /// Whether the submitter signed it (else a Slack command the
    /// admins' signatures allow).
    pub signed: bool,
}

fn changed(field: &'static str, by: &'static str, detail: String) -> Refusal {
    Refusal::Changed { field, by, detail }
}

const SIGNED: &str = "its submitter signed";
const CERTIFIED: &str = "an admin certified for the target";
const STATED: &str = "the control plane stated";

/// Checks, against the admin keys `trusted`, that `run` is exactly what a
/// certified user signed (or, for a run no person signed, what admins'
/// signatures allow: [`Mandate::Nobody`]), on a target an admin certified
/// with `target_key` (this agent's key for it), within the target's
/// certified spec and policy and, for a runbook run, exactly what the
/// runbook's certified definition renders; with the approvals the rule
/// demands from certified approvers other than the submitter; unexpired at
/// `now_ms`. The caller then refuses a nonce it has seen
/// ([`Authorized::nonce`]) and superseded certificates.
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

    // The run, and who vouches for it: a user a trusted admin certified,
    // or no one.
    let (intent, role) = match &authority.mandate {
        Mandate::Submitter { run, certificate } => {
            let (intent, key) = run.open()?;
            let submitter = certificate.verify(trusted)?;
            submitter.check(&org, &intent.submitter, &key, now_ms)?;
            if !matches!(submitter.role, Role::Admin | Role::Operator) {
                return Err(Refusal::Role {
                    user: submitter.user,
                    role: submitter.role,
                });
            }
            (intent, Some(submitter.role))
        }
        Mandate::Nobody { intent } => {
            let intent: RunIntent =
                serde_json::from_str(intent).map_err(|e| Refusal::Unreadable(e.to_string()))?;
            (intent, None)
        }
    };
    let by = if role.is_some() { SIGNED } else { STATED };
    if intent.org != org {
        return Err(changed("org", by, format!("{} was signed", intent.org)));
    }
    intent.check_matches(run).map_err(|refusal| match refusal {
        Refusal::Changed { field, detail, .. } => changed(field, by, detail),
        other => other,
    })?;
    if intent.expires_at_ms < now_ms {
        return Err(Refusal::Expired(intent.expires_at_ms));
    }
    // No intent counts longer than a signature does: the agent remembers
    // each nonce until its intent expires, so nobody may make that long.
    if intent.expires_at_ms.saturating_sub(intent.issued_at_ms) > RUN_SIGNATURE_TTL_MS {
        return Err(changed(
            "expiry",
            by,
            format!(
                "it is valid for more than {} h",
                RUN_SIGNATURE_TTL_MS / 3_600_000
            ),
        ));
    }
    // What an agent records of it: hex only, so it is one word on a line.
    let nonce_ok = (16..=128).contains(&intent.nonce.len())
        && intent.nonce.bytes().all(|b| b.is_ascii_hexdigit());
    if !nonce_ok {
        return Err(changed(
            "nonce",
            by,
            "it is not 16 to 128 hex digits".into(),
        ));
    }
    if intent.issued_at_ms > now_ms + CLOCK_SKEW_MS {
        return Err(Refusal::FromTheFuture(intent.issued_at_ms));
    }

    // What may run: a runbook as an admin certified it, or an ad-hoc
    // command the target's certified policy allows.
    let policy = &cert.spec.policy;
    let (rule, runbook_certified, slack_allowed) = match &intent.runbook {
        Some(call) => {
            let Some(signed) = &authority.runbook else {
                return Err(Refusal::RunbookNotCertified(call.name.clone()));
            };
            let certified = signed.verify(trusted)?;
            certified.check(&org, &call.name, now_ms)?;
            check_runbook(run, &certified.runbook, call, &cert.spec)?;
            let RunbookCertificate {
                runbook,
                issued_at_ms,
                ..
            } = certified;
            (
                runbook.approval.clone().or_else(|| policy.approval.clone()),
                Some((runbook.name, issued_at_ms)),
                runbook.allow_slack,
            )
        }
        None => {
            if !policy.ad_hoc {
                return Err(Refusal::Policy(
                    "ad-hoc commands are not allowed on this target".into(),
                ));
            }
            if let Some(s) = intent.secrets.iter().find(|s| !policy.ad_hoc_may_use(s)) {
                return Err(Refusal::Policy(format!("secret {s} is for runbooks only")));
            }
            (policy.approval.clone(), None, false)
        }
    };
    let mut authorized = Authorized {
        submitter: intent.submitter.clone(),
        approvers: Vec::new(),
        break_glass: false,
        nonce: intent.nonce.clone(),
        expires_at_ms: intent.expires_at_ms,
        target_certified_at_ms: cert.issued_at_ms,
        runbook_certified,
        signed: role.is_some(),
    };
    let runbook = intent.runbook.as_ref().map(|c| c.name.as_str());
    let needed = rule.filter(|r| r.applies(runbook, !intent.secrets.is_empty()));
    let Some(rule) = needed else {
        // No approval demanded: a person's signature, or the runbook's
        // allowance, is all it takes.
        if role.is_none() && !slack_allowed {
            return Err(Refusal::UnsignedNotAllowed);
        }
        return Ok(authorized);
    };
    if rule.approvals == 0 && role.is_none() && !slack_allowed {
        return Err(Refusal::UnsignedNotAllowed);
    }
    if let Some(role) = role {
        if intent.break_glass.is_some() && rule.allows_break_glass(role) {
            authorized.break_glass = true;
            return Ok(authorized);
        }
    }
    let digest = authority.mandate.digest();
    let mut ignored = Vec::new();
    let mut approvers = BTreeSet::new();
    for given in &authority.approvals {
        match approver(
            given,
            &rule,
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

/// The run is exactly what `runbook`'s certified definition renders for
/// `call` on a target declared as `target`: its argv from the parameters
/// (each within its signed rule), its secrets, image and timeout, no plain
/// environment and no input.
fn check_runbook(
    run: &Execution<'_>,
    runbook: &RunbookSpec,
    call: &RunbookCall,
    target: &TargetSpec,
) -> Result<(), Refusal> {
    let wrong = |what: String| {
        Err(Refusal::Runbook(format!(
            "runbook {}: {what}",
            runbook.name
        )))
    };
    if !runbook.targets.iter().any(|t| t == run.target) {
        return wrong(format!("it does not run on target {}", run.target));
    }
    let argv = crate::runbook::render(runbook, &call.params)
        .map_err(|e| Refusal::Runbook(format!("runbook {}: {e}", runbook.name)))?;
    if run.argv != argv.as_slice() {
        return wrong("its template renders another command".into());
    }
    if !run
        .secrets
        .iter()
        .copied()
        .eq(runbook.secrets.iter().map(String::as_str))
    {
        return wrong("it injects other secrets".into());
    }
    let image = runbook.image.as_deref().unwrap_or(&target.image);
    if run.image != image {
        return wrong(format!("it runs in {image}, not {}", run.image));
    }
    if let Some(max) = runbook.timeout_secs {
        if run.timeout_secs > max {
            return wrong(format!(
                "its timeout is {max} s, not {} s",
                run.timeout_secs
            ));
        }
    }
    if !run.env.is_empty() || run.stdin {
        return wrong("a runbook run takes no plain environment and no input".into());
    }
    Ok(())
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
    let cert = given
        .certificate
        .verify(trusted)
        .map_err(|e| format!("an approver's certificate: {e}"))?;
    let statement = match (&given.approval, &given.passkey) {
        (Some(signed), None) => {
            let (statement, key) = signed.open().map_err(|e| e.to_string())?;
            cert.check(org, &statement.approver, &key, now_ms)
                .map_err(|e| format!("{}: {e}", statement.approver))?;
            statement
        }
        (None, Some(asserted)) => {
            let statement = asserted
                .open(&cert)
                .map_err(|e| format!("{}: {e}", cert.user))?;
            cert.check_holder(org, &statement.approver, now_ms)
                .map_err(|e| format!("{}: {e}", statement.approver))?;
            statement
        }
        _ => return Err("an approval must be signed with one key or one passkey".into()),
    };
    let who = statement.approver.clone();
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
                passkeys: Vec::new(),
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
                runbook: None,
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
                    report_key: None,
                    issued_at_ms: 0,
                    expires_at_ms: NOW * 2,
                })),
                runbook: None,
                mandate: Mandate::Submitter {
                    run: self.alice.sign(intent),
                    certificate: self.user("alice", &self.alice, Role::Operator, &[]),
                },
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
                passkey: None,
                approval: Some(key.sign(&ApprovalStatement {
                    org: "acme".into(),
                    run_digest: authority.mandate.digest(),
                    approver: name.into(),
                    at_ms: NOW,
                })),
                certificate: self.user(name, key, Role::Operator, groups),
            });
        }

        fn check(&self, intent: &RunIntent, authority: &Authority) -> Result<Authorized, Refusal> {
            let run = Execution::of_intent(intent, &self.spec);
            authorize(&run, authority, &[self.admin.public_key()], "K", NOW)
        }
    }

    /// Relays `certificate` as the submitter's.
    fn set_certificate(authority: &mut Authority, certificate: Signed<UserCertificate>) {
        if let Mandate::Submitter { certificate: c, .. } = &mut authority.mandate {
            *c = certificate;
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
        let Mandate::Submitter { run, .. } = &mut authority.mandate else {
            unreachable!()
        };
        *run = SigningKey::generate().sign(&intent);
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
        set_certificate(
            &mut authority,
            forger.user("alice", &w.alice, Role::Admin, &[]),
        );
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
        set_certificate(
            &mut authority,
            w.user("alice", &w.alice, Role::Auditor, &[]),
        );
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

    /// Bob's approval of `authority`'s run, asserted with `authenticator`,
    /// with a certificate naming `certified` passkeys.
    fn approve_with_passkey(
        w: &World,
        authority: &mut Authority,
        authenticator: &crate::passkey::testing::Authenticator,
        certified: Vec<crate::passkey::Passkey>,
    ) {
        use crate::passkey::testing::{ORIGIN, PRESENT_AND_VERIFIED};
        let statement = serde_json::to_string(&ApprovalStatement {
            org: "acme".into(),
            run_digest: authority.mandate.digest(),
            approver: "bob".into(),
            at_ms: NOW,
        })
        .unwrap();
        let challenge = crate::passkey::challenge(ApprovalStatement::CONTEXT, &statement);
        let assertion = authenticator.assert(&challenge, ORIGIN, "localhost", PRESENT_AND_VERIFIED);
        let mut cert = w
            .user("bob", &w.bob, Role::Operator, &["dba"])
            .claimed()
            .unwrap();
        cert.passkeys = certified;
        authority.approvals.push(SignedApproval {
            approval: None,
            passkey: Some(PasskeyApproval {
                statement,
                assertion,
            }),
            certificate: w.admin.sign(&cert),
        });
    }

    /// A world whose rule wants one approval from `dba`, its run, and bob's
    /// authenticator.
    fn one_from_dba_and_bobs_passkey() -> (
        World,
        RunIntent,
        Authority,
        crate::passkey::testing::Authenticator,
    ) {
        let w = World::new().with_rule(ApprovalRule {
            approvals: 1,
            ..two_from_dba()
        });
        let intent = w.intent();
        let authority = w.authority(&intent);
        (
            w,
            intent,
            authority,
            crate::passkey::testing::Authenticator::new(),
        )
    }

    #[test]
    fn an_approval_asserted_with_a_certified_passkey_counts() {
        let (w, intent, mut authority, bobs) = one_from_dba_and_bobs_passkey();
        approve_with_passkey(&w, &mut authority, &bobs, vec![bobs.passkey.clone()]);
        assert_eq!(w.check(&intent, &authority).unwrap().approvers, ["bob"]);
    }

    #[test]
    fn an_approval_asserted_with_a_passkey_the_certificate_does_not_name_does_not_count() {
        let (w, intent, mut authority, bobs) = one_from_dba_and_bobs_passkey();
        // The control plane's own authenticator, presenting bob's credential
        // id: its assertion is well formed, and counts for nothing.
        let forged = crate::passkey::testing::Authenticator::new();
        assert_eq!(forged.passkey.credential_id, bobs.passkey.credential_id);
        approve_with_passkey(&w, &mut authority, &forged, vec![bobs.passkey.clone()]);
        let refused = w.check(&intent, &authority).unwrap_err();
        let Refusal::Approvals {
            valid: 0, ignored, ..
        } = &refused
        else {
            panic!("{refused}");
        };
        assert!(
            ignored.contains("signature is not the certified key"),
            "{ignored}"
        );
    }

    #[test]
    fn a_passkey_assertion_over_another_runs_statement_does_not_count() {
        let (w, intent, mut authority, bobs) = one_from_dba_and_bobs_passkey();
        let mut other = intent.clone();
        other.nonce = "fedcba9876543210".into();
        let mut elsewhere = w.authority(&other);
        approve_with_passkey(&w, &mut elsewhere, &bobs, vec![bobs.passkey.clone()]);
        authority.approvals = elsewhere.approvals;
        let refused = w.check(&intent, &authority).unwrap_err();
        let Refusal::Approvals {
            valid: 0, ignored, ..
        } = &refused
        else {
            panic!("{refused}");
        };
        assert!(ignored.contains("approved another run"), "{ignored}");
    }

    #[test]
    fn an_approval_with_both_a_key_signature_and_a_passkey_does_not_count() {
        let (w, intent, mut authority, bobs) = one_from_dba_and_bobs_passkey();
        approve_with_passkey(&w, &mut authority, &bobs, vec![bobs.passkey.clone()]);
        w.approve(&mut authority, "bob", &w.bob, &["dba"]);
        let keyed = authority.approvals.pop().unwrap();
        authority.approvals[0].approval = keyed.approval;
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Approvals { valid: 0, .. })
        ));
    }

    #[test]
    fn an_approval_of_another_run_does_not_count() {
        let w = World::new().with_rule(ApprovalRule {
            approvals: 1,
            break_glass_roles: vec![Role::Operator],
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
        set_certificate(&mut authority, w.user("alice", &w.alice, Role::Admin, &[]));
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

    /// A runbook `restart` on target db: `systemctl restart {unit}`, the
    /// unit a lower-case word, with secret DB_PASSWORD.
    fn restart(allow_slack: bool) -> RunbookSpec {
        serde_json::from_value(serde_json::json!({
            "name": "restart",
            "targets": ["db"],
            "argv": ["systemctl", "restart", "{unit}"],
            "params": {"unit": {"type": "string", "pattern": "[a-z]+"}},
            "secrets": ["DB_PASSWORD"],
            "allow_slack": allow_slack,
        }))
        .unwrap()
    }

    impl World {
        /// The intent of a call of `restart` with `unit` (argv rendered
        /// as the CLI renders it).
        fn runbook_intent(&self, unit: &str) -> RunIntent {
            RunIntent {
                argv: vec!["systemctl".into(), "restart".into(), unit.into()],
                env: BTreeMap::new(),
                runbook: Some(RunbookCall {
                    name: "restart".into(),
                    params: BTreeMap::from([("unit".into(), unit.into())]),
                }),
                ..self.intent()
            }
        }

        /// `authority` with `runbook` certified by `by`.
        fn certify_runbook(
            &self,
            authority: &mut Authority,
            runbook: RunbookSpec,
            by: &SigningKey,
        ) {
            authority.runbook = Some(by.sign(&RunbookCertificate {
                org: "acme".into(),
                runbook,
                issued_at_ms: 5,
                expires_at_ms: NOW * 2,
            }));
        }

        /// What the control plane would relay for `intent` if no person
        /// signed it (a Slack command).
        fn unsigned(&self, intent: &RunIntent) -> Authority {
            Authority {
                mandate: Mandate::Nobody {
                    intent: serde_json::to_string(intent).unwrap(),
                },
                ..self.authority(intent)
            }
        }
    }

    #[test]
    fn a_signed_runbook_run_is_authorized_exactly_as_its_certified_definition_renders() {
        let w = World::new();
        let intent = w.runbook_intent("nginx");
        let mut authority = w.authority(&intent);
        w.certify_runbook(&mut authority, restart(false), &w.admin);
        let ok = w.check(&intent, &authority).unwrap();
        assert_eq!(ok.runbook_certified, Some(("restart".into(), 5)));
        assert!(ok.signed);
        // A parameter outside its certified rule: refused, even signed.
        let bad = w.runbook_intent("nginx; reboot");
        let mut authority = w.authority(&bad);
        w.certify_runbook(&mut authority, restart(false), &w.admin);
        let refused = w.check(&bad, &authority).unwrap_err();
        assert!(
            matches!(&refused, Refusal::Runbook(m) if m.contains("does not match")),
            "{refused}"
        );
        // A command the template does not render, under the runbook's name.
        let mut other = w.runbook_intent("nginx");
        other.argv = vec!["sh".into(), "-c".into(), "reboot".into()];
        let mut authority = w.authority(&other);
        w.certify_runbook(&mut authority, restart(false), &w.admin);
        assert!(matches!(
            w.check(&other, &authority),
            Err(Refusal::Runbook(_))
        ));
    }

    #[test]
    fn a_runbook_run_without_a_definition_certified_by_a_trusted_admin_is_refused() {
        let w = World::new();
        let intent = w.runbook_intent("nginx");
        let authority = w.authority(&intent);
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::RunbookNotCertified(name)) if name == "restart"
        ));
        let mut authority = w.authority(&intent);
        w.certify_runbook(&mut authority, restart(false), &SigningKey::generate());
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Trust(TrustError::Untrusted { .. }))
        ));
    }

    #[test]
    fn a_run_no_person_signed_runs_only_a_runbook_certified_with_allow_slack() {
        let w = World::new();
        let intent = w.runbook_intent("nginx");
        let mut allowed = w.unsigned(&intent);
        w.certify_runbook(&mut allowed, restart(true), &w.admin);
        let ok = w.check(&intent, &allowed).unwrap();
        assert!(!ok.signed);
        let mut not_allowed = w.unsigned(&intent);
        w.certify_runbook(&mut not_allowed, restart(false), &w.admin);
        assert_eq!(
            w.check(&intent, &not_allowed),
            Err(Refusal::UnsignedNotAllowed)
        );
        // Its parameters are held to the signed rule all the same.
        let bad = w.runbook_intent("nginx; reboot");
        let mut authority = w.unsigned(&bad);
        w.certify_runbook(&mut authority, restart(true), &w.admin);
        assert!(matches!(
            w.check(&bad, &authority),
            Err(Refusal::Runbook(_))
        ));
        // An ad-hoc command no person signed.
        let ad_hoc = w.intent();
        assert_eq!(
            w.check(&ad_hoc, &w.unsigned(&ad_hoc)),
            Err(Refusal::UnsignedNotAllowed)
        );
    }

    #[test]
    fn a_run_no_person_signed_runs_with_the_signed_approvals_its_rule_demands() {
        let w = World::new().with_rule(ApprovalRule {
            approvals: 1,
            break_glass_roles: vec![Role::Operator],
            ..two_from_dba()
        });
        let intent = w.intent();
        let mut authority = w.unsigned(&intent);
        assert!(matches!(
            w.check(&intent, &authority),
            Err(Refusal::Approvals { valid: 0, .. })
        ));
        w.approve(&mut authority, "bob", &w.bob, &["dba"]);
        let ok = w.check(&intent, &authority).unwrap();
        assert_eq!(ok.approvers, vec!["bob".to_owned()]);
        // Break-glass needs a person's signature: a stated reason is not
        // one (the signed run with the same reason is the control).
        let mut glass = w.intent();
        glass.break_glass = Some("outage".into());
        assert!(w.check(&glass, &w.authority(&glass)).unwrap().break_glass);
        assert!(matches!(
            w.check(&glass, &w.unsigned(&glass)),
            Err(Refusal::Approvals { .. })
        ));
    }

    #[test]
    fn an_approval_of_a_signed_run_does_not_count_for_the_same_text_relayed_unsigned() {
        let w = World::new().with_rule(ApprovalRule {
            approvals: 1,
            ..two_from_dba()
        });
        let intent = w.intent();
        let mut signed = w.authority(&intent);
        w.approve(&mut signed, "bob", &w.bob, &["dba"]);
        assert!(
            w.check(&intent, &signed).is_ok(),
            "the control: it counts for the signed run"
        );
        // Bob's approval, and the signed payload's exact text, relayed as
        // a run nobody signed (which skips the submitter's certificate).
        let Mandate::Submitter { run, .. } = &signed.mandate else {
            unreachable!()
        };
        let relayed = Authority {
            mandate: Mandate::Nobody {
                intent: run.payload.clone(),
            },
            ..signed.clone()
        };
        assert!(matches!(
            w.check(&intent, &relayed),
            Err(Refusal::Approvals { valid: 0, .. })
        ));
    }

    #[test]
    fn an_intent_valid_for_longer_than_a_signature_is_refused() {
        let w = World::new();
        let mut intent = w.intent();
        intent.expires_at_ms = intent.issued_at_ms + RUN_SIGNATURE_TTL_MS + 1;
        assert!(matches!(
            w.check(&intent, &w.unsigned(&intent)),
            Err(Refusal::Changed {
                field: "expiry",
                ..
            })
        ));
        intent.expires_at_ms = intent.issued_at_ms + RUN_SIGNATURE_TTL_MS;
        assert!(w.check(&intent, &w.authority(&intent)).is_ok());
    }
}
