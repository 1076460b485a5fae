//! The approvals inbox: pending requests with the exact spec being
//! approved, history, and rejecting.
//!
//! **Approving in the browser takes a passkey.** An agent with a trust file
//! counts only approvals signed by a certified person, so a click alone must
//! not count: the console approves only with the approver's certified
//! passkey (WebAuthn). The page states the approval (org, the run's intent
//! digest, the approver, the time), the authenticator signs its challenge
//! ([`sealrun_wire::passkey::challenge`]), and the control plane stores the
//! assertion with the approver's certificate, for the agent to check
//! (`sealrun_wire::authority`). Without a certified passkey, the page shows
//! the one CLI command that approves exactly this spec. Rejecting weakens
//! nothing (a run only runs less), so it needs no signature: recorded
//! exactly as the CLI's rejection is.

use super::error::PageError;
use super::page::{self, Section, argv_list, command, empty, time, visible};
use super::session::{Posted, Viewer};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use sealrun_control::{Action, ApprovalFilter, Member};
use sealrun_wire::approval::{ApproveRequest, RejectRequest};
use sealrun_wire::authority::{ApprovalStatement, PasskeyApproval};
use sealrun_wire::passkey::{PasskeyAssertion, challenge_text};
use sealrun_wire::run::RunStatus;
use sealrun_wire::trust::Statement as _;
use serde::Deserialize;

/// `?status=` of the inbox: which requests (default: pending).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct InboxQuery {
    #[serde(default)]
    status: String,
}

/// `GET /ui/approvals`.
pub(crate) async fn inbox(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<InboxQuery>,
) -> Result<Response, PageError> {
    let who = Member::from(&viewer.user);
    let requests = state
        .control
        .list_approvals(
            &who,
            ApprovalFilter {
                status: Some(q.status.clone()),
                break_glass: false,
                limit: Some(100),
            },
        )
        .await?;
    let pending = q.status.is_empty() || q.status == RunStatus::PendingApproval.as_str();
    let may_decide = Action::ApproveRuns.allows(viewer.user.role);
    let content = html! {
        nav aria-label="Which requests" class="tabs" {
            a href="/ui/approvals" aria-current=[pending.then_some("page")] { "Pending" }
            @for s in [RunStatus::Queued, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Rejected, RunStatus::Expired, RunStatus::Canceled] {
                a href={"/ui/approvals?status=" (s.as_str())} aria-current=[(q.status == s.as_str()).then_some("page")] { (s.as_str()) }
            }
        }
        @if requests.is_empty() {
            (empty(if pending { "Nothing waits for approval." } else { "No requests in this state." }))
        } @else {
            div class="scroll" {
                table {
                    thead { tr {
                        th scope="col" { "Run" } th scope="col" { "Target" } th scope="col" { "Command" }
                        th scope="col" { "Submitter" } th scope="col" { "Approvals" } th scope="col" { "Asked" }
                        @if pending { th scope="col" { "Expires" } }
                    } }
                    tbody {
                        @for r in &requests {
                            tr {
                                td { a href={"/ui/approvals/" (r.run_id)} { code { (r.run_id) } } }
                                td { (r.spec.target) }
                                td { (command(&r.spec.argv)) }
                                td { (r.submitter)
                                    @if r.spec.submitter_user_id == viewer.user.user_id { " " span class="meta" { "(you: someone else must approve)" } } }
                                td { (r.approvals.len()) " of " (r.required) }
                                td { (time(r.created_at_ms)) }
                                @if pending { td { @if let Some(t) = r.expires_at_ms { (time(t)) } } }
                            }
                        }
                    }
                }
            }
        }
        @if !may_decide {
            p class="meta" { "Your role (" (viewer.user.role.as_str()) ") may read requests but not decide them." }
        }
    };
    Ok(page::page(
        &viewer,
        Section::Approvals,
        "Approvals",
        content,
    ))
}

/// `GET /ui/approvals/{run_id}`: one request, the spec element by element.
pub(crate) async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    let who = Member::from(&viewer.user);
    let r = state.control.approval(&who, id).await?;
    let pending = r.status == RunStatus::PendingApproval;
    let may_decide = Action::ApproveRuns.allows(viewer.user.role)
        && pending
        && r.spec.submitter_user_id != viewer.user.user_id;
    let here = super::passkeys::origin(&headers)?;
    let passkeys: Vec<_> = if may_decide {
        state
            .control
            .own_passkeys(&viewer.user)
            .await?
            .into_iter()
            // A passkey asserts only for the origin it was registered at:
            // offer those of the page's own.
            .filter(|p| p.certified && p.passkey.origin == here)
            .map(|p| p.passkey)
            .collect()
    } else {
        Vec::new()
    };
    // What the approver's authenticator signs: the CLI's statement, word
    // for word, timed now.
    let statement = serde_json::to_string(&ApprovalStatement {
        org: viewer.user.org.clone(),
        run_digest: r.digest.clone(),
        approver: viewer.user.user.clone(),
        at_ms: crate::clock::unix_ms(),
    })
    .map_err(|e| PageError::bad_request(e.to_string()))?;
    let request = serde_json::json!({
        "challenge": challenge_text(ApprovalStatement::CONTEXT, &statement),
        "rpId": passkeys.first().and_then(|p| p.rp_id().ok()).unwrap_or_default(),
        "allow": passkeys.iter().map(|p| p.credential_id.clone()).collect::<Vec<_>>(),
    });
    let title = format!("Approval of run {}", r.run_id);
    let content = html! {
        p { "Status: " (page::status(r.status)) " · " a href={"/ui/runs/" (r.run_id)} { "the run's page" } }
        section aria-labelledby="spec" {
            h2 id="spec" { "The exact spec being approved" }
            dl class="facts" {
                dt { "Org" } dd { (r.spec.org) }
                dt { "Target" } dd { (visible(&r.spec.target)) }
                dt { "Command" } dd { (command(&r.spec.argv)) }
                dt { "Arguments, one per item" } dd { (argv_list(&r.spec.argv)) }
                dt { "Environment" } dd {
                    @if r.spec.env.is_empty() { "none" } @else {
                        table class="env" {
                            thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                            tbody { @for (k, v) in &r.spec.env { tr { td { code class="arg" { (visible(k)) } } td { code class="arg" { (visible(v)) } } } } }
                        }
                    }
                }
                dt { "Secrets (names)" } dd {
                    @if r.spec.secrets.is_empty() { "none" } @else {
                        @for (i, s) in r.spec.secrets.iter().enumerate() { @if i > 0 { ", " } code { (visible(s)) } }
                    }
                }
                dt { "Image" } dd { code class="arg" { (visible(&r.spec.image)) } }
                dt { "Timeout" } dd { (r.spec.timeout_secs) " s" }
                @if let Some(rb) = &r.spec.runbook {
                    dt { "Runbook" } dd { (visible(&rb.name)) " v" (rb.version) }
                }
                dt { "Submitted by" } dd { (visible(&r.submitter)) " at " (time(r.created_at_ms)) }
                dt { "Spec digest" } dd { code class="digest" { (r.digest) } }
                @if r.signed.is_some() { dt { "Signed" } dd { "by its submitter (the agent checks the signature)" } }
            }
        }
        section aria-labelledby="progress" {
            h2 id="progress" { "Approvals" }
            p { (r.approvals.len()) " of " (r.required) " needed, from " (r.approvers) "."
                @if let Some(t) = r.expires_at_ms { @if pending { " Expires " (time(t)) "." } } }
            @if r.approvals.is_empty() { (empty("No approvals yet.")) } @else {
                ul { @for a in &r.approvals {
                    li { (visible(&a.user)) " approved " (time(a.at_ms)) @if let Some(c) = &a.comment { ": “" (visible(c)) "”" } }
                } }
            }
            @if let Some(rej) = &r.rejection {
                p { "Rejected by " (visible(&rej.user)) " " (time(rej.at_ms)) ": “" (visible(&rej.reason)) "”" }
            }
        }
        @if may_decide {
            section aria-labelledby="decide" {
                h2 id="decide" { "Decide" }
                h3 { "Approve" }
                @if passkeys.is_empty() {
                    p {
                        "Approvals are signed, so that an agent that checks signatures counts them. "
                        "You have no certified passkey (" a href="/ui/passkeys" { "register one" }
                        " and have an admin certify it); approve exactly this spec from your machine with:"
                    }
                    pre class="cmd" { "sealrun approvals approve " (r.run_id) " --digest " (r.digest) }
                } @else {
                    form id="approve-passkey" method="post" action={"/ui/approvals/" (r.run_id) "/approve"}
                        class="stack" data-request=(request.to_string()) {
                        input type="hidden" name="csrf" value=(viewer.csrf());
                        input type="hidden" name="digest" value=(r.digest);
                        input type="hidden" name="statement" value=(statement);
                        input type="hidden" name="credential_id";
                        input type="hidden" name="authenticator_data";
                        input type="hidden" name="client_data_json";
                        input type="hidden" name="signature";
                        label for="comment" { "Comment (optional, recorded in the audit trail)" }
                        textarea id="comment" name="comment" rows="2" {}
                        button type="submit" { "Approve with my passkey" }
                        p class="meta" id="approve-status" role="status" {
                            "Your authenticator signs: I, " (viewer.user.user) ", approve the run whose intent digest is " code { (r.digest) } "."
                        }
                    }
                }
                h3 { "Reject" }
                form method="post" action={"/ui/approvals/" (r.run_id) "/reject"} class="stack" {
                    input type="hidden" name="csrf" value=(viewer.csrf());
                    label for="reason" { "Why (recorded in the audit trail)" }
                    textarea id="reason" name="reason" required rows="3" {}
                    button type="submit" class="danger" { "Reject this run" }
                }
            }
        }
    };
    Ok(page::page(&viewer, Section::Approvals, &title, content))
}

/// The approve form as the page's script posts it: the statement and the
/// passkey's assertion over it.
#[derive(Debug, Deserialize)]
pub(crate) struct Approve {
    #[serde(default)]
    digest: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    statement: String,
    #[serde(default)]
    credential_id: String,
    #[serde(default)]
    authenticator_data: String,
    #[serde(default)]
    client_data_json: String,
    #[serde(default)]
    signature: String,
}

/// `POST /ui/approvals/{run_id}/approve`: an approval asserted with the
/// approver's passkey; the control plane refuses one that does not verify
/// against their certificate, as the agent would.
pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted<Approve>,
) -> Result<Response, PageError> {
    if form.signature.is_empty() {
        return Err(PageError::bad_request(
            "approving in the console takes your passkey's signature (the page's script asks your authenticator for it)",
        ));
    }
    let request = ApproveRequest {
        digest: form.digest,
        comment: Some(form.comment).filter(|c| !c.trim().is_empty()),
        signed: None,
        passkey: Some(PasskeyApproval {
            statement: form.statement,
            assertion: PasskeyAssertion {
                credential_id: form.credential_id,
                authenticator_data: form.authenticator_data,
                client_data_json: form.client_data_json,
                signature: form.signature,
            },
        }),
    };
    let decided = state
        .control
        .approve_run(&Member::from(&viewer.user), id, request)
        .await?;
    Ok(Redirect::to(&format!("/ui/approvals/{}", decided.run_id)).into_response())
}

/// The reject form as posted.
#[derive(Debug, Deserialize)]
pub(crate) struct Reject {
    #[serde(default)]
    reason: String,
}

/// `POST /ui/approvals/{run_id}/reject`.
pub(crate) async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted<Reject>,
) -> Result<Response, PageError> {
    let decided = state
        .control
        .reject_run(
            &Member::from(&viewer.user),
            id,
            RejectRequest {
                reason: form.reason,
            },
        )
        .await?;
    Ok(Redirect::to(&format!("/ui/approvals/{}", decided.run_id)).into_response())
}
