//! Signed runs, as the control plane handles them: it stores and relays
//! what people sign, and checks only that it is consistent, so a client's
//! mistake is a clear `400` now rather than a refusal by the agent later.
//! It trusts none of it: the agent checks everything again, against the
//! admin keys in its own trust file (`sealrun_wire::authority`).
//!
//! - A signed run ([`check_intent`]) must say exactly what the request
//!   asks for and be signed with the key an admin certified for its
//!   submitter; its digest is then what approvals bind.
//! - A run no person signs (a Slack command) gets an intent stated here
//!   ([`state_intent`]): approvers sign its digest, and an agent with a
//!   trust file runs it only as far as admins' signatures allow (a runbook
//!   certified with `allow_slack`, or the signed approvals its rule
//!   demands).
//! - A signed approval ([`check_approval`]) must be the approver's, with
//!   their certified key, over that digest. (An unsigned one is recorded,
//!   and not counted by an agent with a trust file.)
//! - At hand-out, the signatures travel with the assignment ([`authority`]),
//!   with the certificate of the runbook version a runbook run calls.

use crate::error::Error;
use crate::store::{self, Tx};
use sealrun_wire::authority::{
    ApprovalStatement, Authority, Execution, Mandate, PasskeyApproval, RUN_SIGNATURE_TTL_MS,
    Refusal, RunIntent, SignedApproval, stated_digest,
};
use sealrun_wire::run::RunbookCall;
use sealrun_wire::target::TargetSpec;
use sealrun_wire::trust::{Signed, SignerKey, UserCertificate};

/// A signed run checked for consistency: what to store with it.
pub(crate) struct SignedRun {
    /// The signed intent (JSON).
    pub(crate) intent: String,
    /// The submitter's certificate (JSON), as it is now.
    pub(crate) certificate: String,
    /// The intent's digest: what approvals bind.
    pub(crate) digest: String,
}

fn mismatch(field: &str, detail: impl std::fmt::Display) -> Error {
    Error::Invalid(format!(
        "the signed run does not match the request: its {field} {detail}; sign exactly what you submit"
    ))
}

/// The certificate an admin gave user `user_id` (named `name`), if its key
/// is `key`; else why the signature cannot count.
fn certified(
    tx: &Tx<'_>,
    user_id: i64,
    name: &str,
    key: &SignerKey,
) -> Result<(String, UserCertificate), Error> {
    let not_certified = || {
        Error::Invalid(format!(
            "user {name}'s signing key {} is not certified: an admin runs `sealrun user certify {name} --key {key}`",
            key.fingerprint()
        ))
    };
    let json = store::users::certificate(tx, user_id)?.ok_or_else(not_certified)?;
    // Its signature was checked when it was stored (`certify_user`); who
    // signed it is for agents to judge. Not checked again on every submit.
    let signed: Signed<UserCertificate> = serde_json::from_str(&json)?;
    let cert = signed
        .claimed()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if cert.public_key != key.to_string() {
        return Err(not_certified());
    }
    Ok((json, cert))
}

/// The public key an admin certified for user `user_id`, if any (as the
/// certificate names it; whether that admin is trusted is for agents).
pub(crate) fn certified_key(tx: &Tx<'_>, user_id: i64) -> Result<Option<String>, Error> {
    let Some(json) = store::users::certificate(tx, user_id)? else {
        return Ok(None);
    };
    let signed: Signed<UserCertificate> = serde_json::from_str(&json)?;
    Ok(signed.claimed().ok().map(|cert| cert.public_key))
}

/// Checks that `signed` says exactly what `run` (on a target declared as
/// `target`, calling `runbook`, with `break_glass`) is, by the agent's own
/// rule ([`RunIntent::check_matches`]), signed by its submitter, user
/// `user_id`, with their certified key, unexpired.
pub(crate) fn check_intent(
    tx: &Tx<'_>,
    signed: &Signed<RunIntent>,
    run: &store::runs::NewRun<'_>,
    runbook: Option<&RunbookCall>,
    target: &TargetSpec,
    user_id: i64,
    break_glass: Option<&str>,
) -> Result<SignedRun, Error> {
    let (intent, key) = signed.open().map_err(|e| Error::Invalid(e.to_string()))?;
    let org = store::approvals::org_name(tx, run.org_id)?;
    let name = store::users::name(tx, user_id)?.unwrap_or_default();
    if intent.org != org {
        return Err(mismatch("org", format!("is {}, not {org}", intent.org)));
    }
    if intent.submitter != name {
        return Err(mismatch(
            "submitter",
            format!("is {}, not you ({name})", intent.submitter),
        ));
    }
    let execution = Execution {
        target: run.target,
        image: run.image,
        argv: run.argv,
        env: run.env,
        secrets: run.secrets.iter().map(String::as_str).collect(),
        timeout_secs: run.timeout_secs,
        stdin: run.stdin,
        network: target.network.as_deref(),
        user: target.user.as_deref(),
        limits: &target.limits,
    };
    match intent.check_matches(&execution) {
        Ok(()) => {}
        Err(Refusal::Changed { field, .. }) => return Err(mismatch(field, "differs")),
        Err(other) => return Err(Error::Invalid(other.to_string())),
    }
    if intent.break_glass.as_deref() != break_glass {
        return Err(mismatch("break-glass reason", "differs"));
    }
    if intent.runbook.as_ref() != runbook {
        return Err(mismatch("runbook call", "differs"));
    }
    if intent.expires_at_ms < run.now {
        return Err(Error::Invalid(
            "the signed run has expired; sign it again".into(),
        ));
    }
    let (certificate, _) = certified(tx, user_id, &name, &key)?;
    Ok(SignedRun {
        intent: serde_json::to_string(signed)?,
        certificate,
        digest: signed.digest(),
    })
}

/// A run no person signed, stated: its intent (JSON) and that text's
/// digest, which approvals bind.
pub(crate) struct StatedRun {
    /// The intent (JSON).
    pub(crate) intent: String,
    /// Its digest.
    pub(crate) digest: String,
}

/// The intent of `run` (by user `user_id`, calling `runbook`, with
/// `break_glass`), which no person signed: what an agent holds the run to,
/// and what approvers sign. It binds the run as a signed one does, with a
/// fresh nonce, so an agent runs it at most once; its submitter is the
/// user's name, as approvals name people (so an agent does not count the
/// submitter's own approval).
pub(crate) fn state_intent(
    tx: &Tx<'_>,
    run: &store::runs::NewRun<'_>,
    user_id: i64,
    runbook: Option<&RunbookCall>,
    break_glass: Option<&str>,
) -> Result<StatedRun, Error> {
    let intent = RunIntent {
        org: store::approvals::org_name(tx, run.org_id)?,
        target: run.target.to_owned(),
        argv: run.argv.to_vec(),
        env: run.env.clone(),
        secrets: run.secrets.to_vec(),
        image: run.image.to_owned(),
        timeout_secs: run.timeout_secs,
        stdin: run.stdin,
        submitter: store::users::name(tx, user_id)?.unwrap_or_else(|| run.submitter.to_owned()),
        break_glass: break_glass.map(str::to_owned),
        nonce: RunIntent::fresh_nonce(),
        issued_at_ms: run.now,
        expires_at_ms: run.now.saturating_add(RUN_SIGNATURE_TTL_MS),
        runbook: runbook.cloned(),
    };
    let intent = serde_json::to_string(&intent)?;
    Ok(StatedRun {
        digest: stated_digest(&intent),
        intent,
    })
}

/// Checks that `signed` is user `user_id`'s (named `name`) approval of the
/// run whose signed intent has `digest`, with their certified key; the
/// [`SignedApproval`] to store (JSON). An unsigned approval of a signed run
/// is recorded all the same (an agent without a trust file runs it); an
/// agent with one counts only signed approvals.
pub(crate) fn check_approval(
    tx: &Tx<'_>,
    org_id: i64,
    user_id: i64,
    name: &str,
    digest: &str,
    proof: Proof<'_>,
) -> Result<String, Error> {
    let (statement, approval) = match proof {
        Proof::Key(signed) => {
            let (statement, key) = signed.open().map_err(|e| Error::Invalid(e.to_string()))?;
            let (certificate, _) = certified(tx, user_id, name, &key)?;
            let approval = SignedApproval {
                approval: Some(signed.clone()),
                passkey: None,
                certificate: serde_json::from_str(&certificate)?,
            };
            (statement, approval)
        }
        Proof::Passkey(asserted) => {
            let json = store::users::certificate(tx, user_id)?.ok_or_else(|| {
                Error::Invalid(format!(
                    "user {name} has no certificate: an admin certifies their passkey first (`sealrun user certify {name} --passkey FINGERPRINT`)"
                ))
            })?;
            let signed: Signed<UserCertificate> = serde_json::from_str(&json)?;
            let cert = signed
                .claimed()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let statement = asserted.open(&cert).map_err(|e| {
                Error::Invalid(format!(
                    "the passkey approval does not verify: {e} (an admin certifies a passkey with `sealrun user certify {name} --passkey FINGERPRINT`)"
                ))
            })?;
            let approval = SignedApproval {
                approval: None,
                passkey: Some(asserted.clone()),
                certificate: signed,
            };
            (statement, approval)
        }
    };
    let org = store::approvals::org_name(tx, org_id)?;
    if statement.org != org || statement.approver != name || statement.run_digest != digest {
        return Err(Error::Invalid(format!(
            "the signed approval is not {name}'s approval of this run (digest {digest})"
        )));
    }
    Ok(serde_json::to_string(&approval)?)
}

/// How an approval is signed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Proof<'a> {
    /// With the approver's Ed25519 key (the CLI).
    Key(&'a Signed<ApprovalStatement>),
    /// With one of their passkeys (the web console).
    Passkey(&'a PasskeyApproval),
}

/// The signatures behind run `run_id` of target `target_id`, for its
/// agent, given the run's `intents`; `None` for a run neither signed nor
/// stated (submitted unsigned from the CLI or the API: an agent with a
/// trust file refuses it).
pub(crate) fn authority(
    tx: &Tx<'_>,
    run_id: &str,
    target_id: i64,
    intents: store::runs::Intents,
) -> Result<Option<Box<Authority>>, Error> {
    let mandate = match intents.signed {
        Some((intent, certificate)) => Mandate::Submitter {
            run: serde_json::from_str(&intent)?,
            certificate: serde_json::from_str(&certificate)?,
        },
        None => match intents.stated {
            Some(intent) => Mandate::Nobody { intent },
            None => return Ok(None),
        },
    };
    let approvals = store::approvals::signed(tx, run_id)?
        .iter()
        .map(|json| serde_json::from_str(json))
        .collect::<Result<_, _>>()?;
    Ok(Some(Box::new(Authority {
        target: store::targets::certificate(tx, target_id)?
            .map(|json| serde_json::from_str(&json))
            .transpose()?,
        runbook: store::runbooks::certificate_of_run(tx, run_id)?
            .map(|json| serde_json::from_str(&json))
            .transpose()?,
        mandate,
        approvals,
    })))
}
