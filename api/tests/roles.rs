//! Authentication and what each role may do.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{ControlPlane as _, FakeAgent, InProcessServer, World};
use sealrun_wire::admin::{Role, TokenList, Whoami};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::RunStatus;
use serde_json::json;

#[tokio::test]
async fn a_request_without_a_token_gets_a_401_json_error() {
    let s = InProcessServer::start().await;
    let a = s.anonymous().get("/v1/runs").await;
    let msg = a.error(StatusCode::UNAUTHORIZED);
    assert!(msg.contains("bearer"), "{msg}");
}

#[tokio::test]
async fn a_malformed_token_gets_a_401_json_error() {
    let s = InProcessServer::start().await;
    for bad in [
        "nonsense",
        "srt_x_y",
        "Bearer",
        &format!("{}x", s.admin_token),
    ] {
        s.client(bad)
            .get("/v1/runs")
            .await
            .error(StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_audited_by_token_id_without_the_secret() {
    let s = InProcessServer::start().await;
    let id = &s.admin_token[4..20];
    let presented = "0123456789abcdef".repeat(4);
    let forged = format!("srt_{id}_{presented}");
    s.client(&forged)
        .get("/v1/runs")
        .await
        .error(StatusCode::UNAUTHORIZED);
    let page: AuditPage = s.admin().get("/v1/audit?limit=1000").await.ok().parse();
    let failed = page
        .entries
        .iter()
        .find(|e| e.action == "auth.failed")
        .expect("the failure is audited");
    assert_eq!(failed.subject, format!("token:{id}"));
    assert!(failed.detail.contains("wrong secret"));
    let all = serde_json::to_string(&page).unwrap();
    assert!(
        !all.contains(&presented),
        "the presented secret is never stored"
    );
    assert!(!all.contains(&s.admin_token[21..]), "nor the real one");
}

#[tokio::test]
async fn a_recently_used_token_id_with_another_secret_is_still_refused() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    admin.get("/v1/whoami").await.ok();
    let forged = format!("{}{}", &s.admin_token[..21], "ab".repeat(32));
    s.client(&forged)
        .get("/v1/whoami")
        .await
        .error(StatusCode::UNAUTHORIZED);
    admin.get("/v1/whoami").await.ok();
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let op = admin.token("ops", Role::Operator).await;
    op.get("/v1/runs").await.ok();
    let id = &op.token[4..20];
    assert_eq!(
        admin.delete(&format!("/v1/tokens/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    op.get("/v1/runs").await.error(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn whoami_names_the_org_the_token_and_the_role() {
    let s = InProcessServer::start().await;
    let auditor = s.admin().token("alice", Role::Auditor).await;
    let me: Whoami = auditor.get("/v1/whoami").await.ok().parse();
    assert_eq!(
        (me.org.as_str(), me.name.as_str(), me.role.as_str()),
        ("acme", "alice", "auditor")
    );
}

#[tokio::test]
async fn an_auditor_cannot_submit_or_cancel_runs() {
    let w = World::in_process().await;
    let auditor = w.admin.token("aud", Role::Auditor).await;
    let a = auditor
        .post("/v1/runs", json!({"target": "db", "argv": ["true"]}))
        .await;
    a.error(StatusCode::FORBIDDEN);
    let run = w.admin.submit("db", &["true"], &[]).await;
    auditor
        .post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Queued);
}

#[tokio::test]
async fn an_auditor_reads_runs_logs_the_trail_and_the_inventory_and_changes_nothing() {
    let w = World::in_process().await;
    let auditor = w.admin.token("aud", Role::Auditor).await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    for path in [
        "/v1/runs".to_owned(),
        format!("/v1/runs/{run}"),
        format!("/v1/runs/{run}/logs"),
        "/v1/audit".to_owned(),
        "/v1/audit/verify".to_owned(),
        "/v1/whoami".to_owned(),
        // Read-only inventory (issue 17: the console shows it to auditors).
        "/v1/agents".to_owned(),
        "/v1/targets".to_owned(),
        "/v1/targets/db".to_owned(),
        "/v1/targets/db/public-key".to_owned(),
        "/v1/targets/db/secrets".to_owned(),
        "/v1/runbooks".to_owned(),
    ] {
        assert_eq!(auditor.get(&path).await.status, StatusCode::OK, "{path}");
    }
    for path in [
        "/v1/tokens",
        "/v1/pools",
        "/v1/pools/default/enrollment-tokens",
    ] {
        auditor.get(path).await.error(StatusCode::FORBIDDEN);
    }
    auditor
        .put(
            "/v1/targets/db/secrets/X",
            json!({"version": 1, "key_id": "k", "ciphertext": ""}),
        )
        .await
        .error(StatusCode::FORBIDDEN);
    auditor
        .delete("/v1/targets/db")
        .await
        .error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_operator_cannot_manage_tokens() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let op = admin.token("ops", Role::Operator).await;
    op.get("/v1/tokens").await.error(StatusCode::FORBIDDEN);
    op.post("/v1/tokens", json!({"name": "mine", "role": "admin"}))
        .await
        .error(StatusCode::FORBIDDEN);
    let admin_id = &s.admin_token[4..20];
    op.delete(&format!("/v1/tokens/{admin_id}"))
        .await
        .error(StatusCode::FORBIDDEN);
    admin.get("/v1/whoami").await.ok();
}

#[tokio::test]
async fn an_operator_cannot_change_targets_pools_or_agents() {
    let w = World::in_process().await;
    let op = w.admin.token("ops", Role::Operator).await;
    op.put("/v1/targets/x", json!({"name": "x", "image": "busybox"}))
        .await
        .error(StatusCode::FORBIDDEN);
    op.delete("/v1/targets/db")
        .await
        .error(StatusCode::FORBIDDEN);
    op.post("/v1/pools", json!({"name": "p"}))
        .await
        .error(StatusCode::FORBIDDEN);
    op.post("/v1/pools/default/enrollment-tokens", json!({}))
        .await
        .error(StatusCode::FORBIDDEN);
    // Operators see agents (read-only), as the console shows them.
    op.get("/v1/agents").await.ok();
    op.delete(&format!("/v1/agents/{}", w.agent.id))
        .await
        .error(StatusCode::FORBIDDEN);
    op.get("/v1/audit").await.error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_operator_submits_cancels_sets_secrets_and_reads_targets() {
    let w = World::in_process().await;
    let op = w.admin.token("ops", Role::Operator).await;
    op.get("/v1/targets").await.ok();
    op.set_secret("db", "PGPASSWORD", b"hunter2-hunter2").await;
    let run = op.submit("db", &["psql"], &["PGPASSWORD"]).await;
    let view = op.run(&run).await;
    assert_eq!(view.submitter, "ops");
    op.post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await
        .ok();
    assert_eq!(op.run(&run).await.status, RunStatus::Canceled);
}

#[tokio::test]
async fn agent_and_user_tokens_only_open_their_own_doors() {
    let w = World::in_process().await;
    w.agent
        .client
        .get("/v1/runs")
        .await
        .error(StatusCode::FORBIDDEN);
    w.agent
        .client
        .post("/v1/runs", json!({"target": "db", "argv": ["true"]}))
        .await
        .error(StatusCode::FORBIDDEN);
    let me: Whoami = w.agent.client.get("/v1/whoami").await.ok().parse();
    assert_eq!(me.role, "agent");
    w.admin
        .post("/v1/agent/poll", json!({}))
        .await
        .error(StatusCode::FORBIDDEN);
    let enrollment = w.admin.enrollment_token("default").await;
    let enroller = w.server.client(&enrollment);
    enroller.get("/v1/runs").await.error(StatusCode::FORBIDDEN);
    enroller
        .post("/v1/agent/poll", json!({}))
        .await
        .error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let id = &s.admin_token[4..20];
    admin
        .delete(&format!("/v1/tokens/{id}"))
        .await
        .error(StatusCode::CONFLICT);
    let second = admin.token("second admin", Role::Admin).await;
    assert_eq!(
        second.delete(&format!("/v1/tokens/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn token_listings_never_show_values_or_hashes() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let op = admin.token("ops", Role::Operator).await;
    let a = admin.get("/v1/tokens").await;
    let list: TokenList = a.parse();
    assert_eq!(list.tokens.len(), 2);
    assert!(!a.text.contains(&op.token[21..]));
    assert!(!a.text.contains(&s.admin_token[21..]));
    assert!(!a.text.contains("sha256"));
}

#[tokio::test]
async fn an_expired_enrollment_token_cannot_register_agents() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let a = admin
        .post(
            "/v1/pools/default/enrollment-tokens",
            json!({"ttl_secs": 1}),
        )
        .await;
    let token = a.json()["token"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    s.client(&token)
        .post("/v1/agent/register", json!({"name": "late"}))
        .await
        .error(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_revoked_enrollment_token_cannot_register_agents() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let token = admin.enrollment_token("default").await;
    let list = admin
        .get("/v1/pools/default/enrollment-tokens")
        .await
        .ok()
        .json();
    let id = list["tokens"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(token[4..20], id);
    assert_eq!(
        admin.delete(&format!("/v1/tokens/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    s.client(&token)
        .post("/v1/agent/register", json!({"name": "late"}))
        .await
        .error(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_revoked_agent_is_refused_and_its_runs_are_lost() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    w.agent.next_run().await;
    assert_eq!(
        w.admin
            .delete(&format!("/v1/agents/{}", w.agent.id))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    w.agent
        .client
        .post("/v1/agent/poll", json!({}))
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Lost);
    let again = FakeAgent::register(
        &w.server,
        &w.admin.enrollment_token("default").await,
        "agent-1",
    )
    .await;
    assert_ne!(
        again.id, w.agent.id,
        "the name is free again, under a new id"
    );
}
