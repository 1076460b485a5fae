//! Tokens over their lifetime: revocation ends the requests that outlive
//! their authentication (followed logs, long polls), user tokens can carry
//! an expiry, and enrollment tokens a limit on the agents they enroll.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{Answer, Client, ControlPlane as _, InProcessServer, World, quick_settings};
use sealrun_vault::TargetKeypair;
use sealrun_wire::admin::{
    AgentList, EnrollmentToken, EnrollmentTokenList, EnrollmentTokenView, TokenCreated, TokenList,
};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::RunStatus;
use serde_json::json;
use std::time::Duration;

/// How long a revoked credential's stream may outlive the revocation.
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

/// `POST /v1/tokens` with `body`, expecting success.
async fn create(admin: &Client, body: serde_json::Value) -> TokenCreated {
    admin.post("/v1/tokens", body).await.ok().parse()
}

/// An auditor token `name` that expires in a second.
async fn brief(admin: &Client, name: &str) -> TokenCreated {
    create(
        admin,
        json!({"name": name, "role": "auditor", "expires_in_secs": 1}),
    )
    .await
}

/// A new user token with `role`: its id and a client holding it.
async fn issue(admin: &Client, name: &str, role: &str) -> (String, Client) {
    let created = create(admin, json!({"name": name, "role": role})).await;
    let client = admin.with_token(&created.token);
    (created.view.id, client)
}

/// Starts following run `run` with `token`; the task ends with the stream
/// and returns what it carried.
#[tokio::test]
async fn a_revoked_tokens_followed_log_ends_within_five_seconds() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["cat"], &[]).await;
    assert_eq!(w.agent.next_run().await.run_id, run);
    let (id, revoked) = issue(&w.admin, "leaving", "auditor").await;
    let (_, kept) = issue(&w.admin, "staying", "auditor").await;
    let gone = w.server.follow_log(&revoked.token, &run).await;
    let control = w.server.follow_log(&kept.token, &run).await;
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

#[tokio::test]
async fn a_token_with_an_expiry_is_refused_once_it_expires() {
    let w = World::in_process().await;
    let created = brief(&w.admin, "temp").await;
    let expires = created.view.expires_at_ms.unwrap();
    assert!(expires > created.view.created_at_ms);
    let temp = w.admin.with_token(&created.token);
    temp.get("/v1/whoami").await.ok();
    let (_, lasting) = issue(&w.admin, "lasting", "auditor").await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = temp.get("/v1/whoami").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    // Positive control: a token without an expiry still works.
    lasting.get("/v1/whoami").await.ok();
    let list: TokenList = w.admin.get("/v1/tokens").await.ok().parse();
    let shown = list.tokens.iter().find(|t| t.name == "temp").unwrap();
    assert_eq!(shown.expires_at_ms, Some(expires));
    let other = list.tokens.iter().find(|t| t.name == "lasting").unwrap();
    assert_eq!(other.expires_at_ms, None);
}

#[tokio::test]
async fn a_followed_log_ends_when_its_token_expires() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["cat"], &[]).await;
    assert_eq!(w.agent.next_run().await.run_id, run);
    let created = brief(&w.admin, "brief").await;
    let stream = w.server.follow_log(&created.token, &run).await;
    let carried = tokio::time::timeout(Duration::from_secs(1) + REVOCATION_BOUND, stream)
        .await
        .expect("the expired token's stream ended")
        .unwrap();
    assert!(!carried.contains(r#""end""#), "{carried}");
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Running);
}

#[tokio::test]
async fn an_expiry_out_of_range_is_refused() {
    let w = World::in_process().await;
    for secs in [0u64, 11 * 365 * 24 * 3600] {
        let a = w
            .admin
            .post(
                "/v1/tokens",
                json!({"name": "x", "role": "auditor", "expires_in_secs": secs}),
            )
            .await;
        let msg = a.error(StatusCode::BAD_REQUEST);
        assert!(msg.contains("expires_in_secs"), "{msg}");
    }
}

/// An enrollment token for the default pool, made with `body`.
async fn enrollment(admin: &Client, body: serde_json::Value) -> EnrollmentToken {
    admin
        .post("/v1/pools/default/enrollment-tokens", body)
        .await
        .ok()
        .parse()
}

/// `POST /v1/agent/register` as `name` with enrollment token `token`.
async fn register(server: &InProcessServer, token: &str, body: serde_json::Value) -> Answer {
    server.client(token).post("/v1/agent/register", body).await
}

/// The enrollment tokens of the default pool.
async fn enrollment_tokens(admin: &Client) -> Vec<EnrollmentTokenView> {
    let list: EnrollmentTokenList = admin
        .get("/v1/pools/default/enrollment-tokens")
        .await
        .ok()
        .parse();
    list.tokens
}

#[tokio::test]
async fn a_single_use_enrollment_token_registers_one_agent() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let token = enrollment(&admin, json!({})).await;
    assert_eq!(token.max_agents, Some(1), "single use is the default");
    let first = register(&s, &token.token, json!({"name": "one"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let second = register(&s, &token.token, json!({"name": "two"})).await;
    assert_eq!(second.status, StatusCode::UNAUTHORIZED, "{}", second.text);
    let agents: AgentList = admin.get("/v1/agents").await.ok().parse();
    let names: Vec<_> = agents.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["one"]);
    let listed = enrollment_tokens(&admin).await;
    assert_eq!(
        (listed[0].max_agents, listed[0].agents_enrolled),
        (Some(1), 1)
    );
}

#[tokio::test]
async fn an_enrollment_token_limited_to_three_agents_registers_three() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let token = enrollment(&admin, json!({"max_agents": 3})).await;
    for name in ["a", "b", "c"] {
        let a = register(&s, &token.token, json!({"name": name})).await;
        assert_eq!(a.status, StatusCode::CREATED, "{name}: {}", a.text);
    }
    let fourth = register(&s, &token.token, json!({"name": "d"})).await;
    assert_eq!(fourth.status, StatusCode::UNAUTHORIZED, "{}", fourth.text);
    // Positive control: an unlimited token goes on enrolling.
    let unlimited = enrollment(&admin, json!({"unlimited": true})).await;
    assert_eq!(unlimited.max_agents, None);
    for name in ["d", "e", "f", "g"] {
        let a = register(&s, &unlimited.token, json!({"name": name})).await;
        assert_eq!(a.status, StatusCode::CREATED, "{name}: {}", a.text);
    }
}

#[tokio::test]
async fn a_refused_registration_uses_up_nothing_and_leaves_no_agent() {
    let w = World::in_process().await;
    let token = enrollment(&w.admin, json!({})).await;
    let pinned = w.agent.keys[0].1.key_id().0;
    let rogue = TargetKeypair::generate();
    // A second agent for `db` with a key of its own: refused before it is
    // enrolled, with the re-key command, and audited.
    let mismatch = register(
        &w.server,
        &token.token,
        json!({"name": "second", "targets": [
            {"name": "db", "public_key": rogue.public_key().to_base64()}
        ]}),
    )
    .await;
    let msg = mismatch.error(StatusCode::CONFLICT);
    assert!(
        msg.contains(&pinned)
            && msg.contains(&format!(
                "sealrun target rekey db --key-id {}",
                rogue.key_id().0
            )),
        "{msg}"
    );
    let audit: AuditPage = w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.action == "target.key_mismatch" && e.detail.contains(&rogue.key_id().0)),
        "{audit:?}"
    );
    // A name in use and an undeclared target: refused too.
    register(&w.server, &token.token, json!({"name": "agent-1"}))
        .await
        .error(StatusCode::CONFLICT);
    let ghost = register(
        &w.server,
        &token.token,
        json!({"name": "third", "targets": [
            {"name": "ghost", "public_key": rogue.public_key().to_base64()}
        ]}),
    )
    .await;
    ghost.error(StatusCode::BAD_REQUEST);
    let agents: AgentList = w.admin.get("/v1/agents").await.ok().parse();
    assert_eq!(agents.agents.len(), 1, "only the world's agent: {agents:?}");
    assert_eq!(enrollment_tokens(&w.admin).await[0].agents_enrolled, 0);

    // The single-use token still enrolls the agent it was meant for, with
    // the key the target is pinned to.
    let ok = register(
        &w.server,
        &token.token,
        json!({"name": "second", "targets": [
            {"name": "db", "public_key": w.agent.keys[0].1.public_key().to_base64()}
        ]}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    assert_eq!(enrollment_tokens(&w.admin).await[0].agents_enrolled, 1);
}

#[tokio::test]
async fn max_agents_and_unlimited_are_refused_together_or_out_of_range() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    for body in [
        json!({"max_agents": 2, "unlimited": true}),
        json!({"max_agents": 0}),
        json!({"max_agents": 10_001}),
    ] {
        let a = admin
            .post("/v1/pools/default/enrollment-tokens", body.clone())
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
    }
}
