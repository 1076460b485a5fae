//! Agents witness the audit history: someone who can write the control
//! plane's database rewrites an entry and recomputes every later hash (so
//! `audit verify` passes), and the real agent, which remembers the last link
//! it saw, refuses the next run it is handed, reports it as an error, runs
//! and opens nothing, and stops taking work. The edits are made with SQLite
//! directly, as that adversary would, on the running server's database.
//! It drives `target/<profile>/sealrun`: run it with the workspace
//! (`scripts/test.sh`, `cargo nextest run --workspace`) so that binary is
//! current.
#![allow(clippy::unwrap_used)]

use rusqlite::{Connection, params};
use sealrun_testkit::{World, require_docker};
use sealrun_wire::audit::{AuditEntry, AuditVerification};
use sealrun_wire::run::RunStatus;
use std::path::Path;
use std::time::Duration;

/// Edits the `run.submitted` entry of `run` (what was run, for the record)
/// and recomputes the hash of it and of every later entry of its org, in
/// one transaction, and drops the verification checkpoint: a rewrite that
/// `audit verify` cannot see.
fn rewrite_history(db: &Path, run: &str) {
    let mut conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let (org, edited): (i64, u64) = tx
        .query_row(
            "SELECT org_id, seq FROM audit WHERE action = 'run.submitted' AND subject = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut entries: Vec<AuditEntry> = tx
        .prepare(
            "SELECT seq, at_ms, actor, action, subject, detail, prev_hash, hash FROM audit
             WHERE org_id = ?1 AND seq >= ?2 ORDER BY seq",
        )
        .unwrap()
        .query_map(params![org, edited], |r| {
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
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        entries[0].detail.contains("before"),
        "{}",
        entries[0].detail
    );
    entries[0].detail = entries[0].detail.replace("before", "harmless");
    let mut prev = entries[0].prev_hash.clone();
    for e in &mut entries {
        e.prev_hash = prev;
        e.hash = e.compute_hash();
        prev = e.hash.clone();
        tx.execute(
            "UPDATE audit SET detail = ?3, prev_hash = ?4, hash = ?5 WHERE org_id = ?1 AND seq = ?2",
            params![org, e.seq, e.detail, e.prev_hash, e.hash],
        )
        .unwrap();
    }
    tx.execute("DELETE FROM audit_checkpoints", []).unwrap();
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_refuses_all_work_once_the_audit_history_it_saw_is_rewritten() {
    if !require_docker() {
        return;
    }
    let mut w = World::spawned().await;
    // Positive control: a run goes through, and the agent sees its entries.
    let before = w.submit(&["echo", "before"]).await;
    let done = w.admin.wait_terminal(&before).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");

    rewrite_history(&w.server.data_dir.join(sealrun_control::DB_FILE), &before);
    // The rewrite is invisible to the chain alone.
    let verified: AuditVerification = w.admin.get("/v1/audit/verify").await.ok().parse();
    assert!(verified.ok, "{verified:?}");

    let after = w.submit(&["echo", "after"]).await;
    let refused = w.admin.wait_terminal(&after).await;
    assert_eq!(refused.status, RunStatus::Error, "{refused:?}");
    let why = refused.error.unwrap_or_default();
    assert!(
        why.contains("audit history was rewritten") && why.contains("no more work"),
        "{why}"
    );
    assert_eq!(refused.log_bytes, 0, "nothing ran");
    let exit = w.agent.wait_exit(Duration::from_secs(60));
    assert!(!exit.success(), "the agent stops taking work: {exit:?}");
    assert!(
        w.agent.log().contains("refusing all work"),
        "{}",
        w.agent.log()
    );
    w.assert_no_containers();
}
