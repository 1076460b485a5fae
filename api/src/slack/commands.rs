//! `POST /v1/integrations/slack/commands`: a `/sealrun` slash command.
//!
//! Verified by [`auth::authenticate`] (Slack's signature, once, within the
//! replay window) before anything in it is trusted. Everything a verified
//! user is refused (unknown user, too weak a role, a bad command) is a
//! `200` with an ephemeral message, which is how Slack expects a refusal
//! to be shown.

use super::command::{self, Command, USAGE};
use super::{SlackState, auth, escape, notify};
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use sealrun_control::{Member, Workspace, check_slack_id};
use sealrun_wire::run::{RunRequest, RunStatus, RunView, RunbookCall};
use sealrun_wire::slack::{ResponseType, SlackMessage};

/// Where Slack posts slash commands.
pub(crate) const PATH: &str = "/v1/integrations/slack/commands";

/// The fields of a slash-command payload sealrun uses.
#[derive(Debug, Default)]
struct Payload {
    team_id: String,
    user_id: String,
    text: String,
    response_url: String,
}

fn field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn payload(body: &[u8]) -> Payload {
    let mut p = Payload::default();
    for (k, v) in form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "team_id" => &mut p.team_id,
            "user_id" => &mut p.user_id,
            "text" => &mut p.text,
            "response_url" => &mut p.response_url,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = v.into_owned();
        }
    }
    p
}

/// An ephemeral answer.
fn say(text: impl Into<String>) -> Response {
    Json(SlackMessage {
        response_type: ResponseType::Ephemeral,
        text: text.into(),
    })
    .into_response()
}

/// The handler.
pub(crate) async fn handle(State(state): State<SlackState>, req: Request) -> Response {
    let (parts, body) = match auth::read(&state, req).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let team_id = field(&body, "team_id");
    match auth::authenticate(&state, &parts.headers, &body, team_id, PATH).await {
        Ok(workspace) => answer(&state, &workspace, &body).await,
        Err(e) => e.into_response(),
    }
}

/// Answers a verified command.
async fn answer(state: &SlackState, workspace: &Workspace, body: &[u8]) -> Response {
    let p = payload(body);
    if check_slack_id("user", &p.user_id).is_err() {
        return say("sealrun could not tell who you are (no user id in the request).");
    }
    let control = &state.app.control;
    let team_id = workspace.team_id();
    let who = match control.slack_member(workspace, &p.user_id).await {
        Ok(who) => who,
        Err(e) => return say(format!("sealrun failed: {}", escape::text(&e.to_string()))),
    };
    let Some(who) = who else {
        note_refusal(state, workspace, &p.user_id, "unlinked user", &p.text).await;
        return say(format!(
            "Sorry, your Slack account ({}) is not linked to sealrun, so you cannot use `/sealrun`. \
             Ask a sealrun admin to run `sealrun slack link-user --team-id {team_id} --user {} --name <you> --role operator`.",
            escape::text(&p.user_id),
            escape::text(&p.user_id),
        ));
    };
    let cmd = match command::parse(&p.text) {
        Ok(c) => c,
        Err(e) => return say(format!("{}\n\n{USAGE}", escape::text(&e))),
    };
    if let Some(action) = cmd.action().filter(|a| !a.allows(who.role)) {
        if cmd.mutates() {
            note_refusal(
                state,
                workspace,
                &p.user_id,
                "role may not run or cancel",
                &p.text,
            )
            .await;
            return say(format!(
                "Sorry, your sealrun role is *{}*, which can read runs (`status`, `logs`) but not run or cancel them. \
                 Nothing was run.",
                who.role
            ));
        }
        note_refusal(
            state,
            workspace,
            &p.user_id,
            "role may not read runs",
            &p.text,
        )
        .await;
        return say(format!(
            "Sorry, your sealrun role is *{}*, which cannot {}.",
            who.role,
            action.permission().verb
        ));
    }
    let result = match cmd {
        Command::Help => Ok(say(USAGE)),
        Command::Run {
            target,
            secrets,
            argv,
        } => run(state, &who, target, secrets, argv, None, &p.response_url).await,
        Command::Runbook {
            name,
            target,
            params,
        } => {
            let call = RunbookCall { name, params };
            let target = target.unwrap_or_default();
            run(
                state,
                &who,
                target,
                Vec::new(),
                Vec::new(),
                Some(call),
                &p.response_url,
            )
            .await
        }
        Command::Status(id) => status(state, &who, id).await,
        Command::Logs(id) => logs(state, &who, id).await,
        Command::Cancel(id) => cancel(state, &who, id).await,
    };
    result.unwrap_or_else(|e| {
        let why = if e.status.is_server_error() {
            "sealrun had an internal error (see the server log)".to_owned()
        } else {
            escape::text(&e.message)
        };
        say(format!("Refused: {why}"))
    })
}

/// Audits a refused command (nothing else happened).
pub(crate) async fn note_refusal(
    state: &SlackState,
    workspace: &Workspace,
    user_id: &str,
    reason: &'static str,
    text: &str,
) {
    // The first word only: the rest may be a command line with values in it.
    let verb = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .take(32)
        .collect::<String>();
    state
        .app
        .control
        .audit_slack_command_refused(workspace, user_id, reason, &verb)
        .await;
}

/// `run`: exactly what `POST /v1/runs` does (the same validation and
/// `run.submitted` entry, in the domain's one submit path), as the linked
/// user.
async fn run(
    state: &SlackState,
    who: &Member,
    target: String,
    secrets: Vec<String>,
    argv: Vec<String>,
    runbook: Option<RunbookCall>,
    response_url: &str,
) -> Result<Response, ApiError> {
    let url = notify::check_response_url(response_url)
        .map_err(|e| ApiError::bad_request(format!("response_url: {e}")))?;
    let req = RunRequest {
        target,
        argv,
        env: Default::default(),
        secrets,
        timeout_secs: None,
        image: None,
        require_agent: false,
        // Slack has no input to give: the command reads an empty stdin.
        stdin: false,
        break_glass: None,
        runbook,
        // Nobody signs in Slack: agents that enforce signatures refuse
        // these runs (see ARCHITECTURE.md's threat model).
        signed: None,
    };
    let submitted = state.app.control.submit_run(who, req).await?;
    let id = submitted.id;
    // What was queued, as the control plane rendered it (a runbook's argv
    // and target are its to decide).
    let queued = state.app.control.run(who, id.clone()).await?;
    let shown = escape::code_block(&sealrun_wire::shell::join(&queued.argv));
    let target = queued.target;
    let from = match (&queued.runbook, queued.runbook_version) {
        (Some(name), Some(v)) => format!(" (runbook `{}` version {v})", escape::text(name)),
        _ => String::new(),
    };
    let expires_at_ms = crate::clock::unix_ms()
        .saturating_add(i64::try_from(notify::URL_LIFETIME.as_millis()).unwrap_or(i64::MAX));
    // Stored before it is watched, so a restart from now on still posts it.
    if let Err(e) = state
        .app
        .control
        .slack_notice_owed(who, &id, url.as_str(), expires_at_ms)
        .await
    {
        tracing::warn!(run = %id, error = %e, "cannot store the Slack notice; it is kept in memory only");
    }
    notify::spawn(state.clone(), who.clone(), id.clone(), url, expires_at_ms);
    let state_now = match &submitted.approval {
        Some(a) => format!(
            "Run `{id}` waits for approval ({} of {} from {}; `sealrun approvals show {id}`)",
            a.approved,
            a.required,
            escape::text(&a.approvers)
        ),
        None => format!("Queued run `{id}`"),
    };
    Ok(say(format!(
        "{state_now} on target `{}`{from}:\n{shown}\nI will post the result here when it ends.",
        escape::text(&target)
    )))
}

fn run_line(v: &RunView) -> String {
    let mut s = format!(
        "Run `{}` on target `{}` is *{}*",
        v.id,
        escape::text(&v.target),
        v.status
    );
    if let Some(code) = v.exit_code {
        s.push_str(&format!(" (exit code {code})"));
    }
    s
}

/// `status`.
async fn status(state: &SlackState, who: &Member, id: String) -> Result<Response, ApiError> {
    let v = state.app.control.run(who, id).await?;
    let mut text = run_line(&v);
    text.push_str(&format!(
        ".\nSubmitted by {}{}.",
        escape::text(&v.submitter),
        v.agent
            .as_deref()
            .map(|a| format!(", run by agent {}", escape::text(a)))
            .unwrap_or_default()
    ));
    if let Some(e) = &v.error {
        text.push_str(&format!("\nError: {}", escape::text(e)));
    }
    Ok(say(text))
}

/// `logs`.
async fn logs(state: &SlackState, who: &Member, id: String) -> Result<Response, ApiError> {
    let (v, tail) = notify::tail(state, who, id).await?;
    Ok(say(notify::with_tail(run_line(&v), &v, &tail)))
}

/// `cancel`: as `POST /v1/runs/{id}/cancel`, audited as the Slack user.
async fn cancel(state: &SlackState, who: &Member, id: String) -> Result<Response, ApiError> {
    let canceled = state.app.control.cancel_run(who, id).await?;
    let v = canceled.run;
    let text = if canceled.immediate {
        format!("Run `{}` was queued and is now canceled.", v.id)
    } else if v.status == RunStatus::Running {
        format!(
            "Cancel requested: run `{}` is stopped at its agent's next heartbeat.",
            v.id
        )
    } else {
        run_line(&v)
    };
    Ok(say(text))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_first_occurrence_of_each_field_is_used() {
        let p = payload(b"team_id=T1&user_id=U1&text=run+db+--+echo+%27a+b%27&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fx&team_id=T2");
        assert_eq!((p.team_id.as_str(), p.user_id.as_str()), ("T1", "U1"));
        assert_eq!(p.text, "run db -- echo 'a b'");
        assert_eq!(p.response_url, "http://127.0.0.1:9/x");
        assert_eq!(field(b"a=1&team_id=T9", "team_id").as_deref(), Some("T9"));
        assert_eq!(field(b"a=1", "team_id"), None);
    }
}
