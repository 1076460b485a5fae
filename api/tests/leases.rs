//! Leases: a run whose agent stops renewing it becomes `lost` and is never
//! handed out again (at-most-once); heartbeats keep it alive.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_api::Settings;
use sealrun_testkit::{FakeAgent, World, quick_settings};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::RunStatus;
use std::time::Duration;

fn short_leases() -> Settings {
    Settings {
        lease_ttl: Duration::from_millis(800),
        // A lease must outlast two heartbeats.
        heartbeat_interval: Duration::from_millis(400),
        ..quick_settings()
    }
}

#[tokio::test]
async fn a_run_whose_lease_lapses_becomes_lost_and_is_never_handed_out_again() {
    let w = World::in_process_with(short_leases()).await;
    // A second agent serving the same target, with the same key.
    let backup = FakeAgent::enroll_beside(&w.server, &w.admin, "agent-2", &w.agent).await;

    let run = w.admin.submit("db", &["migrate"], &[]).await;
    let first = w.agent.next_run().await;
    assert_eq!(first.run_id, run);
    // The first agent now goes silent: no heartbeat.
    let lost = w.admin.wait_status(&run, RunStatus::Lost).await;
    assert!(lost.error.unwrap().contains("lease"));
    assert!(lost.finished_at_ms.is_some());

    // Never handed out again, to anyone.
    assert!(backup.poll().await.is_none());
    assert!(w.agent.poll().await.is_none());
    // Late reports from the silent agent are refused, and it is told to drop it.
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .error(StatusCode::CONFLICT);
    w.agent
        .upload(&run, &[(0, b"late")])
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(w.agent.heartbeat(&[&run]).await.abandon, vec![run.clone()]);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Lost);

    let audit: AuditPage = w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    let entry = audit
        .entries
        .iter()
        .find(|e| e.action == "run.lost")
        .unwrap();
    assert_eq!(entry.subject, run);
    assert_eq!(entry.actor, "system");
}

#[tokio::test]
async fn heartbeats_keep_a_lease_alive() {
    let w = World::in_process_with(short_leases()).await;
    let run = w.admin.submit("db", &["sleep", "3"], &[]).await;
    w.agent.next_run().await;
    for _ in 0..12 {
        let ack = w.agent.heartbeat(&[&run]).await;
        assert!(ack.abandon.is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Well past several lease lengths, still running.
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Running);
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
}
