//! Someone who edits the database (a backup restored by hand, a rogue DBA)
//! is caught by the audit chain: rows edited, deleted or reordered behind
//! the control plane's back break `audit_verify`. The edits are made with
//! SQLite directly, as that adversary would; everything else goes through
//! the domain, as the HTTP API and Slack do.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{AUDIT_COLUMNS, audit_entry};
use rusqlite::Connection;
use sealrun_control::{Attempt, AuditScope, Control, Member, OpenOptions, Settings, User};
use sealrun_vault::TargetKeypair;
use sealrun_wire::admin::{Role, TargetSpec, TokenCreate};
use sealrun_wire::agent::{
    ChallengeRequest, ConnectRequest, FinishRequest, RegisterRequest, ServedTarget,
};
use sealrun_wire::audit::{AuditEntry, AuditVerification};
use sealrun_wire::run::{RunRequest, RunStatus};

const ATTEMPT: Attempt<'static> = Attempt {
    method: "TEST",
    path: "/",
};

/// A control plane whose trail holds a few dozen entries of every kind.
struct World {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    control: Control,
    admin: User,
}

impl Drop for World {
    fn drop(&mut self) {
        self.control.close();
    }
}

async fn busy_world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    let control = Control::open(OpenOptions {
        data_dir: dir.path(),
        org_name: "acme",
        admin_token_file: Some(&token_file),
        settings: Settings::default(),
        database: None,
    })
    .unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let admin = control
        .authenticate(token.trim(), ATTEMPT)
        .await
        .unwrap()
        .into_user()
        .unwrap();
    let spec = TargetSpec {
        name: "db".into(),
        private_network: "lab".into(),
        pool: TargetSpec::default_pool(),
        image: "sealrun/busybox:latest".into(),
        allowed_images: Vec::new(),
        network: None,
        limits: Default::default(),
        timeout_secs: 600,
        policy: Default::default(),
        user: None,
    };
    control.put_target(&admin, "db".into(), spec).await.unwrap();
    let enroll = control
        .create_enrollment_token(&admin, "default".into(), Default::default())
        .await
        .unwrap();
    let enroller = control
        .authenticate(&enroll.token, ATTEMPT)
        .await
        .unwrap()
        .into_enroller()
        .unwrap();
    let registered = control
        .register_agent(
            &enroller,
            RegisterRequest {
                name: "a1".into(),
                targets: Vec::new(),
            },
        )
        .await
        .unwrap();
    let key = TargetKeypair::generate();
    let agent = control
        .authenticate(&registered.agent_token, ATTEMPT)
        .await
        .unwrap()
        .into_agent()
        .unwrap();
    let targets = vec![ServedTarget {
        name: "db".into(),
        public_key: key.public_key().to_base64(),
        report_key: None,
    }];
    let challenges = control
        .agent_challenges(
            &agent,
            ChallengeRequest {
                targets: targets.clone(),
            },
        )
        .await
        .unwrap();
    let proofs = challenges
        .challenges
        .iter()
        .map(|c| c.answer(&key).unwrap())
        .collect();
    control
        .connect_agent(
            &agent,
            ConnectRequest {
                version: "test".into(),
                max_concurrency: 4,
                targets,
                proofs,
            },
        )
        .await
        .unwrap();
    let ops = control
        .create_token(
            &admin,
            TokenCreate {
                name: "ops".into(),
                user: None,
                role: Some(Role::Operator),
                expires_in_secs: None,
            },
        )
        .await
        .unwrap();
    let op = control
        .authenticate(&ops.token, ATTEMPT)
        .await
        .unwrap()
        .into_user()
        .unwrap();
    let sealed =
        sealrun_vault::seal(&key.public_key(), "PGPASSWORD", "db", b"correct horse").unwrap();
    control
        .put_secret(&op, "db".into(), "PGPASSWORD".into(), sealed)
        .await
        .unwrap();
    // The agent's principal is re-read after connecting (targets, online).
    let agent = control
        .authenticate(&registered.agent_token, ATTEMPT)
        .await
        .unwrap()
        .into_agent()
        .unwrap();
    let member = Member::from(&op);
    for i in 0..3 {
        let request = RunRequest {
            target: "db".into(),
            argv: vec!["echo".into(), i.to_string()],
            env: Default::default(),
            secrets: vec!["PGPASSWORD".into()],
            timeout_secs: None,
            image: None,
            require_agent: false,
            stdin: false,
            break_glass: None,
            runbook: None,
            signed: None,
        };
        let run = control.submit_run(&member, request).await.unwrap().id;
        let dispatched = control.poll(&agent, None).await.unwrap().unwrap();
        assert_eq!(dispatched.assignment.run_id, run);
        let finish = FinishRequest {
            status: RunStatus::Succeeded,
            exit_code: Some(0),
            error: None,
            oom_killed: false,
            next_seq: 0,
            redactions: Default::default(),
            report: None,
        };
        control.finish_run(&agent, run, finish).await.unwrap();
    }
    let queued = RunRequest {
        target: "db".into(),
        argv: vec!["true".into()],
        env: Default::default(),
        secrets: vec![],
        timeout_secs: None,
        image: None,
        require_agent: false,
        stdin: false,
        break_glass: None,
        runbook: None,
        signed: None,
    };
    let queued = control.submit_run(&member, queued).await.unwrap().id;
    control.cancel_run(&member, queued).await.unwrap();
    control.create_pool(&admin, "eu".into()).await.unwrap();
    World {
        db: dir.path().join(sealrun_control::DB_FILE),
        _dir: dir,
        control,
        admin,
    }
}

async fn verify(w: &World) -> AuditVerification {
    w.control
        .audit_verify(&w.admin, AuditScope::SinceCheckpoint)
        .await
        .unwrap()
}

fn db(w: &World) -> Connection {
    Connection::open(&w.db).unwrap()
}

#[tokio::test]
async fn an_untouched_trail_verifies() {
    let w = busy_world().await;
    let v = verify(&w).await;
    assert!(v.ok, "{v:?}");
    assert!(v.entries >= 20, "{v:?}");
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
    let mut e = entry(&conn, 10);
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
    w.control.create_pool(&w.admin, "us".into()).await.unwrap();
    let v = verify(&w).await;
    assert_eq!(v.first_bad_seq, Some(5));
}

// Verification is incremental: a checkpoint (the last entry found intact,
// and its hash) lets the next verification re-hash only what was appended
// since. What that can and cannot see is the guarantee documented on
// `Control::audit_verify`; the tests below pin each line of it.

async fn verify_full(w: &World) -> AuditVerification {
    w.control
        .audit_verify(&w.admin, AuditScope::Full)
        .await
        .unwrap()
}

fn entry(conn: &Connection, seq: u64) -> AuditEntry {
    conn.query_row(
        &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq = ?1"),
        [seq],
        audit_entry,
    )
    .unwrap()
}

#[tokio::test]
async fn a_verification_rehashes_only_the_entries_appended_since_the_last_one() {
    let w = busy_world().await;
    let first = verify(&w).await;
    assert!(first.ok, "{first:?}");
    assert_eq!(
        first.verified_from, 1,
        "the first verification checks it all"
    );
    w.control.create_pool(&w.admin, "us".into()).await.unwrap();
    let second = verify(&w).await;
    assert!(second.ok, "{second:?}");
    assert_eq!(second.entries, first.entries + 1);
    assert_eq!(
        second.verified_from,
        first.entries + 1,
        "only the new entry"
    );
    let third = verify(&w).await;
    assert_eq!(
        third.verified_from,
        third.entries + 1,
        "nothing new: nothing re-hashed"
    );
    assert_eq!(third.head, second.head);
    let full = verify_full(&w).await;
    assert!(full.ok);
    assert_eq!((full.verified_from, full.head), (1, second.head));
}

#[tokio::test]
async fn an_entry_appended_since_the_checkpoint_and_edited_is_detected() {
    let w = busy_world().await;
    let before = verify(&w).await;
    w.control.create_pool(&w.admin, "us".into()).await.unwrap();
    let new = before.entries + 1;
    db(&w)
        .execute("UPDATE audit SET subject = 'x' WHERE seq = ?1", [new])
        .unwrap();
    let v = verify(&w).await;
    assert_eq!(v.first_bad_seq, Some(new), "{v:?}");
    assert_eq!(v.verified_from, new);
}

#[tokio::test]
async fn an_entry_edited_before_the_checkpoint_is_found_by_a_full_verification() {
    let w = busy_world().await;
    assert!(verify(&w).await.ok);
    db(&w)
        .execute(
            "UPDATE audit SET actor = 'token:someone-else' WHERE seq = 10",
            [],
        )
        .unwrap();
    // The documented limit: an incremental verification does not re-hash
    // entries before its checkpoint, and the checkpoint's entry is intact.
    let incremental = verify(&w).await;
    assert!(incremental.ok, "{incremental:?}");
    let full = verify_full(&w).await;
    assert!(!full.ok);
    assert_eq!(full.first_bad_seq, Some(10));
    assert!(full.problem.unwrap().contains("altered"));
}

#[tokio::test]
async fn a_failure_found_once_is_reported_until_a_full_verification_passes() {
    let w = busy_world().await;
    assert!(verify(&w).await.ok);
    let conn = db(&w);
    let original = entry(&conn, 10);
    conn.execute("UPDATE audit SET subject = 'x' WHERE seq = 10", [])
        .unwrap();
    assert_eq!(verify_full(&w).await.first_bad_seq, Some(10));
    // The row is put back (a backup restored): incremental verifications
    // still report what was found, a full one that passes clears it.
    conn.execute(
        "UPDATE audit SET subject = ?1 WHERE seq = 10",
        [&original.subject],
    )
    .unwrap();
    let later = verify(&w).await;
    assert_eq!(later.first_bad_seq, Some(10), "{later:?}");
    assert!(later.problem.unwrap().contains("earlier verification"));
    assert!(verify_full(&w).await.ok);
    assert!(verify(&w).await.ok);
}

#[tokio::test]
async fn a_chain_rewritten_through_the_checkpoint_is_detected_without_a_full_verification() {
    let w = busy_world().await;
    let checked = verify(&w).await;
    assert!(checked.ok);
    // Edit entry 10 and re-link every entry after it, so the chain itself
    // verifies from the first entry to the head.
    let conn = db(&w);
    let mut prev = entry(&conn, 9).hash;
    for seq in 10..=checked.entries {
        let mut e = entry(&conn, seq);
        if seq == 10 {
            e.actor = "token:someone-else".into();
        }
        e.prev_hash = prev;
        e.hash = e.compute_hash();
        conn.execute(
            "UPDATE audit SET actor = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![e.actor, e.prev_hash, e.hash, seq],
        )
        .unwrap();
        prev = e.hash;
    }
    // Positive control: the rewritten chain is consistent on its own.
    let exported: Vec<AuditEntry> = (1..=checked.entries).map(|s| entry(&conn, s)).collect();
    assert!(sealrun_wire::audit::verify_chain(&exported).ok);
    let v = verify(&w).await;
    assert_eq!(v.first_bad_seq, Some(checked.entries), "{v:?}");
    assert!(v.problem.unwrap().contains("rewritten"));
}

#[tokio::test]
async fn entries_removed_from_the_end_after_a_verification_are_detected() {
    let w = busy_world().await;
    let checked = verify(&w).await;
    assert!(checked.ok);
    db(&w)
        .execute("DELETE FROM audit WHERE seq > ?1", [checked.entries - 3])
        .unwrap();
    let v = verify(&w).await;
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(checked.entries));
    assert!(v.problem.as_deref().unwrap().contains("gone"), "{v:?}");
    // A full verification, which otherwise finds a shorter chain intact,
    // says so too.
    assert_eq!(verify_full(&w).await.first_bad_seq, Some(checked.entries));
}
