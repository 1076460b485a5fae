//! Approval requests in the approvers' Slack channel: a message with the
//! spec being approved and Approve / Reject buttons, updated as decisions
//! come in, showing the outcome at the end; the requester is told.
//!
//! The domain keeps the outbox (`Control::slack_approval_posts`), written
//! in the transaction that holds the run, so no request misses its message
//! across a crash or restart. [`outbox`] drains it: woken when a request is
//! submitted or decided, and every [`RECHECK`] (expiry wakes nobody). A
//! failed post is retried with backoff, and given up after
//! `sealrun_control::MAX_POST_ATTEMPTS`; the request itself never depends
//! on Slack (`sealrun approvals` works without it).
//!
//! The buttons carry the run id and its spec digest: a click approves the
//! spec the message showed, or nothing (`interact`).

use super::web::{self, WebError};
use super::{SlackState, escape};
use sealrun_control::ApprovalPost;
use sealrun_wire::approval::ApprovalView;
use sealrun_wire::run::RunStatus;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait between two looks at the outbox.
const RECHECK: Duration = Duration::from_secs(5);
/// Longest wait before a failed post is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The buttons' `action_id`s.
pub(crate) const APPROVE: &str = "sealrun_approve";
pub(crate) const REJECT: &str = "sealrun_reject";
/// Characters of a field shown before it is cut (Slack's limits are 2000
/// per field and 3000 per section).
const FIELD_CHARS: usize = 1500;
const ARGV_CHARS: usize = 2500;

/// Drains the outbox until the server stops.
pub(crate) async fn outbox(state: SlackState) {
    let control = &state.app.control;
    // When each failing message may be tried again.
    let mut not_before: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        match control.slack_approval_posts().await {
            Ok(posts) => {
                let now = Instant::now();
                not_before.retain(|_, at| *at > now);
                for post in posts {
                    let key = (post.run_id.clone(), post.team_id.clone());
                    if not_before.contains_key(&key) {
                        continue;
                    }
                    if let Some(wait) = step(&state, &post).await {
                        not_before.insert(key, Instant::now() + wait);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the approval messages owed to Slack"),
        }
        tokio::select! {
            () = control.slack_approvals_changed() => {}
            () = tokio::time::sleep(RECHECK) => {}
            () = control.shutting_down() => return,
        }
    }
}

/// Where a request stands, as its message shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Approved,
    Rejected,
    Expired,
    /// Canceled while it waited (by its submitter or anyone who may cancel).
    Canceled,
}

fn outcome(v: &ApprovalView) -> Outcome {
    match v.status {
        RunStatus::PendingApproval => Outcome::Pending,
        RunStatus::Rejected => Outcome::Rejected,
        RunStatus::Expired if v.remaining() > 0 => Outcome::Expired,
        RunStatus::Canceled if v.remaining() > 0 => Outcome::Canceled,
        _ => Outcome::Approved,
    }
}

/// What a message shows, as stored: a new approval changes it.
fn shown(v: &ApprovalView) -> String {
    format!("{:?}:{}", outcome(v), v.approvals.len())
}

/// Brings one message up to date; how long to wait before trying again
/// if that failed.
async fn step(state: &SlackState, post: &ApprovalPost) -> Option<Duration> {
    let control = &state.app.control;
    let now_shown = shown(&post.view);
    let done = outcome(&post.view) != Outcome::Pending;
    if post.shown.as_deref() == Some(now_shown.as_str()) && !done {
        return None;
    }
    let (text, blocks) = message(&post.view);
    let sent = match &post.ts {
        // Decided before it could be posted: nothing to update.
        None if done => Ok(None),
        None => web::call(
            &state.slack,
            &post.bot_token,
            "chat.postMessage",
            &json!({"channel": post.channel, "text": text, "blocks": blocks, "unfurl_links": false}),
        )
        .await
        .map(|answer| answer["ts"].as_str().map(str::to_owned)),
        Some(ts) if post.shown.as_deref() == Some(now_shown.as_str()) => Ok(Some(ts.clone())),
        Some(ts) => web::call(
            &state.slack,
            &post.bot_token,
            "chat.update",
            &json!({"channel": post.channel, "ts": ts, "text": text, "blocks": blocks}),
        )
        .await
        .map(|_| Some(ts.clone())),
    };
    match sent {
        Ok(ts) => {
            let recorded = if done {
                tell_requester(state, post).await;
                control
                    .slack_approval_settled(&post.run_id, &post.team_id, post.org_id)
                    .await
            } else {
                match ts {
                    Some(ts) => control.slack_approval_shown(post, &ts, &now_shown).await,
                    None => {
                        tracing::warn!(run = %post.run_id, "Slack posted an approval message without its ts: it cannot be updated");
                        control
                            .slack_approval_settled(&post.run_id, &post.team_id, post.org_id)
                            .await
                    }
                }
            };
            if let Err(e) = recorded {
                tracing::warn!(run = %post.run_id, error = %e, "cannot record an approval message's state");
            }
            None
        }
        Err(e) => {
            tracing::warn!(run = %post.run_id, team = %post.team_id, channel = %post.channel, error = %e, "cannot post an approval request to Slack");
            match control.slack_approval_failed(post).await {
                Ok(true) => {
                    tracing::error!(run = %post.run_id, team = %post.team_id, "gave up posting an approval request to Slack (it is still in `sealrun approvals list`)");
                    None
                }
                Ok(false) => Some(backoff(post.attempts, &e)),
                Err(e) => {
                    tracing::warn!(run = %post.run_id, error = %e, "cannot count a failed Slack post");
                    Some(MAX_BACKOFF)
                }
            }
        }
    }
}

/// 2 s, 4 s, 8 s... up to [`MAX_BACKOFF`]; a refusal waits longest (an
/// admin must fix the channel or token).
fn backoff(attempts: u32, e: &WebError) -> Duration {
    match e {
        WebError::Refused(_) => MAX_BACKOFF,
        WebError::Transient(_) => {
            Duration::from_secs(2u64.saturating_pow(attempts.saturating_add(1))).min(MAX_BACKOFF)
        }
    }
}

/// Tells the requester (if their sealrun user is linked in the workspace)
/// how their request ended, in a direct message from the bot.
async fn tell_requester(state: &SlackState, post: &ApprovalPost) {
    let Some(requester) = &post.requester else {
        return;
    };
    let v = &post.view;
    let what = match outcome(v) {
        Outcome::Pending => return,
        Outcome::Canceled => {
            "was *canceled* before enough people approved it. It will not run".to_owned()
        }
        Outcome::Approved => format!("was *approved* by {} and is {}", names(v), v.status),
        Outcome::Rejected => match &v.rejection {
            Some(r) => format!(
                "was *rejected* by {}: {}. It will not run",
                escape::text(&r.user),
                escape::text(&r.reason)
            ),
            None => "was *rejected*. It will not run".to_owned(),
        },
        Outcome::Expired => {
            "*expired* before enough people approved it. It will not run".to_owned()
        }
    };
    let text = format!(
        "Your run `{}` on target `{}` {what}.",
        v.run_id,
        escape::text(&v.spec.target)
    );
    let sent = web::call(
        &state.slack,
        &post.bot_token,
        "chat.postMessage",
        &json!({"channel": requester, "text": text}),
    )
    .await;
    if let Err(e) = sent {
        tracing::warn!(run = %v.run_id, error = %e, "cannot tell the requester how their approval request ended");
    }
}

/// The approvers so far, by name.
fn names(v: &ApprovalView) -> String {
    let names: Vec<String> = v.approvals.iter().map(|a| escape::text(&a.user)).collect();
    if names.is_empty() {
        "nobody".to_owned()
    } else {
        names.join(", ")
    }
}

/// `s` cut to `max` characters, and whether it was.
fn cut(s: String, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((at, _)) => (format!("{}…", &s[..at]), true),
        None => (s, false),
    }
}

/// The message of request `v`: its fallback text and its blocks. Every
/// piece of text sealrun did not write is escaped.
pub(crate) fn message(v: &ApprovalView) -> (String, Value) {
    let id = &v.run_id;
    let target = escape::text(&v.spec.target);
    let state = outcome(v);
    let title = match state {
        Outcome::Pending => "Approval requested",
        Outcome::Approved => "Approved",
        Outcome::Rejected => "Rejected",
        Outcome::Expired => "Expired",
        Outcome::Canceled => "Canceled",
    };
    let text = format!(
        "{title}: run {id} on target {} by {}",
        escape::text(&v.spec.target),
        escape::text(&v.submitter)
    );
    let runbook = match &v.spec.runbook {
        Some(r) => format!(
            " (runbook `{}` version {})",
            escape::text(&r.name),
            r.version
        ),
        None => String::new(),
    };
    let (argv, argv_cut) = cut(sealrun_wire::shell::join(&v.spec.argv), ARGV_CHARS);
    let mut any_cut = argv_cut;
    let mut field = |name: &str, value: String| {
        let (value, was_cut) = cut(value, FIELD_CHARS);
        any_cut |= was_cut;
        json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", if value.is_empty() { "none".to_owned() } else { value })})
    };
    let secrets = v
        .spec
        .secrets
        .iter()
        .map(|s| escape::text(s))
        .collect::<Vec<_>>()
        .join(", ");
    let env = v
        .spec
        .env
        .iter()
        .map(|(k, val)| escape::text(&format!("{k}={val}")))
        .collect::<Vec<_>>()
        .join("\n");
    let approvals = format!(
        "{} of {} from {}{}",
        v.approvals.len(),
        v.required,
        escape::text(&v.approvers),
        if v.approvals.is_empty() {
            String::new()
        } else {
            format!(" ({})", names(v))
        }
    );
    let expires = v
        .expires_at_ms
        .map(|ms| {
            let secs = ms / 1000;
            format!("<!date^{secs}^{{date_short_pretty}} {{time}}|{secs} (Unix time)>")
        })
        .unwrap_or_default();
    let fields = vec![
        field("Secrets", secrets),
        field("Environment", env),
        field("Image", escape::text(&v.spec.image)),
        field("Timeout", format!("{} s", v.spec.timeout_secs)),
        field("Approvals", approvals),
        field("Expires", expires),
    ];
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
            "*{title}*: {} wants to run on target `{target}`{runbook}:\n{}",
            escape::text(&v.submitter),
            escape::code_block(&argv)
        )}}),
        json!({"type": "section", "fields": fields}),
    ];
    let mut context = format!(
        "Run `{id}` · spec digest `{}` · `sealrun approvals show {id}`",
        escape::text(&v.digest)
    );
    if any_cut {
        context
            .push_str(" · *this message shows the spec in part: read it whole before approving*");
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    let value = format!("{id} {}", v.digest);
    match state {
        Outcome::Pending => blocks.push(json!({
            "type": "actions",
            "block_id": "sealrun_decision",
            "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve"}, "value": value},
                {"type": "button", "action_id": REJECT, "style": "danger",
                 "text": {"type": "plain_text", "text": "Reject"}, "value": value},
            ],
        })),
        _ => {
            let verdict = match state {
                Outcome::Approved => format!(
                    ":white_check_mark: *Approved* by {}: the run is {}.",
                    names(v),
                    v.status
                ),
                Outcome::Rejected => match &v.rejection {
                    Some(r) => format!(
                        ":x: *Rejected* by {}: {}",
                        escape::text(&r.user),
                        escape::text(&r.reason)
                    ),
                    None => ":x: *Rejected*.".to_owned(),
                },
                Outcome::Expired => {
                    ":hourglass: *Expired* before enough approvals: it will not run.".to_owned()
                }
                Outcome::Canceled | Outcome::Pending => {
                    ":no_entry_sign: *Canceled* before enough approvals: it will not run."
                        .to_owned()
                }
            };
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": verdict}}));
        }
    }
    (text, Value::Array(blocks))
}
