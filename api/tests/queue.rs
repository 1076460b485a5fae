//! A queue that tells the truth: a submit says at once whether a connected
//! agent serves the target, `require_agent` refuses when none does, and a
//! run no agent takes in time expires (audited) instead of running hours
//! later.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{FakeAgent, InProcessWorld, World, quick_settings, run_request, to_value};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::{RunCreated, RunList, RunStatus};
use std::time::Duration;

/// A world whose target `db` is served by `agent-1`, plus a target `idle`
/// that no agent serves; runs queue for `queue_ttl`.
async fn world(queue_ttl: Duration) -> InProcessWorld {
    let w = World::in_process_with(sealrun_api::Settings {
        queue_ttl,
        ..quick_settings()
    })
    .await;
    w.admin.declare_target("idle").await;
    w
}

async fn submit(w: &InProcessWorld, target: &str, require_agent: bool) -> (StatusCode, String) {
    let mut req = run_request(target, &["true"]);
    req.require_agent = require_agent;
    let answer = w.admin.post("/v1/runs", to_value(&req)).await;
    (answer.status, answer.text.clone())
}

#[tokio::test]
async fn a_submit_says_whether_a_connected_agent_serves_the_target() {
    let w = world(Duration::from_secs(3600)).await;
    let before = sealrun_now_ms();
    let (status, body) = submit(&w, "idle", false).await;
    assert_eq!(status, StatusCode::CREATED);
    let created: RunCreated = serde_json::from_str(&body).unwrap();
    assert!(!created.served, "{body}");
    let expires = created.expires_at_ms.unwrap();
    assert!(expires >= before + 3_600_000 && expires <= sealrun_now_ms() + 3_600_000);
    // Positive control: a target an agent serves says so.
    let (_, body) = submit(&w, "db", false).await;
    let created: RunCreated = serde_json::from_str(&body).unwrap();
    assert!(created.served, "{body}");
}

#[tokio::test]
async fn require_agent_refuses_a_target_no_connected_agent_serves_and_queues_nothing() {
    let w = world(Duration::from_secs(3600)).await;
    let (status, body) = submit(&w, "idle", true).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body.contains("no connected agent serves target idle"),
        "{body}"
    );
    let runs: RunList = w.admin.get("/v1/runs?target=idle").await.ok().parse();
    assert!(runs.runs.is_empty(), "{:?}", runs.runs);
    // Positive control: the same request for a served target is queued.
    let (status, body) = submit(&w, "db", true).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_run_no_agent_takes_within_the_queue_ttl_expires_and_is_audited() {
    let w = world(Duration::from_secs(1)).await;
    let (_, body) = submit(&w, "idle", false).await;
    let id = serde_json::from_str::<RunCreated>(&body).unwrap().id;
    let run = w.admin.wait_status(&id, RunStatus::Expired).await;
    assert!(run.error.unwrap().starts_with("expired: no agent took it"));
    assert!(run.finished_at_ms.is_some());
    assert_eq!(run.started_at_ms, None);
    let trail: AuditPage = w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    let entry = trail
        .entries
        .iter()
        .find(|e| e.action == "run.expired" && e.subject == id)
        .expect("a run.expired entry");
    assert_eq!(entry.actor, "system");
}

#[tokio::test]
async fn an_expired_run_is_never_handed_to_an_agent_that_comes_later() {
    let w = world(Duration::from_secs(1)).await;
    let (_, body) = submit(&w, "idle", false).await;
    let id = serde_json::from_str::<RunCreated>(&body).unwrap().id;
    w.admin.wait_status(&id, RunStatus::Expired).await;
    let late = FakeAgent::enroll(&w.server, &w.admin, "late", &["idle"]).await;
    assert!(late.poll().await.is_none());
    // Positive control: a run queued now is handed to it.
    let fresh = w
        .admin
        .submit_request(&run_request("idle", &["true"]))
        .await;
    assert_eq!(late.next_run().await.run_id, fresh);
}

#[tokio::test]
async fn a_run_an_agent_takes_in_time_does_not_expire() {
    let w = world(Duration::from_secs(1)).await;
    let id = w.admin.submit_request(&run_request("db", &["true"])).await;
    assert_eq!(w.agent.next_run().await.run_id, id);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.admin.run(&id).await.status, RunStatus::Running);
}

fn sealrun_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
