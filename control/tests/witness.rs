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

use crate::common;

use common::{AUDIT_COLUMNS, audit_entry};
use rusqlite::{Connection, params};
use sealrun_testkit::{ControlPlane as _, ServerProcess, World, require_docker, text};
use sealrun_wire::audit::{AuditEntry, AuditVerification};
use sealrun_wire::run::RunStatus;
use std::path::Path;
use std::time::Duration;

/// Edits the entry `action` on `subject` (its detail: `from` becomes `to`)
/// and recomputes the hash of it and of every later entry of its org, in
/// one transaction, and drops the verification checkpoint: a rewrite that
/// `audit verify` cannot see.
fn rewrite_history(db: &Path, action: &str, subject: &str, from: &str, to: &str) {
    let mut conn = Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let (org, edited): (i64, u64) = tx
        .query_row(
            "SELECT org_id, seq FROM audit WHERE action = ?1 AND subject = ?2",
            [action, subject],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut entries: Vec<AuditEntry> = tx
        .prepare(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE org_id = ?1 AND seq >= ?2 ORDER BY seq"
        ))
        .unwrap()
        .query_map(params![org, edited], audit_entry)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(entries[0].detail.contains(from), "{}", entries[0].detail);
    entries[0].detail = entries[0].detail.replace(from, to);
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

    let db = w.server.data_dir.join(sealrun_control::DB_FILE);
    rewrite_history(&db, "run.submitted", &before, "before", "harmless");
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

#[tokio::test]
async fn a_cli_that_saw_the_trail_detects_a_rewrite_that_audit_verify_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]).await;
    let cli = server.cli(&server.admin_token);
    cli.ok(&[
        "token",
        "create",
        "--role",
        "operator",
        "--name",
        "ops-before",
    ]);
    let first = cli.output(&["audit", "verify", "--witness"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains("remembering entry"),
        "{}",
        text(&first.stderr)
    );
    // The trail grows: still its extension (positive control).
    cli.ok(&[
        "token",
        "create",
        "--role",
        "auditor",
        "--name",
        "audit-later",
    ]);
    let grown = cli.output(&["audit", "verify", "--witness"]);
    assert!(grown.status.success(), "{}", text(&grown.stderr));
    assert!(
        text(&grown.stderr).contains("OK, the trail extends"),
        "{}",
        text(&grown.stderr)
    );

    let issued: String = {
        let conn = Connection::open(server.data_dir.join(sealrun_control::DB_FILE)).unwrap();
        conn.query_row(
            "SELECT subject FROM audit WHERE action = 'token.issued' AND detail LIKE '%ops-before%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    rewrite_history(
        &server.data_dir.join(sealrun_control::DB_FILE),
        "token.issued",
        &issued,
        "ops-before",
        "ops-harmless",
    );
    let plain = cli.output(&["audit", "verify"]);
    assert!(
        plain.status.success(),
        "the rewrite is invisible to the chain alone"
    );
    let witnessed = cli.output(&["audit", "verify", "--witness"]);
    assert!(!witnessed.status.success());
    let said = text(&witnessed.stderr);
    assert!(said.contains("audit history was rewritten"), "{said}");
}
