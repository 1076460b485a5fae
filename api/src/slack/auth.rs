//! Who sent a Slack request: the one check every endpoint Slack calls
//! (slash commands, interactivity) makes before reading anything else.
//!
//! No bearer token: Slack's signature is the credential. The raw body is
//! verified before anything in it is trusted; only the team id is read
//! first, to pick the signing secret. A request is accepted once: a replay
//! within the window is refused. A bad, missing, stale or replayed
//! signature, or a team no org has linked, answers the same `401` (the
//! reason goes to the log, and to the org's audit trail if the team is
//! linked), so the answer tells nobody which teams are linked.

use super::SlackState;
use super::verify::{self, Headers, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::error::ApiError;
use axum::http::HeaderMap;
use sealrun_control::{Workspace, check_slack_id};
use std::time::{SystemTime, UNIX_EPOCH};

/// The request's head and raw body (the signature covers the body byte
/// for byte, so it is read whole first), up to the body limit.
pub(crate) async fn read(
    state: &SlackState,
    req: axum::extract::Request,
) -> Result<(axum::http::request::Parts, axum::body::Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let limit = state.app.settings().max_body_bytes;
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large("request body too large"))?;
    Ok((parts, body))
}

/// Unix seconds now, as Slack stamps requests.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A key no signing secret equals: a request from a team no org has linked
/// is checked against it, so it costs what a linked team's does, and then
/// refused like a bad signature.
const UNLINKED_KEY: &[u8] = b"sealrun: no workspace is linked for this team";

/// Verifies the request, and that it is the first time it is seen. Every
/// refusal (no or malformed headers, a stale timestamp, a bad signature, a
/// team no org has linked, a replay) is the same `401`, so the answer says
/// nothing about which teams are linked or why; the reason goes to the log
/// and, for a linked team, to its org's audit trail.
pub(crate) async fn authenticate(
    state: &SlackState,
    headers: &HeaderMap,
    body: &[u8],
    team_id: Option<String>,
    path: &'static str,
) -> Result<Workspace, ApiError> {
    let signed = verify::parse_headers(Headers {
        timestamp: headers.get(TIMESTAMP_HEADER).map(|v| v.as_bytes()),
        signature: headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()),
    });
    // Only to choose the secrets: nothing else is read before verification.
    let team_id = team_id.filter(|t| check_slack_id("team", t).is_ok());
    let links = match &team_id {
        Some(t) => state.app.control.slack_workspaces(t).await?,
        None => Vec::new(),
    };
    let signed = match signed {
        Ok(s) => s,
        Err(r) => return Err(refused(state, team_id.as_deref(), &links, r, path).await),
    };
    let now = unix_now();
    if links.is_empty() {
        let checked = verify::verify(UNLINKED_KEY, &signed, body, now);
        let why = checked.err().unwrap_or(verify::Refusal::Unlinked);
        return Err(refused(state, team_id.as_deref(), &links, why, path).await);
    }
    // Each org that linked the team has its own app and signing secret:
    // the one that verifies says which org the request is for (linking
    // refuses a secret another org of the team uses, so at most one does).
    let mut verified = None;
    let mut why = verify::Refusal::BadSignature;
    for w in &links {
        match verify::verify(w.signing_secret(), &signed, body, now) {
            Ok(()) => verified = Some(w.clone()),
            Err(r) => why = r,
        }
    }
    let Some(workspace) = verified else {
        return Err(refused(state, team_id.as_deref(), &links, why, path).await);
    };
    let first = state
        .app
        .control
        .slack_accept_once(&workspace, signed.mac(), signed.replayable_until_ms())
        .await?;
    if !first {
        let r = verify::Refusal::Replayed;
        return Err(refused(state, team_id.as_deref(), &[workspace], r, path).await);
    }
    Ok(workspace)
}

/// Logs, meters and audits a refused request (in the trail of each org
/// that linked the team: any of them may be the one it claims to be for);
/// the answer is the same whatever the reason.
async fn refused(
    state: &SlackState,
    team_id: Option<&str>,
    links: &[Workspace],
    why: verify::Refusal,
    path: &str,
) -> ApiError {
    let reason = why.reason();
    state.app.metrics.auth_failed();
    tracing::warn!(
        team = team_id.unwrap_or("-"),
        reason,
        "Slack request refused"
    );
    if let Some(first) = links.first() {
        if state.slack.admit_failure(first.team_id()) {
            for w in links {
                state
                    .app
                    .control
                    .audit_slack_signature_refused(w, reason, path)
                    .await;
            }
        }
    }
    ApiError::unauthorized(REFUSED)
}

/// The one answer to every refused request.
pub(crate) const REFUSED: &str = "Slack request refused: it is not signed with the signing secret of a linked workspace, or it is stale or was already received (see the control plane's log)";
