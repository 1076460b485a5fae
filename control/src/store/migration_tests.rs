//! Migrations keep existing data: a database made at the schema version
//! before a migration, with rows in it, is opened by today's control plane.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::db::open_connection;
use super::schema::MIGRATIONS;
use crate::token::{self, NewToken, TokenKind};
use crate::{Attempt, Control, OpenOptions, Settings};
use rusqlite::Connection;
use sealrun_wire::admin::Role;
use std::path::Path;

const ATTEMPT: Attempt<'static> = Attempt {
    method: "GET",
    path: "/v1/whoami",
};

/// The index in [`MIGRATIONS`] of the migration that brought users (issue
/// 15), found by its content so that migrations appended later do not move
/// it.
fn people_migration() -> usize {
    MIGRATIONS
        .iter()
        .position(|m| m.contains("CREATE TABLE users ("))
        .expect("the people migration")
}

/// A database at `path` at schema version `version` (migrations before it
/// applied, as an older sealrun left it).
fn database_at(path: &Path, version: usize) -> Connection {
    let conn = open_connection(path).unwrap();
    for sql in &MIGRATIONS[..version] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", version as i64)
        .unwrap();
    conn
}

/// Inserts a user token as an older sealrun did (a label and a role);
/// returns its value.
fn old_user_token(conn: &Connection, org_id: i64, label: &str, role: &str, at: i64) -> NewToken {
    let new = token::mint(TokenKind::User);
    conn.execute(
        "INSERT INTO tokens (id, org_id, kind, role, name, secret_sha256, created_ms)
         VALUES (?1, ?2, 'user', ?3, ?4, ?5, ?6)",
        rusqlite::params![
            new.id,
            org_id,
            role,
            label,
            new.secret_sha256.as_slice(),
            at
        ],
    )
    .unwrap();
    new
}

fn old_slack_user(conn: &Connection, org_id: i64, user_id: &str, name: &str, role: &str) {
    conn.execute(
        "INSERT INTO slack_users (team_id, org_id, user_id, name, role, updated_ms)
         VALUES ('T1', ?1, ?2, ?3, ?4, 50)",
        rusqlite::params![org_id, user_id, name, role],
    )
    .unwrap();
}

/// An older database: org acme with tokens labelled alice (operator, twice),
/// bob (operator, then auditor), "initial admin" (admin); a Slack user
/// linked as alice/operator and one as carol/auditor (no token).
struct Old {
    alice_laptop: NewToken,
    alice_ci: NewToken,
    bob_operator: NewToken,
    bob_auditor: NewToken,
    admin: NewToken,
}

fn old_database(path: &Path) -> Old {
    let conn = database_at(path, people_migration());
    conn.execute(
        "INSERT INTO orgs (id, name, created_ms) VALUES (1, 'acme', 1)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pools (org_id, name, created_ms) VALUES (1, 'default', 1)",
        [],
    )
    .unwrap();
    let old = Old {
        admin: old_user_token(&conn, 1, "initial admin", "admin", 1),
        alice_laptop: old_user_token(&conn, 1, "alice", "operator", 10),
        alice_ci: old_user_token(&conn, 1, "alice", "operator", 20),
        bob_operator: old_user_token(&conn, 1, "bob", "operator", 30),
        bob_auditor: old_user_token(&conn, 1, "bob", "auditor", 40),
    };
    conn.execute(
        "INSERT INTO slack_workspaces (team_id, org_id, sealed, created_ms, updated_ms)
         VALUES ('T1', 1, '{}', 1, 1)",
        [],
    )
    .unwrap();
    old_slack_user(&conn, 1, "UALICE", "alice", "operator");
    old_slack_user(&conn, 1, "UCAROL", "carol", "auditor");
    old
}

fn open(dir: &Path) -> Control {
    Control::open(OpenOptions {
        data_dir: dir,
        org_name: "acme",
        admin_token_file: None,
        settings: Settings::default(),
        database: None,
    })
    .unwrap()
}

/// (user name, role) of the token with value `value`, as authenticated.
async fn who(control: &Control, value: &str) -> (i64, String, Role) {
    let user = control
        .authenticate(value, ATTEMPT)
        .await
        .unwrap()
        .into_user()
        .unwrap();
    (user.user_id, user.user, user.role)
}

#[tokio::test]
async fn tokens_with_one_label_and_role_become_one_user_holding_both() {
    let dir = tempfile::tempdir().unwrap();
    let old = old_database(&dir.path().join(super::DB_FILE));
    let control = open(dir.path());

    let (laptop_id, laptop_user, laptop_role) = who(&control, &old.alice_laptop.value).await;
    let (ci_id, ci_user, _) = who(&control, &old.alice_ci.value).await;
    assert_eq!(
        (laptop_user.as_str(), laptop_role),
        ("alice", Role::Operator)
    );
    assert_eq!(laptop_id, ci_id, "one person, two tokens");
    assert_eq!(ci_user, "alice");
    control.close();
}

#[tokio::test]
async fn one_label_with_two_roles_becomes_two_users_the_later_with_a_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let old = old_database(&dir.path().join(super::DB_FILE));
    let control = open(dir.path());

    let (op_id, op_user, op_role) = who(&control, &old.bob_operator.value).await;
    let (aud_id, aud_user, aud_role) = who(&control, &old.bob_auditor.value).await;
    assert_eq!((op_user.as_str(), op_role), ("bob", Role::Operator));
    assert_eq!((aud_user.as_str(), aud_role), ("bob-2", Role::Auditor));
    assert_ne!(op_id, aud_id);
    // Each token keeps its label.
    let admin = control
        .authenticate(&old.admin.value, ATTEMPT)
        .await
        .unwrap()
        .into_user()
        .unwrap();
    assert_eq!(
        (admin.user.as_str(), admin.name.as_str(), admin.role),
        ("initial admin", "initial admin", Role::Admin)
    );
    let users = control.list_users(&admin).await.unwrap();
    let listed: Vec<(&str, Role, u32)> = users
        .iter()
        .map(|u| (u.name.as_str(), u.role, u.tokens))
        .collect();
    assert_eq!(
        listed,
        [
            ("alice", Role::Operator, 2),
            ("bob", Role::Operator, 1),
            ("bob-2", Role::Auditor, 1),
            ("carol", Role::Auditor, 0),
            ("initial admin", Role::Admin, 1),
        ]
    );
    control.close();
}

#[tokio::test]
async fn slack_links_become_links_to_users_created_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let old = old_database(&dir.path().join(super::DB_FILE));
    let control = open(dir.path());
    let admin = control
        .authenticate(&old.admin.value, ATTEMPT)
        .await
        .unwrap()
        .into_user()
        .unwrap();
    let (alice_id, _, _) = who(&control, &old.alice_laptop.value).await;

    let links = control.list_slack_users(&admin).await.unwrap();
    let linked: Vec<(&str, &str, Role)> = links
        .iter()
        .map(|l| (l.user_id.as_str(), l.name.as_str(), l.role))
        .collect();
    assert_eq!(
        linked,
        [
            ("UALICE", "alice", Role::Operator),
            ("UCAROL", "carol", Role::Auditor)
        ]
    );
    // The Slack alice is the same person as the token alice.
    let alice_via_slack = control
        .db
        .read(|tx| super::slack::user(tx, "T1", 1, "UALICE"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice_via_slack.0, alice_id);
    control.close();
}

#[tokio::test]
async fn agent_and_enrollment_tokens_belong_to_no_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(super::DB_FILE);
    let conn = database_at(&path, people_migration());
    conn.execute(
        "INSERT INTO orgs (id, name, created_ms) VALUES (1, 'acme', 1)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pools (id, org_id, name, created_ms) VALUES (1, 1, 'default', 1)",
        [],
    )
    .unwrap();
    let enroll = token::mint(TokenKind::Enrollment);
    conn.execute(
        "INSERT INTO tokens (id, org_id, kind, name, secret_sha256, pool_id, created_ms)
         VALUES (?1, 1, 'enrollment', 'enrollment:default', ?2, 1, 1)",
        rusqlite::params![enroll.id, enroll.secret_sha256.as_slice()],
    )
    .unwrap();
    drop(conn);
    let control = open(dir.path());
    let id = enroll.id.clone();
    let owner: Option<i64> = control
        .db
        .read(move |tx| {
            Ok(tx.query_row(
                "SELECT user_id FROM tokens WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(owner, None);
    // Positive control: it still enrolls.
    let principal = control.authenticate(&enroll.value, ATTEMPT).await.unwrap();
    assert!(principal.into_enroller().is_ok());
    control.close();
}

#[tokio::test]
async fn a_suffix_that_is_already_a_label_gets_the_first_token_id_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(super::DB_FILE);
    let conn = database_at(&path, people_migration());
    conn.execute(
        "INSERT INTO orgs (id, name, created_ms) VALUES (1, 'acme', 1)",
        [],
    )
    .unwrap();
    let admin = old_user_token(&conn, 1, "root", "admin", 1);
    let bob = old_user_token(&conn, 1, "bob", "operator", 10);
    let other_bob = old_user_token(&conn, 1, "bob", "auditor", 20);
    let bob_2 = old_user_token(&conn, 1, "bob-2", "operator", 30);
    drop(conn);
    let control = open(dir.path());

    let (bob_id, bob_user, _) = who(&control, &bob.value).await;
    let (_, bob_2_user, _) = who(&control, &bob_2.value).await;
    let (other_id, other_user, other_role) = who(&control, &other_bob.value).await;
    assert_eq!(bob_user, "bob");
    assert_eq!(bob_2_user, "bob-2", "a label keeps its name");
    assert_eq!(other_user, format!("bob-2-{}", other_bob.id));
    assert_eq!(other_role, Role::Auditor);
    assert_ne!(other_id, bob_id);
    let (_, root, _) = who(&control, &admin.value).await;
    assert_eq!(root, "root");
    control.close();
}
