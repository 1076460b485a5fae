//! Approval requests as users see them: list, inspect, approve, reject.

use crate::approval::{self, Approver, Asked};
use crate::caller::Member;
use crate::error::Error;
use crate::permissions::Action;
use crate::service::Control;
use crate::store::{self, now_ms};
use sealrun_wire::approval::{ApprovalView, ApproveRequest, RejectRequest};
use sealrun_wire::run::RunStatus;

const DEFAULT_LIST: u32 = 50;
const MAX_LIST: u32 = 500;

/// Which approval requests a listing wants.
#[derive(Clone, Debug, Default)]
pub struct ApprovalFilter {
    /// Only requests whose run is in this status (by name; an unknown name
    /// is refused). Default: `pending_approval`, or any status with
    /// `break_glass`.
    pub status: Option<String>,
    /// Runs that skipped approval by break-glass, instead of runs that
    /// waited for it.
    pub break_glass: bool,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
}

impl Control {
    /// The org's approval requests, newest first.
    pub async fn list_approvals(
        &self,
        who: &Member,
        filter: ApprovalFilter,
    ) -> Result<Vec<ApprovalView>, Error> {
        who.require(Action::ReadApprovals)?;
        let status = match filter.status.as_deref() {
            None | Some("") if filter.break_glass => None,
            None | Some("") => Some(RunStatus::PendingApproval.as_str()),
            Some(s) => Some(
                RunStatus::parse(s)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "unknown status {s:?}; one of: {}",
                            RunStatus::ALL.map(RunStatus::as_str).join(", ")
                        ))
                    })?
                    .as_str(),
            ),
        };
        let query = store::approvals::Filter {
            status,
            break_glass: filter.break_glass,
            limit: filter.limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST),
        };
        let org_id = who.org_id;
        self.db
            .read(move |tx| {
                store::approvals::list(tx, org_id, &query)?
                    .iter()
                    .map(|id| approval::view(tx, org_id, id))
                    .collect()
            })
            .await
    }

    /// The approval request of run `id`: the full spec being approved
    /// (environment values included; secrets by name), its digest, who
    /// approved so far and what is still needed.
    pub async fn approval(&self, who: &Member, id: String) -> Result<ApprovalView, Error> {
        who.require(Action::ReadApprovals)?;
        let org_id = who.org_id;
        self.db
            .read(move |tx| approval::view(tx, org_id, &id))
            .await
    }

    /// Approves run `id` as `who`, for the spec digest `req.digest`: the
    /// run is queued once the rule's number of distinct eligible people
    /// (never its submitter) have approved.
    pub async fn approve_run(
        &self,
        who: &Member,
        id: String,
        req: ApproveRequest,
    ) -> Result<ApprovalView, Error> {
        who.require(Action::ApproveRuns)?;
        let (who, run_id) = (who.clone(), id);
        let decided = self
            .db
            .write(move |tx| {
                let asked = Asked::Approve {
                    digest: &req.digest,
                    comment: req.comment.as_deref(),
                    signed: req.signed.as_ref(),
                    passkey: req.passkey.as_ref(),
                };
                approval::decide(tx, &approver(&who), &run_id, asked, now_ms())
            })
            .await?;
        if let Some(target_id) = decided.released {
            self.wakeups.run_queued(target_id);
        }
        self.watchers.touch(&decided.view.run_id);
        self.slack_outbox.cue();
        Ok(decided.view)
    }

    /// Rejects run `id` as `who`, for `req.reason`: it ends `rejected` and
    /// never runs.
    pub async fn reject_run(
        &self,
        who: &Member,
        id: String,
        req: RejectRequest,
    ) -> Result<ApprovalView, Error> {
        who.require(Action::ApproveRuns)?;
        let (who, run_id) = (who.clone(), id);
        let decided = self
            .db
            .write(move |tx| {
                let asked = Asked::Reject {
                    reason: &req.reason,
                };
                approval::decide(tx, &approver(&who), &run_id, asked, now_ms())
            })
            .await?;
        self.watchers.touch(&decided.view.run_id);
        self.slack_outbox.cue();
        Ok(decided.view)
    }
}

/// `who` as an approver.
fn approver(who: &Member) -> Approver<'_> {
    Approver {
        org_id: who.org_id,
        user_id: who.user_id,
        role: who.role,
        actor: &who.actor,
    }
}
