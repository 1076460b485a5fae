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
use sealrun_wire::authority::{ApprovalStatement, RUN_SIGNATURE_TTL_MS, RunIntent, stated_digest};
use sealrun_wire::run::RunRequest;
use sealrun_wire::runbook::{RunbookView, render};
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
/// none. The image and timeout the control plane would pick are looked up
/// and signed explicitly, and a runbook call is rendered by the one rule
/// the control plane and agents render it by: a signature covers exactly
/// what runs. (A call the rule refuses is sent unsigned, for the control
/// plane to refuse with its own message.)
pub async fn sign_run(client: &Client, req: &RunRequest) -> Result<Signing<RunIntent>> {
    let signer = match certified_signer(client, "the run").await? {
        Ok(signer) => signer,
        Err(why) => {
            return Ok(Signing {
                signed: None,
                unsigned_because: why,
            });
        }
    };
    let now = output::now_ms();
    let mut intent = RunIntent {
        org: signer.org,
        target: req.target.clone(),
        argv: req.argv.clone(),
        env: req.env.clone(),
        secrets: req.secrets.clone(),
        image: String::new(),
        timeout_secs: 0,
        stdin: req.stdin,
        submitter: signer.user,
        break_glass: req.break_glass.clone(),
        nonce: RunIntent::fresh_nonce(),
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(RUN_SIGNATURE_TTL_MS),
        runbook: req.runbook.clone(),
    };
    let mut image = req.image.clone();
    let mut timeout = req.timeout_secs;
    if let Some(call) = &req.runbook {
        let view: RunbookView = client
            .get(&format!("/v1/runbooks/{}", seg(&call.name)))
            .await?;
        let spec = view.spec;
        let Ok(argv) = render(&spec, &call.params) else {
            return Ok(Signing::none());
        };
        if intent.target.is_empty() {
            match spec.targets.as_slice() {
                [only] => intent.target = only.clone(),
                _ => return Ok(Signing::none()),
            }
        }
        intent.argv = argv;
        intent.secrets = spec.secrets;
        image = spec.image;
        timeout = timeout.or(spec.timeout_secs);
    }
    let target: TargetView = client
        .get(&format!("/v1/targets/{}", seg(&intent.target)))
        .await?;
    intent.image = image.unwrap_or(target.spec.image);
    intent.timeout_secs = timeout.unwrap_or(target.spec.timeout_secs);
    Ok(Signing {
        signed: Some(signer.key.sign(&intent)),
        unsigned_because: None,
    })
}

/// An approval of `view`'s run, signed with this person's certified key,
/// if its submitter signed it or the control plane stated it (a Slack
/// command); nothing for another unsigned run, or without a certified key.
pub async fn sign_approval(
    client: &Client,
    view: &ApprovalView,
) -> Result<Signing<ApprovalStatement>> {
    // A run signed by its submitter, or stated for a Slack command: the
    // digest was checked against what is shown (`approvals::fetch`).
    let run_digest = match (&view.signed, &view.stated) {
        (Some(signed), _) => signed.digest(),
        (None, Some(stated)) => stated_digest(stated),
        (None, None) => return Ok(Signing::none()),
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
            run_digest,
            approver: signer.user,
            at_ms: output::now_ms(),
        })),
        unsigned_because: None,
    })
}
