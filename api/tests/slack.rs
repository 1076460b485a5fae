//! The Slack integration over real HTTPS: linking workspaces and users,
//! signed slash commands, who may do what, and the result posted to a
//! `response_url` served by this test.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::slack::{StandIn, now_secs, sign};
use sealrun_testkit::{
    Client, ControlPlane as _, FakeAgent, InProcessServer, World, quick_settings,
};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::{RunList, RunSource, RunStatus};
use sealrun_wire::slack::{UserList, WorkspaceList};
use serde_json::{Value, json};
use std::time::Duration;

const TEAM: &str = "T0SEALRUN";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const COMMANDS: &str = "/v1/integrations/slack/commands";

fn form(team: &str, user: &str, text: &str, response_url: &str) -> String {
    sealrun_testkit::slack::command_form(team, user, text, response_url)
}

/// Posts `body` to the commands endpoint with the given headers.
async fn post_raw(
    s: &InProcessServer,
    body: String,
    ts: Option<String>,
    sig: Option<String>,
) -> (StatusCode, Value) {
    let mut req = s
        .http
        .post(format!("{}{COMMANDS}", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(ts) = ts {
        req = req.header("x-slack-request-timestamp", ts);
    }
    if let Some(sig) = sig {
        req = req.header("x-slack-signature", sig);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// A slash command as Slack would send it: signed with `SECRET` now.
async fn slash(
    s: &InProcessServer,
    user: &str,
    text: &str,
    response_url: &str,
) -> (StatusCode, Value) {
    let body = form(TEAM, user, text, response_url);
    let ts = now_secs();
    let sig = sign(SECRET, ts, &body);
    post_raw(s, body, Some(ts.to_string()), Some(sig)).await
}

/// The ephemeral text of a 200 answer.
fn said(answer: (StatusCode, Value)) -> String {
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(answer.1["response_type"], "ephemeral", "{}", answer.1);
    answer.1["text"].as_str().unwrap().to_owned()
}

async fn link(admin: &Client, user: &str, name: &str, role: &str) {
    admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": SECRET}),
        )
        .await
        .ok();
    admin
        .put(
            &format!("/v1/integrations/slack/users/{TEAM}/{user}"),
            json!({"name": name, "role": role}),
        )
        .await
        .ok();
}

async fn runs(admin: &Client) -> RunList {
    admin.get("/v1/runs").await.ok().parse()
}

async fn audit(admin: &Client) -> AuditPage {
    admin.get("/v1/audit?limit=1000").await.ok().parse()
}

/// A stand-in for Slack's `response_url`, and its URL.
async fn response_url() -> (String, StandIn) {
    let slack = StandIn::start().await;
    (slack.url("/commands/T0SEALRUN/1/xyz"), slack)
}

const NOWHERE: &str = "https://hooks.slack.com/commands/T0SEALRUN/1/unused";

#[tokio::test]
async fn an_unlinked_slack_user_is_refused_politely_and_nothing_runs() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let text = said(slash(&w.server, "U0MALLORY", "run db -- echo hi", NOWHERE).await);
    assert!(text.contains("not linked"), "{text}");
    assert!(runs(&w.admin).await.runs.is_empty());
    let page = audit(&w.admin).await;
    let refused = page
        .entries
        .iter()
        .find(|e| e.action == "slack.command_refused")
        .unwrap();
    assert_eq!(refused.actor, format!("slack:{TEAM}/U0MALLORY"));
    assert!(!page.entries.iter().any(|e| e.action == "run.submitted"));
}

#[tokio::test]
async fn an_auditor_may_read_runs_from_slack_but_not_run_or_cancel_them() {
    let w = World::in_process().await;
    link(&w.admin, "U0AUDIT", "soc", "auditor").await;
    let text = said(slash(&w.server, "U0AUDIT", "run db -- echo hi", NOWHERE).await);
    assert!(
        text.contains("auditor") && text.contains("Nothing was run"),
        "{text}"
    );
    assert!(runs(&w.admin).await.runs.is_empty());

    let id = w.admin.submit("db", &["true"], &[]).await;
    let text = said(slash(&w.server, "U0AUDIT", &format!("cancel {id}"), NOWHERE).await);
    assert!(text.contains("auditor"), "{text}");
    assert_eq!(w.admin.run(&id).await.status, RunStatus::Queued);

    let text = said(slash(&w.server, "U0AUDIT", &format!("status {id}"), NOWHERE).await);
    assert!(text.contains(&id) && text.contains("*queued*"), "{text}");
    let text = said(slash(&w.server, "U0AUDIT", "help", NOWHERE).await);
    assert!(text.contains("/sealrun run"), "{text}");
}

#[tokio::test]
async fn an_unlinked_and_a_linked_team_get_the_same_refusal_for_a_bad_signature() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let ts = now_secs();
    let bad = |team: &str| {
        let body = form(team, "U0ALICE", "run db -- echo hi", NOWHERE);
        let sig = sign("another-secret-0123456789abcdef", ts, &body);
        (body, sig)
    };
    let (linked_body, linked_sig) = bad(TEAM);
    let linked = post_raw(
        &w.server,
        linked_body,
        Some(ts.to_string()),
        Some(linked_sig),
    )
    .await;
    let (unlinked_body, unlinked_sig) = bad("T0NOBODY");
    let unlinked = post_raw(
        &w.server,
        unlinked_body,
        Some(ts.to_string()),
        Some(unlinked_sig),
    )
    .await;
    assert_eq!(linked.0, StatusCode::UNAUTHORIZED, "{}", linked.1);
    assert_eq!(unlinked, linked, "nothing tells a linked team from another");
    // Not even a request correctly signed with the secret a linked team
    // uses: an unlinked team has no secret to verify against.
    let body = form("T0NOBODY", "U0ALICE", "run db -- echo hi", NOWHERE);
    let signed = post_raw(
        &w.server,
        body.clone(),
        Some(ts.to_string()),
        Some(sign(SECRET, ts, &body)),
    )
    .await;
    assert_eq!(signed, linked);
    assert!(runs(&w.admin).await.runs.is_empty());
    // Positive control: the linked team, signed with its secret, is served.
    let text = said(slash(&w.server, "U0ALICE", "help", NOWHERE).await);
    assert!(text.contains("/sealrun run"), "{text}");
}

#[tokio::test]
async fn a_replayed_signed_slack_request_creates_no_second_run() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let body = form(TEAM, "U0ALICE", "run db -- echo once", NOWHERE);
    let ts = now_secs().to_string();
    let sig = sign(SECRET, now_secs(), &body);
    let first = said(post_raw(&w.server, body.clone(), Some(ts.clone()), Some(sig.clone())).await);
    assert!(first.contains("Queued run"), "{first}");
    let replayed = post_raw(&w.server, body, Some(ts), Some(sig)).await;
    assert_eq!(replayed.0, StatusCode::UNAUTHORIZED, "{}", replayed.1);
    assert_eq!(runs(&w.admin).await.runs.len(), 1, "one run, not two");
    let page = audit(&w.admin).await;
    let refused = page
        .entries
        .iter()
        .rev()
        .find(|e| e.action == "auth.failed")
        .unwrap();
    assert!(refused.detail.contains("replayed"), "{}", refused.detail);
    // Positive control: the same command typed again is a new request,
    // signed anew, and runs again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = said(slash(&w.server, "U0ALICE", "run db -- echo once", NOWHERE).await);
    assert!(again.contains("Queued run"), "{again}");
    assert_eq!(runs(&w.admin).await.runs.len(), 2);
}

#[tokio::test]
async fn a_replayed_slack_request_is_refused_after_a_restart_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcessServer::start_in(dir.path(), quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    link(&admin, "U0ALICE", "alice", "operator").await;
    let body = form(TEAM, "U0ALICE", "run db -- echo once", NOWHERE);
    let ts = now_secs();
    let sig = sign(SECRET, ts, &body);
    said(
        post_raw(
            &server,
            body.clone(),
            Some(ts.to_string()),
            Some(sig.clone()),
        )
        .await,
    );
    server.stop().await;

    let server = InProcessServer::start_in(dir.path(), quick_settings()).await;
    let replayed = post_raw(&server, body, Some(ts.to_string()), Some(sig)).await;
    assert_eq!(replayed.0, StatusCode::UNAUTHORIZED, "{}", replayed.1);
    assert_eq!(runs(&server.admin()).await.runs.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_pending_slack_notification_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcessServer::start_in(dir.path(), quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let mut agent = FakeAgent::enroll(&server, &admin, "agent-1", &["db"]).await;
    link(&admin, "U0ALICE", "alice", "operator").await;
    let (url, mut posted) = response_url().await;
    let queued = said(slash(&server, "U0ALICE", "run db -- echo after-restart", &url).await);
    assert!(queued.contains("Queued run"), "{queued}");
    let run = agent.next_run().await.run_id;
    // The control plane restarts while the run is going.
    server.stop().await;
    let server = InProcessServer::start_in(dir.path(), quick_settings()).await;
    agent.client = server.client(&agent.client.token);
    agent.upload_ok(&run, &[(0, b"after-restart\n")]).await;
    agent
        .finish(&run, RunStatus::Succeeded, Some(0), 1)
        .await
        .ok();
    let message = posted.next().await.body;
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains(&run) && text.contains("succeeded") && text.contains("after-restart"),
        "{text}"
    );
    // Posted once: settled, so a further restart does not post it again.
    server.stop().await;
    let server = InProcessServer::start_in(dir.path(), quick_settings()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(posted.drain().is_empty(), "posted once");
    server.stop().await;
}

#[tokio::test]
async fn bad_signatures_get_one_generic_401_and_are_audited_with_the_reason() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let body = form(TEAM, "U0ALICE", "run db -- echo hi", NOWHERE);
    let ts = now_secs();
    let stale = ts - 6 * 60;
    let ahead = ts + 6 * 60;
    let cases = [
        (
            Some(ts),
            Some(sign("another-secret-0123456789abcdef", ts, &body)),
            body.clone(),
            "signature mismatch",
        ),
        (
            Some(ts),
            Some(sign(SECRET, ts, &body)),
            body.replace("echo+hi", "echo+pwned"),
            "signature mismatch",
        ),
        (
            Some(stale),
            Some(sign(SECRET, stale, &body)),
            body.clone(),
            "replay window",
        ),
        (
            Some(ahead),
            Some(sign(SECRET, ahead, &body)),
            body.clone(),
            "replay window",
        ),
        (None, Some(sign(SECRET, ts, &body)), body.clone(), "missing"),
        (Some(ts), None, body.clone(), "missing"),
        (
            Some(ts),
            Some("v0=nothex".into()),
            body.clone(),
            "malformed",
        ),
    ];
    let mut messages = Vec::new();
    for (i, (ts, sig, body, reason)) in cases.into_iter().enumerate() {
        if i > 0 {
            // Failures are audited at most once a second per team.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let (status, v) = post_raw(&w.server, body, ts.map(|t| t.to_string()), sig).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "case {i}: {v}");
        messages.push(v["error"].as_str().unwrap().to_owned());
        let page = audit(&w.admin).await;
        let last = page
            .entries
            .iter()
            .rev()
            .find(|e| e.action == "auth.failed")
            .unwrap();
        assert_eq!(
            (last.actor.as_str(), last.subject.as_str()),
            ("slack", "slack:T0SEALRUN")
        );
        assert!(last.detail.contains(reason), "case {i}: {}", last.detail);
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "one message whatever failed: {messages:?}"
    );
    assert!(runs(&w.admin).await.runs.is_empty());
    assert!(
        !serde_json::to_string(&audit(&w.admin).await)
            .unwrap()
            .contains(SECRET)
    );
}

#[tokio::test]
async fn an_operator_run_is_queued_as_the_slack_user_and_the_result_is_posted_escaped() {
    let w = World::in_process().await;
    w.admin
        .set_secret("db", "TOKEN", b"s3cr3t-value-for-slack")
        .await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let (url, mut posted) = response_url().await;
    let text = said(
        slash(
            &w.server,
            "U0ALICE",
            "run db --secret TOKEN -- sh -c \u{2018}echo $TOKEN &amp;&amp; exit 3\u{2019}",
            &url,
        )
        .await,
    );
    assert!(text.starts_with("Queued run `run_"), "{text}");
    assert!(
        text.contains("&amp;&amp;"),
        "the command is shown escaped: {text}"
    );
    let listed = runs(&w.admin).await.runs;
    assert_eq!(listed.len(), 1);
    let run = &listed[0];
    assert_eq!(run.source, RunSource::Slack);
    assert_eq!(run.submitter, format!("slack:{TEAM}/U0ALICE (alice)"));
    assert_eq!(run.argv, ["sh", "-c", "echo $TOKEN && exit 3"]);
    assert_eq!(run.secrets, ["TOKEN"]);
    let submitted = audit(&w.admin)
        .await
        .entries
        .into_iter()
        .find(|e| e.action == "run.submitted")
        .unwrap();
    assert_eq!(submitted.actor, format!("slack:{TEAM}/U0ALICE"));
    assert!(
        submitted.detail.contains("\"source\":\"slack\""),
        "{}",
        submitted.detail
    );

    // The agent (simulated) runs it; its output tries to ping the channel
    // and to break out of the code block.
    let job = w.agent.next_run().await;
    assert_eq!(job.run_id, run.id);
    w.agent
        .upload_ok(&run.id, &[(0, b"*** <!channel> ``` <@U0BOSS> & done\n")])
        .await;
    w.agent
        .finish(&run.id, RunStatus::Failed, Some(3), 1)
        .await
        .ok();
    let msg = posted.next().await.body;
    assert_eq!(msg["response_type"], "ephemeral");
    let text = msg["text"].as_str().unwrap();
    assert!(
        text.contains(&run.id) && text.contains("*failed*") && text.contains("exit code 3"),
        "{text}"
    );
    assert!(
        text.contains("&lt;!channel&gt;")
            && text.contains("&lt;@U0BOSS&gt;")
            && text.contains("&amp; done"),
        "{text}"
    );
    assert!(
        !text.contains("<!channel>") && !text.contains("<@"),
        "{text}"
    );
    assert_eq!(
        text.matches("```").count(),
        2,
        "only the block's own fences: {text}"
    );
    assert!(
        text.contains(&format!("sealrun runs logs {}", run.id)),
        "{text}"
    );
}

#[tokio::test]
async fn an_operator_can_see_status_logs_and_cancel_from_slack() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let id = w.admin.submit("db", &["sleep", "60"], &[]).await;
    let text = said(slash(&w.server, "U0ALICE", &format!("cancel {id}"), NOWHERE).await);
    assert!(text.contains("now canceled"), "{text}");
    assert_eq!(w.admin.run(&id).await.status, RunStatus::Canceled);
    let canceled = audit(&w.admin)
        .await
        .entries
        .into_iter()
        .find(|e| e.action == "run.canceled")
        .unwrap();
    assert_eq!(canceled.actor, format!("slack:{TEAM}/U0ALICE"));

    let text = said(slash(&w.server, "U0ALICE", &format!("logs {id}"), NOWHERE).await);
    assert!(text.contains("no output"), "{text}");
    let text = said(slash(&w.server, "U0ALICE", "status run_nope<!here>", NOWHERE).await);
    assert!(
        text.contains("Refused") && text.contains("&lt;!here&gt;"),
        "{text}"
    );
}

#[tokio::test]
async fn command_mistakes_answer_the_usage_and_nothing_runs() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    for (typed, expect) in [
        ("run db echo hi", "put `--` before the command"),
        ("run db -- 'unclosed", "never closed"),
        ("launch db", "unknown command"),
        ("run db --image x -- ls", "unknown option"),
    ] {
        let text = said(slash(&w.server, "U0ALICE", typed, NOWHERE).await);
        assert!(
            text.contains(expect) && text.contains("/sealrun run"),
            "{typed}: {text}"
        );
    }
    let text = said(slash(&w.server, "U0ALICE", "run nosuch -- ls", NOWHERE).await);
    assert!(text.contains("no target named"), "{text}");
    let text = said(slash(&w.server, "U0ALICE", "run db --secret NOPE -- ls", NOWHERE).await);
    assert!(text.contains("no secret named NOPE"), "{text}");
    let text = said(slash(&w.server, "U0ALICE", "run db -- ls", "http://example.com/x").await);
    assert!(text.contains("response_url"), "{text}");
    assert!(runs(&w.admin).await.runs.is_empty());
}

#[tokio::test]
async fn the_signing_secret_is_never_returned_and_is_not_stored_in_clear() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let a = w
        .admin
        .get("/v1/integrations/slack/workspaces")
        .await
        .ok()
        .parse::<WorkspaceList>();
    assert_eq!(a.workspaces.len(), 1);
    assert_eq!(a.workspaces[0].team_id, TEAM);
    let users: UserList = w
        .admin
        .get("/v1/integrations/slack/users")
        .await
        .ok()
        .parse();
    assert_eq!(
        (
            users.users[0].user_id.as_str(),
            users.users[0].name.as_str()
        ),
        ("U0ALICE", "alice")
    );
    for path in [
        "/v1/integrations/slack/workspaces",
        "/v1/integrations/slack/users",
        "/v1/audit?limit=1000",
    ] {
        assert!(!w.admin.get(path).await.text.contains(SECRET), "{path}");
    }
    // The database and its WAL, as they are on disk.
    let db = w.server.db_path();
    for entry in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn only_admins_manage_links_and_bad_links_are_refused() {
    let w = World::in_process().await;
    let op = w
        .admin
        .token("op", sealrun_wire::admin::Role::Operator)
        .await;
    op.put(
        &format!("/v1/integrations/slack/workspaces/{TEAM}"),
        json!({"signing_secret": SECRET}),
    )
    .await
    .error(StatusCode::FORBIDDEN);
    op.get("/v1/integrations/slack/users")
        .await
        .error(StatusCode::FORBIDDEN);
    w.admin
        .put(
            "/v1/integrations/slack/workspaces/not-a-team",
            json!({"signing_secret": SECRET}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    let short = w
        .admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": "short"}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(!short.contains("short\""), "{short}");
    w.admin
        .put(
            &format!("/v1/integrations/slack/users/{TEAM}/U0ALICE"),
            json!({"name": "alice", "role": "operator"}),
        )
        .await
        .error(StatusCode::NOT_FOUND);
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let actions: Vec<String> = audit(&w.admin)
        .await
        .entries
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"slack.workspace_linked".into())
            && actions.contains(&"slack.user_linked".into())
    );
}

#[tokio::test]
async fn relinking_or_unlinking_takes_effect_at_once() {
    let w = World::in_process().await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    said(slash(&w.server, "U0ALICE", "help", NOWHERE).await); // the secret is now cached
    w.admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": "a-brand-new-secret-0123456789abc"}),
        )
        .await
        .ok();
    let (status, _) = slash(&w.server, "U0ALICE", "help", NOWHERE).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old secret no longer verifies"
    );

    w.admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": SECRET}),
        )
        .await
        .ok();
    said(slash(&w.server, "U0ALICE", "help", NOWHERE).await);
    w.admin
        .delete(&format!("/v1/integrations/slack/users/{TEAM}/U0ALICE"))
        .await
        .ok();
    let text = said(slash(&w.server, "U0ALICE", "help", NOWHERE).await);
    assert!(text.contains("not linked"), "{text}");
    w.admin
        .delete(&format!("/v1/integrations/slack/workspaces/{TEAM}"))
        .await
        .ok();
    let (status, _) = slash(&w.server, "U0ALICE", "help", NOWHERE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an unlinked team");
}

/// The second org's Slack app's signing secret.
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210";

#[tokio::test]
async fn two_orgs_link_one_workspace_each_with_its_own_app_and_neither_learns_of_the_other() {
    let w = World::in_process().await;
    let other = w.server.create_org("globex");
    let before = other
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": OTHER_SECRET}),
        )
        .await;
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    // Linking a team another org linked answers as linking a new one did.
    let after = w
        .server
        .create_org("initech")
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": "0000111122223333444455556666777788"}),
        )
        .await;
    assert_eq!(
        (before.status, after.status),
        (StatusCode::OK, StatusCode::OK)
    );
    let keys = |v: &Value| {
        let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&before.json()), keys(&after.json()));
    other
        .put(
            &format!("/v1/integrations/slack/users/{TEAM}/U0ALICE"),
            json!({"name": "alice-at-globex", "role": "auditor"}),
        )
        .await
        .ok();
    // Each org sees its own link only.
    let listed: WorkspaceList = other
        .get("/v1/integrations/slack/workspaces")
        .await
        .ok()
        .parse();
    assert_eq!(listed.workspaces.len(), 1);
    let users: UserList = other.get("/v1/integrations/slack/users").await.ok().parse();
    assert_eq!(users.users.len(), 1);
    assert_eq!(users.users[0].name, "alice-at-globex");

    // The signing secret tells the orgs apart: the same Slack user is an
    // operator through acme's app and an auditor through globex's.
    let via = |secret: &'static str| {
        let body = form(TEAM, "U0ALICE", "run db -- echo hi", NOWHERE);
        let ts = now_secs();
        let sig = sign(secret, ts, &body);
        post_raw(&w.server, body, Some(ts.to_string()), Some(sig))
    };
    let acme = said(via(SECRET).await);
    assert!(acme.contains("Queued run"), "{acme}");
    let globex = said(via(OTHER_SECRET).await);
    assert!(
        globex.contains("auditor") && globex.contains("Nothing was run"),
        "{globex}"
    );
    assert_eq!(runs(&w.admin).await.runs.len(), 1);
    assert!(runs(&other).await.runs.is_empty());

    // A secret another org of the team uses is refused: a request it signs
    // could not be told apart (this tells only a holder of the secret).
    let msg = w
        .server
        .create_org("hooli")
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": SECRET}),
        )
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains("already in use"), "{msg}");
    // Unlinking is per org too.
    other
        .delete(&format!("/v1/integrations/slack/workspaces/{TEAM}"))
        .await
        .ok();
    let still = said(slash(&w.server, "U0ALICE", "help", NOWHERE).await);
    assert!(still.contains("/sealrun run"), "{still}");
}

#[tokio::test]
async fn a_runbook_runs_from_slack_by_name_with_its_params_and_a_refused_value_names_the_rule() {
    let w = World::in_process().await;
    w.admin
        .put(
            "/v1/runbooks",
            json!({"runbooks": [{
                "name": "restart-api",
                "targets": ["db"],
                "argv": ["printf", "%s\n", "{service}"],
                "params": {"service": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,30}$"}},
            }]}),
        )
        .await
        .ok();
    link(&w.admin, "U0ALICE", "alice", "operator").await;
    let text = said(slash(&w.server, "U0ALICE", "run restart-api service=web", NOWHERE).await);
    assert!(
        text.contains("Queued run `run_")
            && text.contains("(runbook `restart-api` version 1)")
            && text.contains("printf"),
        "{text}"
    );
    let listed = runs(&w.admin).await.runs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].argv, ["printf", "%s\n", "web"]);
    assert_eq!(listed[0].runbook.as_deref(), Some("restart-api"));
    assert_eq!(listed[0].source, RunSource::Slack);
    // A value its rule refuses is answered with the rule, and nothing runs.
    let text = said(
        slash(
            &w.server,
            "U0ALICE",
            "run restart-api 'service=web; rm -rf /'",
            NOWHERE,
        )
        .await,
    );
    assert!(
        text.contains("param service: 'web; rm -rf /' does not match ^[a-z][a-z0-9-]{0,30}$"),
        "{text}"
    );
    assert_eq!(runs(&w.admin).await.runs.len(), 1);
}

/// Links the workspace, and Slack user `slack_user` to sealrun user `user`.
async fn link_as(admin: &Client, slack_user: &str, user: &str) -> Value {
    admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": SECRET}),
        )
        .await
        .ok();
    admin
        .put(
            &format!("/v1/integrations/slack/users/{TEAM}/{slack_user}"),
            json!({"user": user}),
        )
        .await
        .ok()
        .json()
}

#[tokio::test]
async fn a_slack_user_linked_to_a_user_acts_with_that_users_role() {
    let w = World::in_process().await;
    w.admin
        .post("/v1/users", json!({"name": "dana", "role": "auditor"}))
        .await
        .ok();
    let linked = link_as(&w.admin, "U0DANA", "dana").await;
    assert_eq!(
        (&linked["name"], &linked["role"]),
        (&json!("dana"), &json!("auditor"))
    );

    let text = said(slash(&w.server, "U0DANA", "run db -- echo hi", NOWHERE).await);
    assert!(text.contains("auditor"), "{text}");
    assert!(runs(&w.admin).await.runs.is_empty());
    // Positive control: linked to an operator, the same command runs.
    w.admin
        .post("/v1/users", json!({"name": "olga", "role": "operator"}))
        .await
        .ok();
    link_as(&w.admin, "U0OLGA", "olga").await;
    slash(&w.server, "U0OLGA", "run db -- echo hi", NOWHERE).await;
    let listed = runs(&w.admin).await.runs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].submitter, format!("slack:{TEAM}/U0OLGA (olga)"));
}

#[tokio::test]
async fn linking_a_slack_user_to_an_unknown_user_is_a_404_naming_it() {
    let w = World::in_process().await;
    w.admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": SECRET}),
        )
        .await
        .ok();
    let msg = w
        .admin
        .put(
            &format!("/v1/integrations/slack/users/{TEAM}/U0GHOST"),
            json!({"user": "ghost"}),
        )
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(msg, "no user named \"ghost\"");
    let users: UserList = w
        .admin
        .get("/v1/integrations/slack/users")
        .await
        .ok()
        .parse();
    assert!(users.users.is_empty());
}

#[tokio::test]
async fn a_slack_user_linked_to_a_disabled_user_is_refused_like_an_unlinked_one() {
    let w = World::in_process().await;
    w.admin
        .post("/v1/users", json!({"name": "alice", "role": "operator"}))
        .await
        .ok();
    link_as(&w.admin, "U0ALICE", "alice").await;
    // Positive control: while alice is enabled, her Slack user runs.
    slash(&w.server, "U0ALICE", "run db -- echo hi", NOWHERE).await;
    assert_eq!(runs(&w.admin).await.runs.len(), 1);

    w.admin
        .post("/v1/users/alice/disable", json!({}))
        .await
        .ok();
    let disabled = said(slash(&w.server, "U0ALICE", "run db -- echo hi", NOWHERE).await);
    let unlinked = said(slash(&w.server, "U0NOBODY", "run db -- echo hi", NOWHERE).await);
    assert!(disabled.contains("not linked"), "{disabled}");
    assert_eq!(
        disabled.replace("U0ALICE", "U"),
        unlinked.replace("U0NOBODY", "U"),
        "the same refusal"
    );
    assert_eq!(runs(&w.admin).await.runs.len(), 1, "nothing more ran");
    let users: UserList = w
        .admin
        .get("/v1/integrations/slack/users")
        .await
        .ok()
        .parse();
    assert!(users.users[0].disabled, "the link is listed as disabled");
}
