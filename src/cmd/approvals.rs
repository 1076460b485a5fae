//! `sealrun approvals ...`: list, show, approve and reject runs waiting for
//! approval.

use super::seg;
use crate::cli::ApprovalsCommand;
use crate::client::Client;
use crate::output::{self, Table, outln, safe};
use anyhow::{Result, bail};
use sealrun_wire::approval::{ApprovalList, ApprovalView, ApproveRequest, RejectRequest};
use sealrun_wire::authority::{RunIntent, stated_digest};
use sealrun_wire::run::RunStatus;
use sealrun_wire::shell;
use std::io::IsTerminal as _;

pub async fn run(cmd: ApprovalsCommand) -> Result<()> {
    match cmd {
        ApprovalsCommand::List {
            status,
            break_glass,
            limit,
            client,
        } => {
            if let Some(s) = &status {
                if RunStatus::parse(s).is_none() {
                    bail!(
                        "unknown status `{s}` (one of: {})",
                        RunStatus::ALL.map(|s| s.as_str()).join(", ")
                    );
                }
            }
            let json = client.json;
            let client = Client::from_args(&client)?;
            let mut path = format!("/v1/approvals?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={}", seg(&s)));
            }
            if break_glass {
                path.push_str("&break_glass=true");
            }
            let list: ApprovalList = client.get(&path).await?;
            if json {
                return output::json(&list);
            }
            let mut t = if break_glass {
                Table::new(&[
                    "RUN",
                    "TARGET",
                    "STATUS",
                    "SUBMITTER",
                    "CREATED",
                    "REASON",
                    "COMMAND",
                ])
            } else {
                Table::new(&[
                    "RUN",
                    "TARGET",
                    "STATUS",
                    "APPROVALS",
                    "FROM",
                    "SUBMITTER",
                    "EXPIRES",
                    "COMMAND",
                ])
            };
            for a in list.approvals {
                let command = shell::join(&a.spec.argv);
                if break_glass {
                    t.row(vec![
                        a.run_id,
                        a.spec.target,
                        a.status.to_string(),
                        a.submitter,
                        output::time(a.created_at_ms),
                        a.break_glass.map(|b| b.reason).unwrap_or_default(),
                        command,
                    ]);
                } else {
                    t.row(vec![
                        a.run_id.clone(),
                        a.spec.target.clone(),
                        a.status.to_string(),
                        format!("{} of {}", a.approvals.len(), a.required),
                        a.approvers.clone(),
                        a.submitter.clone(),
                        output::opt_time(a.expires_at_ms),
                        command,
                    ]);
                }
            }
            t.print()
        }
        ApprovalsCommand::Show { id, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let view = fetch(&client, &id).await?;
            if json {
                return output::json(&view);
            }
            show(&view)
        }
        ApprovalsCommand::Approve {
            id,
            digest,
            comment,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            // The digest sent is the one of the spec fetched (and checked)
            // here: if the run is not that spec, the control plane refuses.
            let view = fetch(&client, &id).await?;
            // What is approved (and signed) is what the approver reviewed:
            // the digest they were shown, or the run shown now and
            // confirmed. A control plane that showed one run and hands the
            // approval another gets nothing.
            match digest {
                Some(reviewed) if reviewed.trim() != view.digest => bail!(
                    "run {} is not the one you reviewed (its digest is {}, you reviewed {}): nothing approved",
                    safe(&id),
                    safe(&view.digest),
                    safe(&reviewed)
                ),
                Some(_) => {}
                None if std::io::stdin().is_terminal() && !json => {
                    show(&view)?;
                    eprint!("Approve exactly this run? [y/N] ");
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    if !matches!(answer.trim(), "y" | "Y" | "yes") {
                        bail!("nothing approved");
                    }
                }
                None => eprintln!(
                    "approving run {} as shown now: {} (digest {}; pass --digest to approve only what you reviewed)",
                    safe(&id),
                    shell::join(&view.spec.argv),
                    safe(&view.digest)
                ),
            }
            let signing = super::sign::sign_approval(&client, &view).await?;
            let req = ApproveRequest {
                digest: view.digest.clone(),
                comment,
                signed: signing.signed.clone(),
                passkey: None,
            };
            let after: ApprovalView = client
                .post(&format!("/v1/approvals/{}/approve", seg(&id)), &req)
                .await?;
            signing.explain();
            if json {
                return output::json(&after);
            }
            if after.status == RunStatus::PendingApproval {
                Ok(outln!(
                    "approved run {} ({} of {}); it waits for {} more from {}",
                    safe(&after.run_id),
                    after.approvals.len(),
                    after.required,
                    after.remaining(),
                    safe(&after.approvers)
                )?)
            } else {
                Ok(outln!(
                    "approved run {} ({} of {}): it is {} now",
                    safe(&after.run_id),
                    after.approvals.len(),
                    after.required,
                    after.status
                )?)
            }
        }
        ApprovalsCommand::Reject { id, reason, client } => {
            if reason.trim().is_empty() {
                bail!("--reason cannot be empty: say why the run must not run");
            }
            let json = client.json;
            let client = Client::from_args(&client)?;
            let after: ApprovalView = client
                .post(
                    &format!("/v1/approvals/{}/reject", seg(&id)),
                    &RejectRequest { reason },
                )
                .await?;
            if json {
                return output::json(&after);
            }
            Ok(outln!(
                "rejected run {}: it will not run",
                safe(&after.run_id)
            )?)
        }
    }
}

/// The approval request of run `id`, refused unless its digest is the
/// digest of the spec it shows: what is displayed is what is approved,
/// whatever the control plane says.
///
/// A signed run is shown as its submitter signed it (that is what its
/// agent runs, and what the approval's signature binds).
async fn fetch(client: &Client, id: &str) -> Result<ApprovalView> {
    let mut view: ApprovalView = client.get(&format!("/v1/approvals/{}", seg(id))).await?;
    let intent = match (&view.signed, &view.stated) {
        (Some(signed), _) => {
            let (intent, _) = signed.open().map_err(|e| {
                anyhow::anyhow!("run {id}'s signature does not hold ({e}); not approving")
            })?;
            Some((intent, signed.digest(), "the run its submitter signed"))
        }
        (None, Some(stated)) => {
            let intent = serde_json::from_str(stated).map_err(|e| {
                anyhow::anyhow!("run {id}'s stated intent cannot be read ({e}); not approving")
            })?;
            Some((
                intent,
                stated_digest(stated),
                "the run the control plane states",
            ))
        }
        (None, None) => None,
    };
    if let Some((intent, computed, what)) = intent {
        let intent: RunIntent = intent;
        if computed != view.digest {
            bail!(
                "the control plane's digest of run {id} ({}) is not the digest of {what} ({computed}); not approving",
                safe(&view.digest)
            );
        }
        let s = &mut view.spec;
        s.target = intent.target;
        s.argv = intent.argv;
        s.env = intent.env;
        s.secrets = intent.secrets;
        s.image = intent.image;
        s.timeout_secs = intent.timeout_secs;
        s.stdin = intent.stdin;
        view.submitter = intent.submitter;
        return Ok(view);
    }
    let computed = view.spec.digest();
    if computed != view.digest {
        bail!(
            "the control plane's digest of run {id} ({}) is not the digest of the spec it shows ({computed}); not approving",
            safe(&view.digest)
        );
    }
    Ok(view)
}

fn show(a: &ApprovalView) -> Result<()> {
    let s = &a.spec;
    outln!("run:        {}", safe(&a.run_id))?;
    outln!("status:     {}", a.status)?;
    outln!("org:        {}", safe(&s.org))?;
    outln!("target:     {}", safe(&s.target))?;
    if let Some(r) = &s.runbook {
        outln!("runbook:    {} version {}", safe(&r.name), r.version)?;
    }
    outln!("command:    {}", shell::join(&s.argv))?;
    if s.env.is_empty() {
        outln!("env:        -")?;
    }
    for (i, (name, value)) in s.env.iter().enumerate() {
        let label = if i == 0 { "env:" } else { "" };
        outln!(
            "{label:<12}{}={}",
            safe(name),
            shell::join(std::slice::from_ref(value))
        )?;
    }
    outln!(
        "secrets:    {}",
        if s.secrets.is_empty() {
            "-".to_owned()
        } else {
            safe(&s.secrets.join(", ")).into_owned()
        }
    )?;
    outln!("image:      {}", safe(&s.image))?;
    outln!("timeout:    {}s", s.timeout_secs)?;
    outln!(
        "input:      {}",
        if s.stdin {
            "piped in by the submitter"
        } else {
            "none"
        }
    )?;
    outln!(
        "submitter:  {} (user id {})",
        safe(&a.submitter),
        s.submitter_user_id
    )?;
    outln!("submitted:  {}", output::time(a.created_at_ms))?;
    outln!("digest:     {}", a.digest)?;
    if let Some(b) = &a.break_glass {
        outln!("break-glass: {} (review required)", safe(&b.reason))?;
    } else {
        outln!(
            "approvals:  {} of {} from {}",
            a.approvals.len(),
            a.required,
            safe(&a.approvers)
        )?;
    }
    for given in &a.approvals {
        outln!(
            "  {} at {}{}",
            safe(&given.user),
            output::time(given.at_ms),
            given
                .comment
                .as_deref()
                .map(|c| format!(": {}", safe(c)))
                .unwrap_or_default()
        )?;
    }
    if let Some(r) = &a.rejection {
        outln!(
            "rejected:   by {} at {}: {}",
            safe(&r.user),
            output::time(r.at_ms),
            safe(&r.reason)
        )?;
    }
    if a.status == RunStatus::PendingApproval {
        outln!("expires:    {}", output::opt_time(a.expires_at_ms))?;
    }
    Ok(())
}
