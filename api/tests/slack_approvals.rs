//! Approval requests in Slack, over real HTTPS against a stand-in for
//! Slack's Web API: the request is posted to the approvers' channel with
//! Approve / Reject buttons; a signed click approves as the clicker's
//! linked user (and the run is dispatched), or opens the reject dialog
//! whose submission rejects; the message is updated and the requester
//! told. Forged, replayed, unlinked and self-approving clicks are refused.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::slack::{StandIn, now_secs, sign};
use sealrun_testkit::{Client, InProcessWorld, World, quick_settings, run_request, to_value};
use sealrun_wire::admin::{Role, TargetSpec};
use sealrun_wire::approval::ApprovalView;
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::{RunCreated, RunStatus};
use sealrun_wire::slack::WorkspaceList;
use serde_json::{Value, json};

const TEAM: &str = "T0SEALRUN";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const BOT_TOKEN: &str = "xoxb-1234567890-abcdefghijklmnop";
const CHANNEL: &str = "C0APPROVE";
const INTERACTIONS: &str = "/v1/integrations/slack/interactions";

/// Org `acme`: alice and bob (group `dba`, Slack U0ALICE and U0BOB), carol
/// (an operator, Slack U0CAROL) who submits; Slack linked with an
/// approvals channel; target `db` needs `approvals` from `dba`.
struct Setup {
    w: InProcessWorld,
    slack: StandIn,
    carol: Client,
}

async fn setup(approvals: u32) -> Setup {
    let slack = StandIn::start().await;
    let api = slack.api_url();
    let w = World::in_process_configured(|c| c.slack_api_url = api, quick_settings()).await;
    let spec: TargetSpec = serde_json::from_value(json!({
        "name": "db", "image": sealrun_testkit::IMAGE, "timeout_secs": 600,
        "policy": {"approval": {"require": "ad_hoc", "approvals": approvals, "from_groups": ["dba"]}},
    }))
    .unwrap();
    w.admin.put("/v1/targets/db", to_value(&spec)).await.ok();
    let carol = w.admin.token("carol", Role::Operator).await;
    w.admin.token("alice", Role::Operator).await;
    w.admin.token("bob", Role::Operator).await;
    w.admin
        .post(
            "/v1/groups",
            json!({"name": "dba", "members": ["alice", "bob"]}),
        )
        .await
        .ok();
    w.admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": SECRET}),
        )
        .await
        .ok();
    for (slack_user, user) in [("U0ALICE", "alice"), ("U0BOB", "bob"), ("U0CAROL", "carol")] {
        w.admin
            .put(
                &format!("/v1/integrations/slack/users/{TEAM}/{slack_user}"),
                json!({"user": user}),
            )
            .await
            .ok();
    }
    w.admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}/approvals"),
            json!({"channel": CHANNEL, "bot_token": BOT_TOKEN}),
        )
        .await
        .ok();
    Setup { w, slack, carol }
}

/// Carol submits a command on `db`: it waits for approval.
async fn submit(s: &Setup) -> RunCreated {
    let a = s
        .carol
        .post(
            "/v1/runs",
            to_value(&run_request("db", &["psql", "-c", "delete from sessions"])),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let created: RunCreated = a.parse();
    assert_eq!(created.status, RunStatus::PendingApproval);
    created
}

async fn approval(s: &Setup, id: &str) -> ApprovalView {
    s.w.admin
        .get(&format!("/v1/approvals/{id}"))
        .await
        .ok()
        .parse()
}

/// The approval message posted for a request, and the value its buttons carry.
async fn posted(s: &mut Setup) -> (Value, String) {
    let got = s.slack.next_to("chat.postMessage").await;
    assert_eq!(
        got.authorization.as_deref(),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    assert_eq!(got.body["channel"], CHANNEL);
    let value = buttons(&got.body)[0]["value"].as_str().unwrap().to_owned();
    (got.body, value)
}

/// The buttons of a message (none once decided).
fn buttons(message: &Value) -> Vec<Value> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .collect()
}

/// A form body carrying interaction `payload`, as Slack sends it.
fn body(payload: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// A click on button `action_id` carrying `value`, by Slack user `user`.
fn click(s: &Setup, user: &str, action_id: &str, value: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    body(&json!({
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "username": "someone", "team_id": TEAM},
        "api_app_id": "A0SEALRUN",
        "trigger_id": format!("{n}.4744.trigger"),
        "response_url": s.slack.response_url(),
        "container": {"type": "message", "channel_id": CHANNEL, "message_ts": "1700000000.000001"},
        "actions": [{"type": "button", "block_id": "sealrun_decision", "action_id": action_id, "value": value, "action_ts": format!("1700000001.{n}")}],
    }))
}

/// Posts `body` to the interactivity endpoint, signed with `secret` at `ts`.
async fn post_signed(s: &Setup, body: &str, secret: &str, ts: i64) -> (StatusCode, String) {
    let resp =
        s.w.server
            .http
            .post(format!("{}{INTERACTIONS}", s.w.server.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sign(secret, ts, body))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Posts `body` signed as Slack would, now.
async fn interact(s: &Setup, body: &str) -> (StatusCode, String) {
    post_signed(s, body, SECRET, now_secs()).await
}

/// The ephemeral answer the clicker got through the click's `response_url`.
async fn told(s: &mut Setup) -> String {
    let got = s.slack.next_to("actions").await;
    assert_eq!(got.body["response_type"], "ephemeral", "{}", got.body);
    assert_eq!(got.body["replace_original"], false);
    got.body["text"].as_str().unwrap().to_owned()
}

/// The approval message was updated to show the outcome (`shows`), without
/// buttons, and the requester (carol, U0CAROL) was told (`told`) in a direct
/// message.
async fn outcome_shown_and_told(s: &mut Setup, shows: &str, told: &str) {
    let updated = s.slack.next_to("chat.update").await;
    assert_eq!(
        updated.body["ts"], "1700000000.000001",
        "the posted message"
    );
    assert!(buttons(&updated.body).is_empty());
    let blocks = updated.body["blocks"].to_string();
    assert!(blocks.contains(shows), "{blocks}");
    let dm = s.slack.next_to("chat.postMessage").await;
    assert_eq!(dm.body["channel"], "U0CAROL");
    let text = dm.body["text"].as_str().unwrap();
    assert!(text.contains(told), "{text}");
}

async fn trail(s: &Setup, action: &str) -> Vec<sealrun_wire::audit::AuditEntry> {
    let page: AuditPage = s.w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    page.entries
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

#[tokio::test]
async fn a_request_is_posted_to_the_approvers_channel_with_its_spec_and_two_buttons() {
    let mut s = setup(1).await;
    let created = submit(&s).await;
    let (message, value) = posted(&mut s).await;
    let view = approval(&s, &created.id).await;
    assert_eq!(value, format!("{} {}", created.id, view.digest));
    let ids: Vec<String> = buttons(&message)
        .iter()
        .map(|b| b["action_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["sealrun_approve", "sealrun_reject"]);
    let shown = message["blocks"].to_string();
    assert!(shown.contains("psql -c"), "{shown}");
    assert!(shown.contains("delete from sessions"), "{shown}");
    assert!(shown.contains("0 of 1 from group dba"), "{shown}");
    assert!(shown.contains(&view.digest), "{shown}");
    // The bot token is never shown back.
    let list: WorkspaceList =
        s.w.admin
            .get("/v1/integrations/slack/workspaces")
            .await
            .ok()
            .parse();
    assert_eq!(
        list.workspaces[0].approvals_channel.as_deref(),
        Some(CHANNEL)
    );
    let listed =
        s.w.admin
            .get("/v1/integrations/slack/workspaces")
            .await
            .text;
    assert!(!listed.contains(BOT_TOKEN), "{listed}");
}

#[tokio::test]
async fn a_signed_approve_click_records_the_approval_and_the_run_is_dispatched() {
    let mut s = setup(1).await;
    let created = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    assert!(
        s.w.agent.poll().await.is_none(),
        "dispatched before approval"
    );

    let (status, _) = interact(&s, &click(&s, "U0ALICE", "sealrun_approve", &value)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(told(&mut s).await.contains("You approved run"));

    let view = approval(&s, &created.id).await;
    assert_eq!(view.status, RunStatus::Queued);
    assert_eq!(view.approvals.len(), 1);
    assert_eq!(view.approvals[0].user, "alice");
    let approved = trail(&s, "run.approved").await;
    assert_eq!(approved[0].actor, format!("slack:{TEAM}/U0ALICE"));
    let assignment = s.w.agent.next_run().await;
    assert_eq!(assignment.run_id, created.id);

    outcome_shown_and_told(&mut s, "Approved* by alice", "was *approved* by alice").await;
}

#[tokio::test]
async fn forged_stale_and_replayed_clicks_are_refused_and_record_nothing() {
    let mut s = setup(1).await;
    let created = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    let body = click(&s, "U0ALICE", "sealrun_approve", &value);

    let forged = post_signed(&s, &body, "not-the-signing-secret-of-the-app", now_secs()).await;
    assert_eq!(forged.0, StatusCode::UNAUTHORIZED, "{}", forged.1);
    let stale = post_signed(&s, &body, SECRET, now_secs() - 600).await;
    assert_eq!(stale.0, StatusCode::UNAUTHORIZED, "{}", stale.1);
    assert!(approval(&s, &created.id).await.approvals.is_empty());

    // Positive control: the same click, signed now, counts...
    let ts = now_secs();
    assert_eq!(post_signed(&s, &body, SECRET, ts).await.0, StatusCode::OK);
    assert_eq!(approval(&s, &created.id).await.approvals.len(), 1);
    // ...once: sent again as captured, it is refused.
    let replayed = post_signed(&s, &body, SECRET, ts).await;
    assert_eq!(replayed.0, StatusCode::UNAUTHORIZED, "{}", replayed.1);
    let refusals = trail(&s, "auth.failed").await;
    assert!(
        refusals
            .iter()
            .any(|e| e.detail.contains(INTERACTIONS) && e.detail.contains("signature mismatch")),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn a_click_by_an_unlinked_slack_user_is_refused_and_records_nothing() {
    let mut s = setup(1).await;
    let created = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    let (status, _) = interact(&s, &click(&s, "U0MALLORY", "sealrun_approve", &value)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(told(&mut s).await.contains("not linked to sealrun"));
    assert!(approval(&s, &created.id).await.approvals.is_empty());
    let refused = trail(&s, "slack.command_refused").await;
    assert_eq!(refused[0].actor, format!("slack:{TEAM}/U0MALLORY"));
    // Positive control: a linked dba member's click counts.
    interact(&s, &click(&s, "U0BOB", "sealrun_approve", &value)).await;
    assert_eq!(approval(&s, &created.id).await.approvals.len(), 1);
}

#[tokio::test]
async fn the_submitters_own_click_through_their_slack_account_is_refused() {
    let mut s = setup(1).await;
    let created = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    // Carol submitted with a token; U0CAROL is her too.
    let (status, _) = interact(&s, &click(&s, "U0CAROL", "sealrun_approve", &value)).await;
    assert_eq!(status, StatusCode::OK);
    let said = told(&mut s).await;
    assert!(said.contains("you submitted run"), "{said}");
    let (_, _) = interact(&s, &click(&s, "U0CAROL", "sealrun_reject", &value)).await;
    assert!(told(&mut s).await.contains("You submitted run"));
    let view = approval(&s, &created.id).await;
    assert!(view.approvals.is_empty());
    assert_eq!(view.status, RunStatus::PendingApproval);
}

#[tokio::test]
async fn a_click_approves_only_the_spec_its_message_showed() {
    let mut s = setup(1).await;
    let created = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    let other_digest = format!("{} sha256:{}", created.id, "0".repeat(64));
    interact(&s, &click(&s, "U0ALICE", "sealrun_approve", &other_digest)).await;
    assert!(told(&mut s).await.contains("is not the digest"));
    assert!(approval(&s, &created.id).await.approvals.is_empty());
    // Positive control: the digest the message carried approves.
    interact(&s, &click(&s, "U0ALICE", "sealrun_approve", &value)).await;
    assert_eq!(approval(&s, &created.id).await.status, RunStatus::Queued);
}

#[tokio::test]
async fn reject_asks_for_a_reason_in_a_dialog_and_its_submission_rejects() {
    let mut s = setup(2).await;
    let created = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    interact(&s, &click(&s, "U0BOB", "sealrun_reject", &value)).await;
    let opened = s.slack.next_to("views.open").await;
    assert_eq!(
        opened.authorization.as_deref(),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    assert!(
        opened.body["trigger_id"]
            .as_str()
            .unwrap()
            .ends_with(".4744.trigger")
    );
    let dialog = &opened.body["view"];
    assert_eq!(dialog["private_metadata"], created.id.as_str());
    assert_eq!(
        approval(&s, &created.id).await.status,
        RunStatus::PendingApproval,
        "rejected before a reason was given"
    );

    let submission = |user: &str, reason: &str| {
        body(&json!({
            "type": "view_submission",
            "team": {"id": TEAM},
            "user": {"id": user},
            "view": {
                "id": "V1", "callback_id": dialog["callback_id"], "private_metadata": dialog["private_metadata"],
                "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
            },
        }))
    };
    // A blank reason is refused under the field; the dialog stays open.
    let (status, answer) = interact(&s, &submission("U0BOB", "  ")).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["response_action"], "errors", "{answer}");
    assert_eq!(
        approval(&s, &created.id).await.status,
        RunStatus::PendingApproval
    );

    let (status, answer) = interact(&s, &submission("U0BOB", "not during business hours")).await;
    assert_eq!((status, answer.as_str()), (StatusCode::OK, ""));
    let view = approval(&s, &created.id).await;
    assert_eq!(view.status, RunStatus::Rejected);
    let rejection = view.rejection.unwrap();
    assert_eq!(
        (rejection.user.as_str(), rejection.reason.as_str()),
        ("bob", "not during business hours")
    );
    assert!(
        s.w.agent.poll().await.is_none(),
        "a rejected run was dispatched"
    );
    outcome_shown_and_told(
        &mut s,
        "Rejected* by bob: not during business hours",
        "was *rejected* by bob",
    )
    .await;
}

#[tokio::test]
async fn each_approval_updates_the_message_until_enough_people_approved() {
    let mut s = setup(2).await;
    let created = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    interact(&s, &click(&s, "U0ALICE", "sealrun_approve", &value)).await;
    let said = told(&mut s).await;
    assert!(said.contains("(1 of 2; 1 more needed)"), "{said}");
    let updated = s.slack.next_to("chat.update").await;
    let shown = updated.body["blocks"].to_string();
    assert!(shown.contains("1 of 2 from group dba (alice)"), "{shown}");
    assert_eq!(
        buttons(&updated.body).len(),
        2,
        "still open for a second approver"
    );
    assert!(
        s.w.agent.poll().await.is_none(),
        "dispatched after one approval"
    );
    // The same person again does not count twice.
    interact(&s, &click(&s, "U0ALICE", "sealrun_approve", &value)).await;
    let again = told(&mut s).await;
    assert!(again.contains("each person counts once"), "{again}");
    interact(&s, &click(&s, "U0BOB", "sealrun_approve", &value)).await;
    assert_eq!(s.w.agent.next_run().await.run_id, created.id);
}

#[tokio::test]
async fn approval_requests_are_posted_only_once_a_channel_is_set_and_stop_when_cleared() {
    let mut s = setup(1).await;
    let cleared =
        s.w.admin
            .delete(&format!(
                "/v1/integrations/slack/workspaces/{TEAM}/approvals"
            ))
            .await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT, "{}", cleared.text);
    submit(&s).await;
    // Positive control first: with the channel set again, the next request is posted.
    s.w.admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}/approvals"),
            json!({"channel": CHANNEL, "bot_token": BOT_TOKEN}),
        )
        .await
        .ok();
    let second = submit(&s).await;
    let (_, value) = posted(&mut s).await;
    assert!(
        value.starts_with(&second.id),
        "{value}: the first run was posted"
    );
    // Only admins set it, with a well-formed channel and token.
    let bad =
        s.w.admin
            .put(
                &format!("/v1/integrations/slack/workspaces/{TEAM}/approvals"),
                json!({"channel": CHANNEL, "bot_token": "not-a-token"}),
            )
            .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(!bad.text.contains("not-a-token"), "{}", bad.text);
    let op = s
        .carol
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}/approvals"),
            json!({"channel": CHANNEL, "bot_token": BOT_TOKEN}),
        )
        .await;
    assert_eq!(op.status, StatusCode::FORBIDDEN, "{}", op.text);
}

#[tokio::test]
async fn a_request_canceled_while_it_waits_is_shown_canceled_and_its_requester_told() {
    let mut s = setup(1).await;
    let created = submit(&s).await;
    posted(&mut s).await;
    s.w.admin
        .post(&format!("/v1/runs/{}/cancel", created.id), json!({}))
        .await
        .ok();
    outcome_shown_and_told(
        &mut s,
        "Canceled* before enough approvals",
        "was *canceled* before enough people approved it",
    )
    .await;
}
