//! `POST /v1/integrations/slack/interactions`: Slack's interactivity
//! requests, the clicks on an approval message's buttons and the reject
//! dialog's submission.
//!
//! Verified like a slash command ([`auth::authenticate`]: the v0
//! signature, once, within the replay window; forged, stale and replayed
//! requests get the one generic `401`). Then the clicker must be a Slack
//! user linked to a sealrun user, and the decision is the domain's, taken
//! as that user exactly as `sealrun approvals approve|reject` takes it: the
//! same eligibility rule, no self-approval (the submitter is the same
//! person whichever token or Slack account they use), and an approval
//! binds the spec digest the message carried, so a click approves the spec
//! it showed or nothing.
//!
//! Approve acts at once. Reject opens a dialog for the mandatory reason
//! (`views.open`, as the bot), and its submission rejects. Refusals are
//! told to the clicker alone (an ephemeral message through the click's
//! `response_url`, or an error under the dialog's field); the approval
//! message itself is updated by the outbox ([`super::approvals`]).

use super::approvals::{APPROVE, REJECT};
use super::commands::note_refusal;
use super::{SlackState, auth, escape, notify, web};
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sealrun_control::{Action, Member, Workspace};
use sealrun_wire::approval::{ApproveRequest, RejectRequest};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

/// Where Slack posts interactivity requests (the app's Interactivity
/// Request URL).
pub(crate) const PATH: &str = "/v1/integrations/slack/interactions";
/// The reject dialog's `callback_id`, and its reason field's ids.
const REJECT_DIALOG: &str = "sealrun_reject";
const REASON: &str = "reason";

/// Only the team, read before verification to pick the signing secret.
#[derive(Deserialize)]
struct TeamOnly {
    team: SlackId,
}

#[derive(Debug, Deserialize)]
struct SlackId {
    id: String,
}

/// The interactions sealrun handles, parsed at the edge.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Interaction {
    /// A button was clicked.
    BlockActions {
        user: SlackId,
        #[serde(default)]
        actions: Vec<Clicked>,
        #[serde(default)]
        trigger_id: String,
        #[serde(default)]
        response_url: String,
    },
    /// A dialog was submitted.
    ViewSubmission { user: SlackId, view: View },
    /// Anything else (a dialog closed, a shortcut): acknowledged, ignored.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Clicked {
    action_id: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct View {
    #[serde(default)]
    callback_id: String,
    #[serde(default)]
    private_metadata: String,
    #[serde(default)]
    state: ViewState,
}

#[derive(Debug, Default, Deserialize)]
struct ViewState {
    #[serde(default)]
    values: HashMap<String, HashMap<String, Input>>,
}

#[derive(Debug, Deserialize)]
struct Input {
    #[serde(default)]
    value: Option<String>,
}

/// The handler.
pub(crate) async fn handle(State(state): State<SlackState>, req: Request) -> Response {
    let (parts, body) = match auth::read(&state, req).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let payload = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let team_id = serde_json::from_str::<TeamOnly>(&payload)
        .ok()
        .map(|t| t.team.id);
    let workspace = match auth::authenticate(&state, &parts.headers, &body, team_id, PATH).await {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let interaction: Interaction = match serde_json::from_str(&payload) {
        Ok(i) => i,
        Err(e) => {
            return ApiError::bad_request(format!("not a Slack interaction payload: {e}"))
                .into_response();
        }
    };
    match interaction {
        Interaction::BlockActions {
            user,
            actions,
            trigger_id,
            response_url,
        } => {
            let click = Click {
                state: &state,
                workspace: &workspace,
                user_id: &user.id,
                response_url: &response_url,
            };
            for action in &actions {
                match action.action_id.as_str() {
                    APPROVE => click.approve(&action.value).await,
                    REJECT => click.reject(&action.value, &trigger_id).await,
                    _ => {}
                }
            }
            StatusCode::OK.into_response()
        }
        Interaction::ViewSubmission { user, view } if view.callback_id == REJECT_DIALOG => {
            submit_rejection(&state, &workspace, &user.id, &view).await
        }
        Interaction::ViewSubmission { .. } | Interaction::Other => StatusCode::OK.into_response(),
    }
}

/// A button click, by `user_id` of the verified `workspace`.
struct Click<'a> {
    state: &'a SlackState,
    workspace: &'a Workspace,
    user_id: &'a str,
    response_url: &'a str,
}

impl Click<'_> {
    /// The clicker's sealrun user, or `None` (told, and audited).
    async fn member(&self, verb: &str) -> Option<Member> {
        let control = &self.state.app.control;
        match control.slack_member(self.workspace, self.user_id).await {
            Ok(Some(m)) => Some(m),
            Ok(None) => {
                note_refusal(
                    self.state,
                    self.workspace,
                    self.user_id,
                    "unlinked user",
                    verb,
                )
                .await;
                self.tell(format!(
                    "Sorry, your Slack account ({}) is not linked to sealrun, so you cannot {verb} runs. Nothing was recorded.",
                    escape::text(self.user_id)
                ));
                None
            }
            Err(e) => {
                self.tell(refusal(&ApiError::from(e)));
                None
            }
        }
    }

    /// Approves the spec the message showed.
    async fn approve(&self, value: &str) {
        let Some((run_id, digest)) = parse_value(value) else {
            self.tell("This button carries no run: nothing was recorded.".to_owned());
            return;
        };
        let Some(who) = self.member("approve").await else {
            return;
        };
        // A click carries no signature: an agent with a trust file does not
        // count it (see ARCHITECTURE.md's "Signed runs").
        let req = ApproveRequest {
            digest: digest.to_owned(),
            comment: None,
            signed: None,
            passkey: None,
        };
        match self
            .state
            .app
            .control
            .approve_run(&who, run_id.to_owned(), req)
            .await
        {
            Ok(v) => self.tell(match v.remaining() {
                0 => format!("You approved run `{run_id}`: it is queued."),
                n => format!(
                    "You approved run `{run_id}` ({} of {}; {n} more needed).",
                    v.approvals.len(),
                    v.required
                ),
            }),
            Err(e) => self.tell(refusal(&ApiError::from(e))),
        }
    }

    /// Opens the dialog asking for the reason (the rejection is recorded
    /// when it is submitted); refusals that do not need the reason are
    /// told at once.
    async fn reject(&self, value: &str, trigger_id: &str) {
        let Some((run_id, _)) = parse_value(value) else {
            self.tell("This button carries no run: nothing was recorded.".to_owned());
            return;
        };
        let Some(who) = self.member("reject").await else {
            return;
        };
        let control = &self.state.app.control;
        if let Err(e) = Action::ApproveRuns.check(who.role) {
            self.tell(refusal(&ApiError::from(e)));
            return;
        }
        match control.approval(&who, run_id.to_owned()).await {
            Ok(v) if v.spec.submitter_user_id == who.user_id => {
                self.tell(format!(
                    "You submitted run `{run_id}`; withdraw it with `sealrun runs cancel {run_id}` instead."
                ));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                self.tell(refusal(&ApiError::from(e)));
                return;
            }
        }
        let token = match control.slack_bot_token(self.workspace).await {
            Ok(Some(t)) => t,
            Ok(None) | Err(_) => {
                self.tell(format!(
                    "sealrun cannot open the reason dialog (no bot token is set for this workspace): reject with `sealrun approvals reject {run_id} --reason ...`."
                ));
                return;
            }
        };
        let dialog = json!({
            "trigger_id": trigger_id,
            "view": {
                "type": "modal",
                "callback_id": REJECT_DIALOG,
                "private_metadata": run_id,
                "title": {"type": "plain_text", "text": "Reject run"},
                "submit": {"type": "plain_text", "text": "Reject"},
                "close": {"type": "plain_text", "text": "Cancel"},
                "blocks": [{
                    "type": "input",
                    "block_id": REASON,
                    "label": {"type": "plain_text", "text": format!("Why reject run {run_id}?")},
                    "element": {"type": "plain_text_input", "action_id": REASON, "multiline": true, "max_length": 2000},
                }],
            },
        });
        if let Err(e) = web::call(&self.state.slack, &token, "views.open", &dialog).await {
            tracing::warn!(run = run_id, error = %e, "cannot open the reject dialog in Slack");
            self.tell(format!(
                "sealrun cannot open the reason dialog ({}): reject with `sealrun approvals reject {run_id} --reason ...`.",
                escape::text(&e.to_string())
            ));
        }
    }

    /// Tells the clicker alone, through the click's `response_url`.
    fn tell(&self, text: String) {
        let Ok(url) = notify::check_response_url(self.response_url) else {
            tracing::info!(
                user = self.user_id,
                "a Slack click without a usable response_url: its answer is not shown"
            );
            return;
        };
        let http = self.state.slack.http.clone();
        tokio::spawn(async move {
            let body =
                json!({"response_type": "ephemeral", "replace_original": false, "text": text});
            if let Err(e) = http.post(url).json(&body).send().await {
                tracing::warn!(error = %e.without_url(), "cannot answer a Slack click");
            }
        });
    }
}

/// A button's value: `<run id> <spec digest>`.
fn parse_value(value: &str) -> Option<(&str, &str)> {
    let (run, digest) = value.split_once(' ')?;
    (!run.is_empty() && !digest.is_empty()).then_some((run, digest))
}

/// What a refused decision tells the clicker (an internal error only says
/// there was one).
fn refusal(e: &ApiError) -> String {
    if e.status.is_server_error() {
        "Refused: sealrun had an internal error (see the server log).".to_owned()
    } else {
        format!("Refused: {}", escape::text(&e.message))
    }
}

/// The reject dialog was submitted: rejects as the submitter of the
/// dialog. A refusal is shown under the reason field (Slack keeps the
/// dialog open); success closes it.
async fn submit_rejection(
    state: &SlackState,
    workspace: &Workspace,
    user_id: &str,
    view: &View,
) -> Response {
    let refuse = |message: String| {
        Json(json!({"response_action": "errors", "errors": {REASON: message}})).into_response()
    };
    let control = &state.app.control;
    let who = match control.slack_member(workspace, user_id).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            note_refusal(state, workspace, user_id, "unlinked user", "reject").await;
            return refuse(
                "Your Slack account is not linked to sealrun: nothing was recorded.".into(),
            );
        }
        Err(e) => return refuse(refusal(&ApiError::from(e))),
    };
    let reason = view
        .state
        .values
        .get(REASON)
        .and_then(|block| block.get(REASON))
        .and_then(|input| input.value.clone())
        .unwrap_or_default();
    let run_id = view.private_metadata.clone();
    match control
        .reject_run(&who, run_id, RejectRequest { reason })
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => refuse(refusal(&ApiError::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_button_value_is_a_run_id_and_a_digest() {
        assert_eq!(parse_value("r1 sha256:ab"), Some(("r1", "sha256:ab")));
        assert_eq!(parse_value("r1"), None);
        assert_eq!(parse_value(" sha256:ab"), None);
        assert_eq!(parse_value("r1 "), None);
    }

    #[test]
    fn clicks_and_dialog_submissions_parse_and_other_interactions_are_ignored() {
        let click: Interaction = serde_json::from_value(json!({
            "type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1", "name": "x"},
            "trigger_id": "t", "response_url": "https://hooks.slack.com/actions/x",
            "actions": [{"action_id": APPROVE, "value": "r1 d", "type": "button"}],
        }))
        .unwrap_or(Interaction::Other);
        assert!(
            matches!(click, Interaction::BlockActions { ref actions, .. } if actions[0].value == "r1 d")
        );
        let other: Interaction = serde_json::from_value(
            json!({"type": "view_closed", "team": {"id": "T1"}}),
        )
        .unwrap_or(Interaction::BlockActions {
            user: SlackId { id: String::new() },
            actions: Vec::new(),
            trigger_id: String::new(),
            response_url: String::new(),
        });
        assert!(matches!(other, Interaction::Other));
    }
}
