//! Someone who edits the database (a backup restored by hand, a rogue DBA)
//! is caught by the audit chain: rows edited, deleted or reordered behind
//! the control plane's back break `audit_verify`. The edits are made with
//! SQLite directly, as that adversary would; everything else goes through
//! the domain, as the HTTP API and Slack do.
#![allow(clippy::unwrap_used)]

use rusqlite::Connection;
use sealrun_control::{Attempt, Control, Member, OpenOptions, Settings, User};
use sealrun_vault::TargetKeypair;
use sealrun_wire::admin::{Role, TargetSpec, TokenCreate};
use sealrun_wire::agent::{ConnectRequest, FinishRequest, RegisterRequest, ServedTarget};
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
    control
        .connect_agent(
            &agent,
            ConnectRequest {
                version: "test".into(),
                max_concurrency: 4,
                targets: vec![ServedTarget {
                    name: "db".into(),
                    public_key: key.public_key().to_base64(),
                }],
            },
        )
        .await
        .unwrap();
    let ops = control
        .create_token(
            &admin,
            TokenCreate {
                name: "ops".into(),
                role: Role::Operator,
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
    w.control.audit_verify(&w.admin).await.unwrap()
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
    w.control.create_pool(&w.admin, "us".into()).await.unwrap();
    let v = verify(&w).await;
    assert_eq!(v.first_bad_seq, Some(5));
}
