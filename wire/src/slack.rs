//! The Slack integration: linking a Slack workspace and its users to an org,
//! and the messages the control plane answers slash commands with.
//!
//! A workspace is linked with its app's signing secret, which the control
//! plane needs in clear to check request signatures: it keeps it sealed at
//! rest and never returns it. Users are linked one by one, each to a
//! sealrun user (whose role they act with); an unlinked Slack user, or one
//! linked to a disabled user, can do nothing.

use crate::admin::Role;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroize as _;

/// `PUT /v1/integrations/slack/workspaces/{team_id}`: links (or relinks) a
/// workspace. The signing secret is on the Slack app's "Basic Information"
/// page.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceLink {
    /// The Slack app's signing secret (never shown again by sealrun).
    pub signing_secret: String,
}

impl fmt::Debug for WorkspaceLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkspaceLink")
            .field("signing_secret", &"***")
            .finish()
    }
}

impl Drop for WorkspaceLink {
    fn drop(&mut self) {
        self.signing_secret.zeroize();
    }
}

/// A linked workspace, as listed (never its signing secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceView {
    /// Slack team id (`T...`).
    pub team_id: String,
    /// Unix milliseconds it was first linked.
    pub linked_at_ms: i64,
    /// Unix milliseconds its signing secret was last set.
    pub updated_at_ms: i64,
    /// The channel approval requests are posted to, if one is set (its bot
    /// token is never returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_channel: Option<String>,
}

/// `PUT /v1/integrations/slack/workspaces/{team_id}/approvals`: post every
/// approval request of the org to `channel`, with Approve and Reject
/// buttons, as the Slack app's bot.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsChannel {
    /// The channel's id (`C...` or `G...`; the bot must be a member).
    pub channel: String,
    /// The app's bot token (`xoxb-...`, scope `chat:write`): sealed at
    /// rest, never returned, never logged.
    pub bot_token: String,
}

impl fmt::Debug for ApprovalsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalsChannel")
            .field("channel", &self.channel)
            .field("bot_token", &"***")
            .finish()
    }
}

impl Drop for ApprovalsChannel {
    fn drop(&mut self) {
        self.bot_token.zeroize();
    }
}

/// `GET /v1/integrations/slack/workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceList {
    /// Linked workspaces, by team id.
    pub workspaces: Vec<WorkspaceView>,
}

/// `PUT /v1/integrations/slack/users/{team_id}/{user_id}`: links a Slack
/// user to a sealrun user, whose role it acts with (`operator` or `admin`
/// may run and cancel; `auditor` may only read status and logs).
///
/// Either `user` (an existing user), or, as before users existed, `name`
/// and `role`: user `name` is created with `role` if it does not exist,
/// and refused if it exists with another role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLink {
    /// The sealrun user the Slack user is (shown in runs they submit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Without `user`: the user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Without `user`: the user's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// A linked Slack user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// Slack team id.
    pub team_id: String,
    /// Slack user id (`U...` or `W...`).
    pub user_id: String,
    /// The sealrun user they are linked to.
    pub name: String,
    /// That user's role.
    pub role: Role,
    /// Whether that user is disabled (the link then works no more).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Unix milliseconds the link was made or last changed.
    pub updated_at_ms: i64,
}

/// `GET /v1/integrations/slack/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Linked users, by team then user id.
    pub users: Vec<UserView>,
}

/// Who sees a message in the channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    /// Only the user who typed the command.
    #[default]
    Ephemeral,
    /// Everyone in the channel.
    InChannel,
}

/// A message for Slack: the answer to a slash command, and what is posted
/// to its `response_url` when the run ends. `text` is Slack `mrkdwn`, with
/// `&`, `<` and `>` escaped wherever it holds user or command text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackMessage {
    /// Who sees it.
    pub response_type: ResponseType,
    /// The text.
    pub text: String,
}
