//! The audit trail records every state change in a hash chain, and
//! verification catches rows edited, deleted or reordered in the database.
#![allow(clippy::unwrap_used)]

use rusqlite::Connection;
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

fn db(w: &InProcessWorld) -> Connection {
    Connection::open(w.server.db_path()).unwrap()
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
async fn an_edited_audit_row_is_detected() {
    let w = busy_world().await;
    let n = db(&w)
        .execute(
            "UPDATE audit SET actor = 'token:someone-else' WHERE seq = 10",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    let v = verify(&w).await;
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(10));
    assert!(v.problem.unwrap().contains("altered"));
}

#[tokio::test]
async fn an_edited_row_with_its_hash_recomputed_is_detected_at_the_next_row() {
    let w = busy_world().await;
    let conn = db(&w);
    let mut e: AuditEntry = conn
        .query_row(
            "SELECT seq, at_ms, actor, action, subject, detail, prev_hash, hash FROM audit WHERE seq = 10",
            [],
            |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    subject: r.get(4)?,
                    detail: r.get(5)?,
                    prev_hash: r.get(6)?,
                    hash: r.get(7)?,
                })
            },
        )
        .unwrap();
    e.detail = "{}".into();
    e.hash = e.compute_hash();
    conn.execute(
        "UPDATE audit SET detail = ?1, hash = ?2 WHERE seq = 10",
        rusqlite::params![e.detail, e.hash],
    )
    .unwrap();
    let v = verify(&w).await;
    assert_eq!(v.first_bad_seq, Some(11));
}

#[tokio::test]
async fn a_deleted_audit_row_is_detected() {
    let w = busy_world().await;
    assert_eq!(
        db(&w)
            .execute("DELETE FROM audit WHERE seq = 12", [])
            .unwrap(),
        1
    );
    let v = verify(&w).await;
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(13));
    assert!(v.problem.unwrap().contains("expected entry 12"));
}

#[tokio::test]
async fn reordered_audit_rows_are_detected() {
    let w = busy_world().await;
    // Swap the positions of entries 8 and 9.
    let conn = db(&w);
    conn.execute_batch(
        "BEGIN;
         UPDATE audit SET seq = -1 WHERE seq = 8;
         UPDATE audit SET seq = 8 WHERE seq = 9;
         UPDATE audit SET seq = 9 WHERE seq = -1;
         COMMIT;",
    )
    .unwrap();
    let v = verify(&w).await;
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(8));
}

#[tokio::test]
async fn appends_after_tampering_do_not_hide_it() {
    let w = busy_world().await;
    db(&w)
        .execute("UPDATE audit SET subject = 'x' WHERE seq = 5", [])
        .unwrap();
    w.admin.submit("db", &["true"], &[]).await;
    let v = verify(&w).await;
    assert_eq!(v.first_bad_seq, Some(5));
}
