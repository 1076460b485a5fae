//! Several control-plane replicas on one PostgreSQL database: what one
//! replica does reaches clients and agents connected to another at once
//! (the replicas' hints over LISTEN/NOTIFY), not at the next timeout.
//!
//! These tests need PostgreSQL: they run in `scripts/test.sh`'s PostgreSQL
//! pass (`SEALRUN_TEST_DATABASE_URL`) and skip loudly in the SQLite one.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::slack::StandIn;
use sealrun_testkit::{
    Client, ControlPlane as _, FakeAgent, InProcessServer, quick_settings, run_request, to_value,
};
use sealrun_wire::admin::{TargetSpec, TokenCreated};
use sealrun_wire::run::{RunCreated, RunView};
use serde_json::json;
use std::time::Duration;

/// A long poll that a missed wake-up would leave waiting for its whole
/// timeout, far longer than the tests wait.
const LONG_POLL: Duration = Duration::from_secs(60);
/// How long a test waits for what a hint should bring at once.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Two replicas on one PostgreSQL database, the second with long polls;
/// `None` (after a SKIPPED line) without a PostgreSQL cluster.
async fn replicas() -> Option<(InProcessServer, InProcessServer, tempfile::TempDir)> {
    let first = InProcessServer::start_on_postgres(quick_settings()).await?;
    let dir = tempfile::tempdir().unwrap();
    let settings = sealrun_api::Settings {
        poll_timeout: LONG_POLL,
        ..quick_settings()
    };
    let second = first
        .start_replica(dir.path(), settings)
        .await
        .expect("the first replica is on PostgreSQL");
    Some((first, second, dir))
}

/// Target `db` declared through `a`, served by an agent connected to `b`;
/// `a`'s admin and the agent.
async fn target_on_a_agent_on_b(a: &InProcessServer, b: &InProcessServer) -> (Client, FakeAgent) {
    let admin_a = a.admin();
    admin_a.declare_target("db").await;
    let agent = FakeAgent::enroll(b, &b.admin(), "agent-b", &["db"]).await;
    (admin_a, agent)
}

#[tokio::test]
async fn a_run_submitted_on_one_replica_wakes_an_agent_long_polling_another() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    // Positive control: with nothing queued, the poll on B is still waiting
    // after a while (it does not just return every few milliseconds).
    let poll = tokio::spawn(async move {
        let run = agent.poll().await;
        (agent, run)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !poll.is_finished(),
        "the long poll returned with nothing queued"
    );
    let created: RunCreated = admin_a
        .post("/v1/runs", to_value(&run_request("db", &["true"])))
        .await
        .ok()
        .parse();
    let (_agent, assigned) = tokio::time::timeout(PROMPTLY, poll)
        .await
        .expect("the agent on the other replica was not woken")
        .unwrap();
    assert_eq!(assigned.expect("an assignment").run_id, created.id);
}

#[tokio::test]
async fn a_log_followed_on_one_replica_shows_output_uploaded_to_another_at_once() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let created: RunCreated = admin_a
        .post("/v1/runs", to_value(&run_request("db", &["echo"])))
        .await
        .ok()
        .parse();
    let run = agent.next_run().await;
    assert_eq!(run.run_id, created.id);
    let mut follow = a
        .http
        .get(format!("{}/v1/runs/{}/logs?follow=true", a.url, created.id))
        .bearer_auth(&a.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), StatusCode::OK);
    agent
        .upload_ok(&created.id, &[(0, b"hello from replica b\n")])
        .await;
    // The chunk's event (its data is base64): `"seq":0`.
    let seen = tokio::time::timeout(PROMPTLY, async {
        let mut text = String::new();
        while !text.contains("\"seq\":0") {
            match follow.chunk().await {
                Ok(Some(piece)) => text.push_str(&String::from_utf8_lossy(&piece)),
                _ => break,
            }
        }
        text
    })
    .await
    .expect("the follower on the other replica saw nothing (a follow re-reads every 15 s)");
    assert!(seen.contains("\"seq\":0"), "{seen}");
}

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_another() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let admin_a = a.admin();
    let created: TokenCreated = admin_a
        .post("/v1/tokens", json!({"name": "ops", "role": "operator"}))
        .await
        .ok()
        .parse();
    let on_b = b.client(&created.token);
    // Positive control: B accepts it (and caches it).
    assert_eq!(on_b.get("/v1/runs").await.status, StatusCode::OK);
    assert_eq!(on_b.get("/v1/runs").await.status, StatusCode::OK);
    let revoked = admin_a
        .delete(&format!("/v1/tokens/{}", created.view.id))
        .await;
    assert!(revoked.status.is_success(), "{}", revoked.text);
    let refused = tokio::time::timeout(PROMPTLY, async {
        loop {
            let status = on_b.get("/v1/runs").await.status;
            if status == StatusCode::UNAUTHORIZED {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Without the hint, B would trust its cached entry for 30 s.
    assert!(refused.is_ok(), "B still accepts the revoked token");
}

#[tokio::test]
async fn a_run_is_readable_from_every_replica() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let admin_a = a.admin();
    admin_a.declare_target("db").await;
    let created: RunCreated = admin_a
        .post("/v1/runs", to_value(&run_request("db", &["true"])))
        .await
        .ok()
        .parse();
    let seen: RunView = b
        .admin()
        .get(&format!("/v1/runs/{}", created.id))
        .await
        .ok()
        .parse();
    assert_eq!(seen.id, created.id);
}

#[tokio::test]
async fn an_approval_request_is_posted_to_slack_once_though_every_replica_drains_the_outbox() {
    const TEAM: &str = "T0SEALRUN";
    let mut slack = StandIn::start().await;
    let api = slack.api_url();
    let Some(a) = InProcessServer::start_on_postgres_with(quick_settings(), |c| {
        c.slack_api_url = api.clone();
    })
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let b = a
        .start_replica_with(dir.path(), quick_settings(), |c| c.slack_api_url = api)
        .await
        .unwrap();
    let admin = a.admin();
    let spec: TargetSpec = serde_json::from_value(json!({
        "name": "db", "image": sealrun_testkit::IMAGE, "timeout_secs": 600,
        "policy": {"approval": {"require": "ad_hoc", "approvals": 1}},
    }))
    .unwrap();
    admin.put("/v1/targets/db", to_value(&spec)).await.ok();
    admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": "0123456789abcdef0123456789abcdef"}),
        )
        .await
        .ok();
    admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}/approvals"),
            json!({"channel": "C0APPROVE", "bot_token": "xoxb-1234567890-abcdefghijklmnop"}),
        )
        .await
        .ok();

    // Submitted on B; both replicas drain the outbox (each wakes on the
    // hint, and looks every 5 s).
    let created: RunCreated = b
        .admin()
        .post("/v1/runs", to_value(&run_request("db", &["true"])))
        .await
        .ok()
        .parse();
    let first = slack.next_to("chat.postMessage").await;
    assert_eq!(first.body["channel"], "C0APPROVE");
    assert!(first.body.to_string().contains(&created.id));
    // Two more looks by each replica: still one message.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let again: Vec<_> = slack
        .drain()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat.postMessage"))
        .collect();
    assert!(again.is_empty(), "posted again: {again:?}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_submission_sent_to_two_replicas_at_once_with_one_key_queues_one_run() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, admin_b) = (a.admin(), b.admin());
    admin_a.declare_target("db").await;
    let req = to_value(&run_request("db", &["true"]));
    let submit = |client: &Client, key: String| {
        let (client, req) = (client.clone(), req.clone());
        async move {
            client
                .call_with(
                    reqwest::Method::POST,
                    "/v1/runs",
                    Some(req),
                    &[("Idempotency-Key", &key)],
                )
                .await
        }
    };
    // Each pair races: the replicas run submissions side by side, so
    // without the key's lock the second would insert a run of its own and
    // fail on the key (a 500) instead of replaying the first.
    for i in 0..8 {
        let key = format!("race-{i}");
        let (one, two) = tokio::join!(submit(&admin_a, key.clone()), submit(&admin_b, key));
        let one: RunCreated = one.ok().parse();
        let two: RunCreated = two.ok().parse();
        assert_eq!(one.id, two.id, "pair {i} queued two runs");
    }
    let list: sealrun_wire::run::RunList = admin_a.get("/v1/runs").await.ok().parse();
    assert_eq!(list.runs.len(), 8);
}

#[tokio::test]
async fn a_burst_queued_where_one_agent_waits_reaches_the_agents_waiting_on_another_replica() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let admin_a = a.admin();
    admin_a.declare_target("db").await;
    let here = FakeAgent::enroll(&a, &admin_a, "agent-a", &["db"]).await;
    let mut there = Vec::new();
    for i in 0..5 {
        let name = format!("agent-b{i}");
        there.push(FakeAgent::enroll_beside(&b, &b.admin(), &name, &here).await);
    }
    let polls: Vec<_> = there
        .into_iter()
        .map(|agent| tokio::spawn(async move { agent.poll().await }))
        .collect();
    // A's agent waits too: A wakes it for the burst and tells B so, for
    // each run (`p:`); B must still wake one of its own per run left.
    let poll_here = tokio::spawn(async move { here.poll().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let submissions: Vec<_> = (0..6)
        .map(|_| {
            let admin = admin_a.clone();
            async move {
                let created: RunCreated = admin
                    .post("/v1/runs", to_value(&run_request("db", &["true"])))
                    .await
                    .ok()
                    .parse();
                created.id
            }
        })
        .collect();
    let queued = futures_util::future::join_all(submissions).await;
    let mut assigned = Vec::new();
    for poll in polls {
        let run = tokio::time::timeout(PROMPTLY, poll)
            .await
            .expect("an agent on the other replica was left waiting with runs queued")
            .unwrap()
            .expect("an assignment");
        assigned.push(run.run_id);
    }
    assigned.extend(poll_here.await.unwrap().map(|run| run.run_id));
    assert!(assigned.iter().all(|id| queued.contains(id)));
    let mut distinct = assigned.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), assigned.len(), "a run was handed out twice");
}
