//! What `sealrun run` and `sealrun approvals approve` sign with the
//! person's own key (`sealrun_wire::authority`): the exact run, and an
//! approval of a signed run's digest. Agents that trust the admin who
//! certified the key count them; the control plane only relays them.

use super::seg;
use super::trust::own_signing_key;
use crate::client::Client;
use crate::output;
use anyhow::{Result, bail};
use sealrun_wire::admin::{TargetView, Whoami};
use sealrun_wire::approval::ApprovalView;
use sealrun_wire::authority::{ApprovalStatement, RUN_SIGNATURE_TTL_MS, RunIntent};
use sealrun_wire::run::RunRequest;
use sealrun_wire::trust::{Signed, SigningKey};

/// This person's key and who they are, if the control plane says an admin
/// certified that key for them; else `None`, having said on stderr why
/// nothing is signed (an agent with a trust file will refuse what is not).
/// `what` names what would have been signed.
async fn certified_signer(client: &Client, what: &str) -> Result<Option<Signer>> {
    let Some(key) = own_signing_key()? else {
        return Ok(None);
    };
    let me: Whoami = client.get("/v1/whoami").await?;
    let Some(user) = me.user else {
        bail!("this token belongs to no user: only a user's runs can be signed");
    };
    let public = key.public_key();
    if me.signing_key.as_deref() != Some(public.to_string().as_str()) {
        eprintln!(
            "sealrun: {what} is not signed: your signing key {} is not certified for user {} (an admin runs `sealrun user certify {} --key {public}`); agents with a trust file refuse unsigned runs and do not count unsigned approvals",
            public.fingerprint(),
            output::safe(&user),
            output::safe(&user)
        );
        return Ok(None);
    }
    Ok(Some(Signer {
        key,
        org: me.org,
        user,
    }))
}

/// A person's certified key, with the names a statement binds.
struct Signer {
    key: SigningKey,
    org: String,
    user: String,
}

/// `req` signed with this person's certified key, or `None` if they have
/// none (or it is a runbook run, which is not signed yet). The image and
/// timeout the control plane would pick are looked up and signed
/// explicitly: a signature covers exactly what runs.
pub async fn sign_run(client: &Client, req: &RunRequest) -> Result<Option<Signed<RunIntent>>> {
    if req.runbook.is_some() {
        return Ok(None);
    }
    let Some(signer) = certified_signer(client, "the run").await? else {
        return Ok(None);
    };
    let target: TargetView = client
        .get(&format!("/v1/targets/{}", seg(&req.target)))
        .await?;
    let now = output::now_ms();
    Ok(Some(signer.key.sign(&RunIntent {
        org: signer.org,
        target: req.target.clone(),
        argv: req.argv.clone(),
        env: req.env.clone(),
        secrets: req.secrets.clone(),
        image: req.image.clone().unwrap_or(target.spec.image),
        timeout_secs: req.timeout_secs.unwrap_or(target.spec.timeout_secs),
        stdin: req.stdin,
        submitter: signer.user,
        break_glass: req.break_glass.clone(),
        nonce: RunIntent::fresh_nonce(),
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(RUN_SIGNATURE_TTL_MS),
    })))
}

/// An approval of `view`'s signed run, signed with this person's certified
/// key; `None` for an unsigned run, or without a certified key.
pub async fn sign_approval(
    client: &Client,
    view: &ApprovalView,
) -> Result<Option<Signed<ApprovalStatement>>> {
    let Some(signed) = &view.signed else {
        return Ok(None);
    };
    let Some(signer) = certified_signer(client, "your approval").await? else {
        return Ok(None);
    };
    Ok(Some(signer.key.sign(&ApprovalStatement {
        org: signer.org,
        run_digest: signed.digest(),
        approver: signer.user,
        at_ms: output::now_ms(),
    })))
}
