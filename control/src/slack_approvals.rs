//! Approval requests in Slack, as the domain sees them: which channel of a
//! linked workspace approvers read (and the bot token to post there with,
//! sealed at rest), and the outbox of approval messages.
//!
//! When a run is held for approval, the same transaction owes its message
//! to every such channel of the org (`store::slack::queue_approval_posts`),
//! so a crash or restart loses none. The Slack adapter drains the outbox:
//! it posts each message, updates it as approvals come in, shows the
//! outcome and tells the requester, then settles it. Decisions taken by
//! clicking the message's buttons go through [`Control::approve_run`] and
//! [`Control::reject_run`] like any other, as the clicker's linked user.

use crate::approval;
use crate::caller::User;
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::service::Control;
use crate::slack::check_slack_id;
use crate::slack_keys::Workspace;
use crate::store;
use sealrun_wire::approval::ApprovalView;
use sealrun_wire::slack::{ApprovalsChannel, WorkspaceView};
use serde_json::json;
use zeroize::Zeroizing;

/// How many approval messages one look at the outbox returns.
const OUTBOX_BATCH: u32 = 100;
/// Failed posts after which an approval message is given up (the request
/// itself is unaffected: it is still in `sealrun approvals list`).
pub const MAX_POST_ATTEMPTS: u32 = 20;

/// An approval message owed to (or posted in) an approvers' channel.
pub struct ApprovalPost {
    /// The run.
    pub run_id: String,
    /// The workspace.
    pub team_id: String,
    /// The org.
    pub org_id: i64,
    /// The channel.
    pub channel: String,
    /// Slack's id of the posted message; `None` until it is posted.
    pub ts: Option<String>,
    /// What the message last showed (see the adapter).
    pub shown: Option<String>,
    /// Failed posts since the last success.
    pub attempts: u32,
    /// The bot token to post with (a credential: never logged).
    pub bot_token: Zeroizing<String>,
    /// The Slack user of that workspace linked to the run's submitter, to
    /// tell the outcome to.
    pub requester: Option<String>,
    /// The request as it is now.
    pub view: ApprovalView,
}

impl std::fmt::Debug for ApprovalPost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalPost")
            .field("run_id", &self.run_id)
            .field("team_id", &self.team_id)
            .field("channel", &self.channel)
            .field("ts", &self.ts)
            .field("shown", &self.shown)
            .field("bot_token", &"***")
            .finish_non_exhaustive()
    }
}

/// A Slack channel id (`C...`, `G...`): as other Slack ids.
fn check_channel(channel: &str) -> Result<(), Error> {
    check_slack_id("channel", channel)?;
    if !(channel.starts_with('C') || channel.starts_with('G')) {
        return Err(Error::Invalid(format!(
            "invalid Slack channel id {channel:?}: a channel id starts with C or G (channel details > About, at the bottom)"
        )));
    }
    Ok(())
}

/// A bot token as Slack issues them (`xoxb-...`).
fn check_bot_token(token: &str) -> Result<(), Error> {
    let ok = token.starts_with("xoxb-")
        && (16..=512).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        // Never echo the value.
        Err(Error::Invalid(
            "invalid bot token: expected Slack's xoxb-... bot token (Slack app > OAuth & Permissions > Bot User OAuth Token)".into(),
        ))
    }
}

impl Control {
    /// Posts the org's approval requests to `req.channel` of linked
    /// workspace `team_id`, as the bot `req.bot_token` (sealed before it is
    /// stored; never returned), with Approve and Reject buttons.
    pub async fn set_slack_approvals(
        &self,
        user: &User,
        team_id: String,
        req: ApprovalsChannel,
    ) -> Result<WorkspaceView, Error> {
        user.require(Action::ManageSlack)?;
        check_slack_id("team", &team_id)?;
        check_channel(&req.channel)?;
        check_bot_token(&req.bot_token)?;
        let sealed = self
            .slack
            .seal_bot_token(&team_id, req.bot_token.as_bytes())?;
        let channel = req.channel.clone();
        drop(req);
        let user = user.clone();
        self.db
            .write(move |tx| {
                if !store::slack::set_approvals(
                    tx,
                    &team_id,
                    user.org_id,
                    Some((&channel, &sealed)),
                )? {
                    return Err(Error::not_found(Object::SlackWorkspace, &team_id));
                }
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "slack.approvals_channel_set",
                    &format!("slack:{team_id}"),
                    json!({"channel": channel}),
                )?;
                store::slack::list_workspaces(tx, user.org_id)?
                    .into_iter()
                    .find(|w| w.team_id == team_id)
                    .ok_or_else(|| Error::not_found(Object::SlackWorkspace, &team_id))
            })
            .await
    }

    /// Stops posting approval requests to workspace `team_id` (its bot
    /// token is forgotten; messages already posted are no longer updated).
    pub async fn clear_slack_approvals(&self, user: &User, team_id: String) -> Result<(), Error> {
        user.require(Action::ManageSlack)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                if !store::slack::set_approvals(tx, &team_id, user.org_id, None)? {
                    return Err(Error::not_found(Object::SlackWorkspace, &team_id));
                }
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "slack.approvals_channel_cleared",
                    &format!("slack:{team_id}"),
                    json!({}),
                )?;
                Ok(())
            })
            .await
    }

    /// The bot token of the verified `workspace`, if its org set an
    /// approvals channel (to open a dialog for a clicker).
    pub async fn slack_bot_token(
        &self,
        workspace: &Workspace,
    ) -> Result<Option<Zeroizing<String>>, Error> {
        let (team, org) = (workspace.team_id.clone(), workspace.org_id);
        let sealed = self
            .db
            .read(move |tx| store::slack::bot_token(tx, &team, org))
            .await?;
        sealed
            .map(|s| self.slack.open_bot_token(&workspace.team_id, &s))
            .transpose()
    }

    /// The approval messages not settled yet, oldest first, each with its
    /// request as it is now. Messages whose run is gone, or whose bot
    /// token cannot be opened, are settled here.
    pub async fn slack_approval_posts(&self) -> Result<Vec<ApprovalPost>, Error> {
        let replica = self.replica.clone();
        let rows = self
            .db
            .write(move |tx| {
                let hold = store::slack::Hold::from_now(&replica);
                let mut out = Vec::new();
                for row in store::slack::claim_approval_posts(tx, hold, OUTBOX_BATCH)? {
                    let view = match approval::view(tx, row.org_id, &row.run_id) {
                        Ok(v) => Some(v),
                        Err(Error::NotFound { .. }) => None,
                        Err(e) => return Err(e),
                    };
                    out.push((row, view));
                }
                Ok(out)
            })
            .await?;
        let mut posts = Vec::with_capacity(rows.len());
        for (row, view) in rows {
            let token = row
                .bot_token
                .as_ref()
                .map(|s| self.slack.open_bot_token(&row.team_id, s));
            match (view, token) {
                (Some(view), Some(Ok(bot_token))) => posts.push(ApprovalPost {
                    run_id: row.run_id,
                    team_id: row.team_id,
                    org_id: row.org_id,
                    channel: row.channel,
                    ts: row.ts,
                    shown: row.shown,
                    attempts: row.attempts,
                    bot_token,
                    requester: row.requester,
                    view,
                }),
                // Nothing can be posted for it: forget it (the run and its
                // request are unaffected).
                _ => {
                    tracing::warn!(run = %row.run_id, team = %row.team_id, "an approval message cannot be posted (its run is gone or its bot token cannot be opened); forgotten");
                    self.slack_approval_settled(&row.run_id, &row.team_id, row.org_id)
                        .await?;
                }
            }
        }
        Ok(posts)
    }

    /// Records that the approval message of `post` (Slack's message `ts`)
    /// now shows `shown`.
    pub async fn slack_approval_shown(
        &self,
        post: &ApprovalPost,
        ts: &str,
        shown: &str,
    ) -> Result<(), Error> {
        let (run, team, org) = (post.run_id.clone(), post.team_id.clone(), post.org_id);
        let (ts, shown) = (ts.to_owned(), shown.to_owned());
        self.db
            .write(move |tx| store::slack::approval_post_shown(tx, &run, &team, org, &ts, &shown))
            .await
    }

    /// Counts a failed post of `post`'s message, and gives it up after
    /// [`MAX_POST_ATTEMPTS`]; whether it was given up.
    pub async fn slack_approval_failed(&self, post: &ApprovalPost) -> Result<bool, Error> {
        let (run, team, org) = (post.run_id.clone(), post.team_id.clone(), post.org_id);
        self.db
            .write(move |tx| {
                let attempts = store::slack::approval_post_failed(tx, &run, &team, org)?;
                if attempts >= MAX_POST_ATTEMPTS {
                    store::slack::delete_approval_post(tx, &run, &team, org)?;
                    return Ok(true);
                }
                Ok(false)
            })
            .await
    }

    /// Forgets an approval message: it shows its request's outcome (or
    /// cannot be posted at all).
    pub async fn slack_approval_settled(
        &self,
        run_id: &str,
        team_id: &str,
        org_id: i64,
    ) -> Result<(), Error> {
        let (run, team) = (run_id.to_owned(), team_id.to_owned());
        self.db
            .write(move |tx| store::slack::delete_approval_post(tx, &run, &team, org_id))
            .await
    }

    /// Resolves when an approval request may need its Slack message posted
    /// or updated (submitted, decided, withdrawn). Wake-ups are a hint:
    /// expiry wakes nobody, so the adapter also looks every few seconds.
    pub async fn slack_approvals_changed(&self) {
        self.slack_outbox.cued().await;
    }
}
