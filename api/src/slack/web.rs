//! Slack's Web API, called as an org's Slack app bot (`chat.postMessage`,
//! `chat.update`, `views.open`).
//!
//! Slack answers `200` with `{"ok": false, "error": "..."}` for most
//! failures; [`call`] sorts them into failures worth retrying (rate limits,
//! Slack's own errors, the network) and refusals that will not change by
//! asking again (a bad token, a channel the bot is not in).

use super::Slack;
use reqwest::StatusCode;
use serde_json::Value;

/// Why a call did not succeed.
#[derive(Debug)]
pub(crate) enum WebError {
    /// Worth retrying later.
    Transient(String),
    /// Slack refused it for good (`invalid_auth`, `channel_not_found`...).
    Refused(String),
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebError::Transient(e) => write!(f, "{e} (will retry)"),
            WebError::Refused(e) => write!(f, "{e}"),
        }
    }
}

/// Slack's errors that say "try again later".
const TRANSIENT: &[&str] = &[
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Calls Web API `method` with the JSON `body`, as the bot whose token is
/// `token`; Slack's answer when it says `ok`.
pub(crate) async fn call(
    slack: &Slack,
    token: &str,
    method: &str,
    body: &Value,
) -> Result<Value, WebError> {
    let url = slack
        .api
        .join(method)
        .map_err(|e| WebError::Refused(format!("{method}: {e}")))?;
    let sent = slack
        .http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        // Without the URL: it names nothing secret, but keep errors short.
        .map_err(|e| WebError::Transient(format!("{method}: {}", e.without_url())))?;
    let status = sent.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(WebError::Transient(format!(
            "{method}: HTTP {}",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(WebError::Refused(format!(
            "{method}: HTTP {}",
            status.as_u16()
        )));
    }
    let answer: Value = sent
        .json()
        .await
        .map_err(|e| WebError::Transient(format!("{method}: unreadable answer ({e})")))?;
    if answer["ok"].as_bool() == Some(true) {
        return Ok(answer);
    }
    let error = answer["error"]
        .as_str()
        .unwrap_or("no error named")
        .to_owned();
    if TRANSIENT.contains(&error.as_str()) {
        Err(WebError::Transient(format!("{method}: {error}")))
    } else {
        Err(WebError::Refused(format!("{method}: {error}")))
    }
}
