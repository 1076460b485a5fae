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

/// What signing gave: the statement, or why there is none (to say once
/// the request it was for succeeded: a refused request says only why).
pub struct Signing<T> {
    /// The signed statement.
    pub signed: Option<Signed<T>>,
    /// Why nothing was signed although this person has a key.
    pub unsigned_because: Option<String>,
}

impl<T> Signing<T> {
    fn none() -> Signing<T> {
        Signing {
            signed: None,
            unsigned_because: None,
        }
    }

    /// Says on stderr why nothing was signed, if something should have been.
    pub fn explain(&self) {
        if let Some(why) = &self.unsigned_because {
            eprintln!("sealrun: {why}");
        }
    }
}

/// This person's key and who they are if the control plane says an admin
/// certified that key for them; else why nothing is signed, if they have a
/// key (an agent with a trust file refuses what is not signed). `what`
/// names what would have been signed.
async fn certified_signer(client: &Client, what: &str) -> Result<Result<Signer, Option<String>>> {
    let Some(key) = own_signing_key()? else {
        return Ok(Err(None));
    };
    let me: Whoami = client.get("/v1/whoami").await?;
    let Some(user) = me.user else {
        bail!("this token belongs to no user: only a user's runs can be signed");
    };
    let public = key.public_key();
    if me.signing_key.as_deref() != Some(public.to_string().as_str()) {
        return Ok(Err(Some(format!(
            "{what} is not signed: your signing key {} is not certified for user {} (an admin runs `sealrun user certify {} --key {public}`); agents with a trust file refuse unsigned runs and do not count unsigned approvals",
            public.fingerprint(),
            output::safe(&user),
            output::safe(&user)
        ))));
    }
    Ok(Ok(Signer {
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

/// `req` signed with this person's certified key, or nothing if they have
/// none (or it is a runbook run, which is not signed yet). The image and
/// timeout the control plane would pick are looked up and signed
/// explicitly: a signature covers exactly what runs.
pub async fn sign_run(client: &Client, req: &RunRequest) -> Result<Signing<RunIntent>> {
    if req.runbook.is_some() {
        return Ok(Signing::none());
    }
    let signer = match certified_signer(client, "the run").await? {
        Ok(signer) => signer,
        Err(why) => {
            return Ok(Signing {
                signed: None,
                unsigned_because: why,
            });
        }
    };
    let target: TargetView = client
        .get(&format!("/v1/targets/{}", seg(&req.target)))
        .await?;
    let now = output::now_ms();
    let signed = signer.key.sign(&RunIntent {
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
    });
    Ok(Signing {
        signed: Some(signed),
        unsigned_because: None,
    })
}

/// An approval of `view`'s signed run, signed with this person's certified
/// key; nothing for an unsigned run, or without a certified key.
pub async fn sign_approval(
    client: &Client,
    view: &ApprovalView,
) -> Result<Signing<ApprovalStatement>> {
    let Some(run) = &view.signed else {
        return Ok(Signing::none());
    };
    let signer = match certified_signer(client, "your approval").await? {
        Ok(signer) => signer,
        Err(why) => {
            return Ok(Signing {
                signed: None,
                unsigned_because: why,
            });
        }
    };
    Ok(Signing {
        signed: Some(signer.key.sign(&ApprovalStatement {
            org: signer.org,
            run_digest: run.digest(),
            approver: signer.user,
            at_ms: output::now_ms(),
        })),
        unsigned_because: None,
    })
}
