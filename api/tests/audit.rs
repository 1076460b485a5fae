//! The audit trail records every state change in a hash chain and verifies
//! online and offline. (Rows edited, deleted or reordered in the database
//! behind the API are caught too: `control/tests/tampering.rs`.)
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{InProcessWorld, World};
use sealrun_wire::admin::Role;
use sealrun_wire::audit::{AuditEntry, AuditPage, AuditVerification, verify_chain};
use sealrun_wire::run::RunStatus;
use serde_json::json;

/// A world with a few dozen audited events of every kind.
async fn busy_world() -> InProcessWorld {
    let w = World::in_process().await;
    let op = w.admin.token("ops", Role::Operator).await;
    op.set_secret("db", "PGPASSWORD", b"correct horse").await;
    for i in 0..3 {
        let run = op
            .submit("db", &["echo", &i.to_string()], &["PGPASSWORD"])
            .await;
        w.agent.next_run().await;
        w.agent
            .finish(&run, RunStatus::Succeeded, Some(0), 0)
            .await
            .ok();
    }
    let queued = op.submit("db", &["true"], &[]).await;
    op.post(&format!("/v1/runs/{queued}/cancel"), json!({}))
        .await
        .ok();
    w.admin.post("/v1/pools", json!({"name": "eu"})).await.ok();
    w
}

async fn export(w: &InProcessWorld) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page: AuditPage = w
            .admin
            .get(&format!("/v1/audit?after={after}&limit=7"))
            .await
            .ok()
            .parse();
        if page.entries.is_empty() {
            return all;
        }
        after = page.next_after;
        all.extend(page.entries);
    }
}

async fn verify(w: &InProcessWorld) -> AuditVerification {
    w.admin.get("/v1/audit/verify").await.ok().parse()
}

#[tokio::test]
async fn every_state_change_is_in_the_chain_and_it_verifies_online_and_offline() {
    let w = busy_world().await;
    let entries = export(&w).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "org.created",
        "token.issued",
        "target.changed",
        "agent.registered",
        "target.key_pinned",
        "agent.connected",
        "secret.written",
        "run.submitted",
        "run.started",
        "run.finished",
        "run.canceled",
        "pool.created",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let online = verify(&w).await;
    assert!(online.ok, "{online:?}");
    assert_eq!(online.entries, entries.len() as u64);
    let offline = verify_chain(&entries);
    assert!(offline.ok);
    assert_eq!(offline.head, online.head);
    assert_eq!(online.head, entries.last().unwrap().hash);
}

#[tokio::test]
async fn verify_rehashes_only_what_was_appended_since_unless_asked_for_everything() {
    let w = busy_world().await;
    let first = verify(&w).await;
    assert_eq!((first.ok, first.verified_from), (true, 1));
    w.admin.post("/v1/pools", json!({"name": "us"})).await.ok();
    let next = verify(&w).await;
    assert!(next.ok, "{next:?}");
    assert_eq!(next.verified_from, first.entries + 1);
    assert_eq!(next.entries, first.entries + 1);
    let full: AuditVerification = w.admin.get("/v1/audit/verify?full=true").await.ok().parse();
    assert_eq!(
        (full.ok, full.verified_from, full.head),
        (true, 1, next.head)
    );
    let bad = w.admin.get("/v1/audit/verify?full=yes").await;
    assert_eq!(bad.status, reqwest::StatusCode::BAD_REQUEST, "{}", bad.text);
}
