//! Telling Slack how a run ended: a message posted to the slash command's
//! `response_url` once the run is over.
//!
//! One task per run waits on the run's change notifications (the same ones
//! log followers use), re-reading the database when woken and at least every
//! [`RECHECK`], so a lost wake-up costs latency, never the message. Slack
//! accepts up to five posts to a `response_url` within 30 minutes: a failed
//! post is retried with backoff within those limits; a run still going after
//! 30 minutes is not reported (its result stays in sealrun).
//!
//! What is owed is stored (`Control::slack_notice_owed`, the URL sealed)
//! until it is posted, refused for good or given up, and resumed when the
//! control plane starts ([`resume`]): a run that ends while the control
//! plane is down or restarting is still reported, within the URL's
//! lifetime.

use super::{SlackState, escape};
use crate::clock::unix_ms;
use crate::error::ApiError;
use reqwest::Url;
use sealrun_control::{Error, Member, SlackNotice};
use sealrun_wire::approval::APPROVAL_EXPIRED;
use sealrun_wire::run::{RunStatus, RunView};
use sealrun_wire::slack::{ResponseType, SlackMessage};
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Bytes of output shown by `logs` and in the final message.
pub(crate) const TAIL_BYTES: usize = 3000;
/// How long Slack honours a `response_url`.
pub(crate) const URL_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Longest wait between two looks at a run.
const RECHECK: Duration = Duration::from_secs(5);
/// How long an ended run's late log uploads are waited for.
const LOG_GRACE: Duration = Duration::from_secs(10);
/// Posts per `response_url` (Slack allows five).
const ATTEMPTS: u32 = 5;

/// Accepts `https://` URLs, and `http://` to a loopback address (so a local
/// process, such as a test, can stand in for Slack); refuses anything else.
pub(crate) fn check_response_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    let loopback = url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err("must be https:// (or http:// to a loopback address)".to_owned()),
    }
}

/// Starts watching `run_id` (submitted by `who`), to post its result to
/// `url` when it ends, until Unix milliseconds `expires_at_ms` (the URL's
/// end). The caller has stored the notice; it is forgotten here once
/// settled, and kept if the server stops first.
pub(crate) fn spawn(state: SlackState, who: Member, run_id: String, url: Url, expires_at_ms: i64) {
    let tasks = state.slack.tasks.clone();
    tasks.spawn(async move {
        let left = u64::try_from(expires_at_ms.saturating_sub(unix_ms())).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_millis(left);
        let settled = match wait_for_end(&state, &who, &run_id, deadline).await {
            Waited::Ended(view, tail) => {
                let message = SlackMessage {
                    response_type: ResponseType::Ephemeral,
                    text: final_text(&view, &tail),
                };
                post(&state, &run_id, &url, &message, deadline).await
            }
            Waited::GaveUp => true,
            Waited::Stopping => false,
        };
        if settled {
            if let Err(e) = state.app.control.slack_notice_settled(&run_id).await {
                tracing::warn!(run = %run_id, error = %e, "cannot forget a settled Slack notice");
            }
        }
    });
}

/// Until the server stops, every [`RENEW`]: keeps this replica's hold on
/// the notices it waits for, and resumes those no live replica holds (a
/// previous process's, a dead replica's): each notice is waited on, and
/// posted, by one replica at a time.
pub(crate) async fn resume(state: SlackState) {
    loop {
        resume_owed(&state).await;
        tokio::select! {
            () = tokio::time::sleep(RENEW) => {}
            () = state.app.control.shutting_down() => return,
        }
    }
}

/// How often a replica renews its hold on the notices it waits for: well
/// within the hold's 30 s, so a live replica never loses one.
const RENEW: Duration = Duration::from_secs(5);

async fn resume_owed(state: &SlackState) {
    let owed = match state.app.control.slack_notices_owed().await {
        Ok(owed) => owed,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the run results owed to Slack");
            return;
        }
    };
    if !owed.is_empty() {
        tracing::info!(count = owed.len(), "resuming run results owed to Slack");
    }
    for SlackNotice {
        run_id,
        response_url,
        expires_at_ms,
        member,
        ..
    } in owed
    {
        match check_response_url(&response_url) {
            Ok(url) => spawn(state.clone(), member, run_id, url, expires_at_ms),
            Err(_) => {
                let _ = state.app.control.slack_notice_settled(&run_id).await;
            }
        }
    }
}

/// How waiting for a run's end ended.
enum Waited {
    /// The run ended and its output is in.
    Ended(Box<RunView>, String),
    /// Nothing will be posted: the URL expired first, or the run cannot be
    /// read.
    GaveUp,
    /// The server is stopping: the notice stays owed.
    Stopping,
}

/// The run once it ended and its output is in.
async fn wait_for_end(state: &SlackState, who: &Member, run_id: &str, deadline: Instant) -> Waited {
    let control = &state.app.control;
    let mut watch = match control.watch_run(who, run_id) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(run = run_id, error = %e, "cannot watch a run for Slack");
            return Waited::GaveUp;
        }
    };
    let mut ended_at: Option<Instant> = None;
    loop {
        match control
            .run_tail(who, run_id.to_owned(), TAIL_BYTES + 4)
            .await
        {
            Ok(t) if t.run.status.is_terminal() => {
                let since = *ended_at.get_or_insert_with(Instant::now);
                if t.complete || since.elapsed() >= LOG_GRACE {
                    return Waited::Ended(Box::new(t.run), shown_tail(&t.tail));
                }
            }
            Ok(_) => {}
            Err(Error::Internal(_) | Error::Unavailable(_)) => {
                tracing::warn!(run = run_id, "cannot read a run for Slack")
            }
            Err(_) => return Waited::GaveUp,
        }
        tokio::select! {
            () = watch.changed() => {}
            () = tokio::time::sleep(RECHECK) => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!(run = run_id, "run still going when its Slack response_url expired: not reported to Slack");
                return Waited::GaveUp;
            }
            () = control.shutting_down() => return Waited::Stopping,
        }
    }
}

/// The last [`TAIL_BYTES`] of `bytes`, as text.
fn shown_tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    escape::tail(&text, TAIL_BYTES).to_owned()
}

/// The run and the last [`TAIL_BYTES`] of its stored (redacted) output, all
/// streams in the order they were produced.
pub(crate) async fn tail(
    state: &SlackState,
    who: &Member,
    run_id: String,
) -> Result<(RunView, String), ApiError> {
    // A little more than shown, so the cut lands on a character boundary.
    let t = state
        .app
        .control
        .run_tail(who, run_id, TAIL_BYTES + 4)
        .await?;
    Ok((t.run, shown_tail(&t.tail)))
}

/// `head`, then the tail of the output in a code block.
pub(crate) fn with_tail(head: String, view: &RunView, tail: &str) -> String {
    let mut text = head;
    if tail.is_empty() {
        text.push_str(".\n_(no output)_");
    } else {
        let cut = (view.log_bytes as usize > tail.len()) || view.log_truncated;
        text.push_str(if cut {
            ". The end of its output:\n"
        } else {
            ". Output:\n"
        });
        text.push_str(&escape::code_block(tail));
    }
    text.push_str(&format!("\nFull log: `sealrun runs logs {}`", view.id));
    text
}

fn final_text(view: &RunView, tail: &str) -> String {
    let verdict = match view.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Canceled => "was canceled",
        RunStatus::TimedOut => "timed out",
        RunStatus::Lost => "was lost (its agent vanished; it may or may not have run)",
        RunStatus::Error => "could not be run",
        RunStatus::Expired
            if view
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(APPROVAL_EXPIRED)) =>
        {
            "expired: it was not approved in time, and it never ran"
        }
        RunStatus::Expired => "expired: no agent took it in time, and it never ran",
        RunStatus::Rejected => "was rejected, and never ran",
        RunStatus::PendingApproval => "is waiting for approval",
        RunStatus::Queued | RunStatus::Running => "is still going",
    };
    let mut head = format!(
        "Run `{}` on target `{}` *{verdict}*",
        view.id,
        escape::text(&view.target)
    );
    if let Some(code) = view.exit_code {
        head.push_str(&format!(" with exit code {code}"));
    }
    if let (Some(start), Some(end)) = (view.started_at_ms, view.finished_at_ms) {
        head.push_str(&format!(
            " after {:.1} s",
            (end - start).max(0) as f64 / 1000.0
        ));
    }
    if let Some(e) = &view.error {
        head.push_str(&format!(" ({})", escape::text(e)));
    }
    with_tail(head, view, tail)
}

/// Posts `message`, retrying failures (1 s, 2 s, 4 s... apart) until it is
/// accepted, Slack refuses it for good, or the URL's attempts or lifetime
/// run out; `false` if the server began stopping first (it is owed still).
async fn post(
    state: &SlackState,
    run_id: &str,
    url: &Url,
    message: &SlackMessage,
    deadline: Instant,
) -> bool {
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let sent = state
            .slack
            .http
            .post(url.clone())
            .json(message)
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(run = run_id, "run result posted to Slack");
                return true;
            }
            // 4xx: the URL expired or was used up; asking again will not help.
            Ok(r)
                if r.status().is_client_error()
                    && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::warn!(
                    run = run_id,
                    status = r.status().as_u16(),
                    "Slack refused the run result"
                );
                return true;
            }
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            // Without the URL: it is a credential for the channel.
            Err(e) => format!("{}", e.without_url()),
        };
        tracing::warn!(run = run_id, attempt, error = %retry, "cannot post the run result to Slack");
        if attempt == ATTEMPTS || Instant::now() + backoff >= deadline {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = state.app.control.shutting_down() => return false,
        }
        backoff *= 2;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn response_urls_must_be_https_or_loopback_http() {
        for ok in [
            "https://hooks.slack.com/commands/T1/2/x",
            "http://127.0.0.1:8080/x",
            "http://localhost:1/x",
            "http://[::1]:1/x",
        ] {
            assert!(check_response_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.slack.com/commands/T1/2/x",
            "http://10.0.0.1/x",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "not a url",
            "",
        ] {
            assert!(check_response_url(bad).is_err(), "{bad}");
        }
    }
}
