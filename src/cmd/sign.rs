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
use sealrun_wire::trust::Signed;

/// Who is signing, by the control plane's account (the org and user names
/// a certificate binds; a lie here only makes the agent refuse).
async fn whoami(client: &Client) -> Result<(String, String)> {
    let me: Whoami = client.get("/v1/whoami").await?;
    let Some(user) = me.user else {
        bail!("this token belongs to no user: only a user's runs can be signed");
    };
    Ok((me.org, user))
}

/// `req` signed with this person's key, or `None` if they have no key (or
/// it is a runbook run, which is not signed yet). The image and timeout the
/// control plane would pick are looked up and signed explicitly: a
/// signature covers exactly what runs.
pub async fn sign_run(client: &Client, req: &RunRequest) -> Result<Option<Signed<RunIntent>>> {
    if req.runbook.is_some() {
        return Ok(None);
    }
    let Some(key) = own_signing_key()? else {
        return Ok(None);
    };
    let (org, submitter) = whoami(client).await?;
    let target: TargetView = client
        .get(&format!("/v1/targets/{}", seg(&req.target)))
        .await?;
    let now = output::now_ms();
    Ok(Some(key.sign(&RunIntent {
        org,
        target: req.target.clone(),
        argv: req.argv.clone(),
        env: req.env.clone(),
        secrets: req.secrets.clone(),
        image: req.image.clone().unwrap_or(target.spec.image),
        timeout_secs: req.timeout_secs.unwrap_or(target.spec.timeout_secs),
        stdin: req.stdin,
        submitter,
        break_glass: req.break_glass.clone(),
        nonce: RunIntent::fresh_nonce(),
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(RUN_SIGNATURE_TTL_MS),
    })))
}

/// An approval of `view`'s signed run, signed with this person's key;
/// `None` for an unsigned run. A signed run needs a signed approval, so
/// no key is an error here.
pub async fn sign_approval(
    client: &Client,
    view: &ApprovalView,
) -> Result<Option<Signed<ApprovalStatement>>> {
    let Some(signed) = &view.signed else {
        return Ok(None);
    };
    let Some(key) = own_signing_key()? else {
        bail!(
            "run {} is signed, so its approval must be too, and you have no signing key: run `sealrun keys init` and have an admin certify it (`sealrun user certify`)",
            output::safe(&view.run_id)
        );
    };
    let (org, approver) = whoami(client).await?;
    Ok(Some(key.sign(&ApprovalStatement {
        org,
        run_digest: signed.digest(),
        approver,
        at_ms: output::now_ms(),
    })))
}
