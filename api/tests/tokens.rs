//! Tokens over their lifetime: revocation ends the requests that outlive
//! their authentication (followed logs, long polls), user tokens can carry
//! an expiry, and enrollment tokens a limit on the agents they enroll.
#![allow(clippy::unwrap_used)]

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use sealrun_testkit::{Client, InProcessServer, World, quick_settings};
use sealrun_wire::admin::TokenCreated;
use sealrun_wire::run::RunStatus;
use serde_json::json;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a revoked credential's stream may outlive the revocation.
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

/// A new user token with `role`: its id and a client holding it.
async fn issue(admin: &Client, name: &str, role: &str) -> (String, Client) {
    let created: TokenCreated = admin
        .post("/v1/tokens", json!({"name": name, "role": role}))
        .await
        .ok()
        .parse();
    let client = admin.with_token(&created.token);
    (created.view.id, client)
}

/// Starts following run `run` with `token`; the task ends with the stream
/// and returns what it carried.
async fn follow(server: &InProcessServer, token: &str, run: &str) -> JoinHandle<String> {
    let resp = server
        .http
        .get(format!("{}/v1/runs/{run}/logs?follow=true", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut text = Vec::new();
        while let Some(Ok(piece)) = body.next().await {
            text.extend_from_slice(&piece);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

#[tokio::test]
async fn a_revoked_tokens_followed_log_ends_within_five_seconds() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["cat"], &[]).await;
    assert_eq!(w.agent.next_run().await.run_id, run);
    let (id, revoked) = issue(&w.admin, "leaving", "auditor").await;
    let (_, kept) = issue(&w.admin, "staying", "auditor").await;
    let gone = follow(&w.server, &revoked.token, &run).await;
    let control = follow(&w.server, &kept.token, &run).await;
    w.agent.upload_ok(&run, &[(0, b"before\n")]).await;

    w.admin.delete(&format!("/v1/tokens/{id}")).await.ok();
    let carried = tokio::time::timeout(REVOCATION_BOUND, gone)
        .await
        .expect("the revoked token's stream ended")
        .unwrap();
    assert!(carried.contains(r#""seq":0"#), "{carried}");
    assert!(
        !carried.contains("\"end\""),
        "the run has not ended: {carried}"
    );
    // Reconnecting is refused, which is how a client learns why.
    let again = revoked
        .get(&format!("/v1/runs/{run}/logs?follow=true"))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.text);

    // Positive control: the other follower is still there, and sees the rest.
    w.agent.upload_ok(&run, &[(1, b"after\n")]).await;
    assert!(!control.is_finished());
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 2)
        .await
        .ok();
    let seen = tokio::time::timeout(Duration::from_secs(10), control)
        .await
        .unwrap()
        .unwrap();
    assert!(
        seen.contains(r#""seq":1"#) && seen.contains(r#""end""#),
        "{seen}"
    );
}

#[tokio::test]
async fn a_revoked_agents_long_poll_ends_within_five_seconds() {
    // Polls held for a minute: the revocation, not the timeout, ends it.
    let settings = sealrun_api::Settings {
        poll_timeout: Duration::from_secs(60),
        ..quick_settings()
    };
    let w = World::in_process_with(settings).await;
    let agent = w.agent.client.clone();
    let poll = tokio::spawn(async move { agent.post("/v1/agent/poll", json!({})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !poll.is_finished(),
        "the poll is held while no run is queued"
    );

    w.admin
        .delete(&format!("/v1/agents/{}", w.agent.id))
        .await
        .ok();
    let polled = tokio::time::timeout(REVOCATION_BOUND, poll)
        .await
        .expect("the revoked agent's poll ended")
        .unwrap();
    assert_eq!(polled.status, StatusCode::NO_CONTENT, "{}", polled.text);
    let again = w.agent.client.post("/v1/agent/poll", json!({})).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.text);
}
