//! People over HTTP: users hold tokens (acting with the user's role),
//! disabling a user revokes every token it holds at once, groups of users,
//! and who may manage them (issue 15).
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{Client, ControlPlane as _, InProcessServer, World};
use sealrun_wire::admin::{Role, TokenCreated, Whoami};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::people::{GroupList, GroupView, UserDisabled, UserList, UserView};
use serde_json::json;
use std::time::Duration;

/// How long a disabled user's stream may outlive the disabling.
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

async fn create_user(admin: &Client, name: &str, role: &str) -> UserView {
    let a = admin
        .post("/v1/users", json!({"name": name, "role": role}))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    a.parse()
}

/// A new token for existing user `user`, as a client.
async fn token_for(admin: &Client, user: &str, label: &str) -> Client {
    let a = admin
        .post("/v1/tokens", json!({"user": user, "name": label}))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let created: TokenCreated = a.parse();
    assert_eq!(created.view.user, user);
    admin.with_token(&created.token)
}

async fn users(admin: &Client) -> Vec<UserView> {
    admin.get("/v1/users").await.ok().parse::<UserList>().users
}

async fn user(admin: &Client, name: &str) -> UserView {
    users(admin)
        .await
        .into_iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("no user {name}"))
}

async fn audit_actions(admin: &Client) -> Vec<(String, String, String)> {
    let page: AuditPage = admin.get("/v1/audit?limit=1000").await.ok().parse();
    page.entries
        .into_iter()
        .map(|e| (e.action, e.subject, e.detail))
        .collect()
}

#[tokio::test]
async fn two_tokens_of_one_user_are_the_same_person_with_the_users_role() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    create_user(&admin, "alice", "operator").await;
    let laptop = token_for(&admin, "alice", "alice-laptop").await;
    let ci = token_for(&admin, "alice", "alice-ci").await;

    for (client, label) in [(&laptop, "alice-laptop"), (&ci, "alice-ci")] {
        let me: Whoami = client.get("/v1/whoami").await.ok().parse();
        assert_eq!(me.user.as_deref(), Some("alice"));
        assert_eq!((me.name.as_str(), me.role.as_str()), (label, "operator"));
    }
    assert_eq!(user(&admin, "alice").await.tokens, 2);
}

#[tokio::test]
async fn a_token_for_an_existing_user_may_not_name_another_role() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    create_user(&admin, "alice", "auditor").await;
    let msg = admin
        .post(
            "/v1/tokens",
            json!({"user": "alice", "role": "admin", "name": "sneaky"}),
        )
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains("role auditor"), "{msg}");
    // Positive control: without the role it is issued, as an auditor.
    let alice = token_for(&admin, "alice", "laptop").await;
    let me: Whoami = alice.get("/v1/whoami").await.ok().parse();
    assert_eq!(me.role, "auditor");
}

#[tokio::test]
async fn token_create_with_name_and_role_makes_the_user_or_reuses_it_with_that_role_only() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    admin.token("ops", Role::Operator).await;
    admin.token("ops", Role::Operator).await;
    let ops = user(&admin, "ops").await;
    assert_eq!((ops.role, ops.tokens), (Role::Operator, 2));

    let msg = admin
        .post("/v1/tokens", json!({"name": "ops", "role": "admin"}))
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains("\"ops\" has role operator"), "{msg}");
    assert_eq!(user(&admin, "ops").await.tokens, 2);
}

#[tokio::test]
async fn a_token_for_an_unknown_user_is_a_404_naming_it() {
    let s = InProcessServer::start().await;
    let msg = s
        .admin()
        .post("/v1/tokens", json!({"user": "nobody"}))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(msg, "no user named \"nobody\"");
}

#[tokio::test]
async fn duplicate_user_and_group_names_are_refused_409() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    create_user(&admin, "alice", "operator").await;
    let msg = admin
        .post("/v1/users", json!({"name": "alice", "role": "auditor"}))
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains("already exists"), "{msg}");

    admin.post("/v1/groups", json!({"name": "dba"})).await.ok();
    let msg = admin
        .post("/v1/groups", json!({"name": "dba"}))
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains("already exists"), "{msg}");
}

#[tokio::test]
async fn bad_user_and_group_names_are_refused_400_naming_the_rule() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    for bad in ["", "   ", "line\nbreak", &"x".repeat(129)] {
        let msg = admin
            .post("/v1/users", json!({"name": bad, "role": "operator"}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains("invalid user name"), "{bad:?}: {msg}");
    }
    for bad in ["", "has space", "../dba", "-dash"] {
        let msg = admin
            .post("/v1/groups", json!({"name": bad}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains("invalid group name"), "{bad:?}: {msg}");
    }
    // Positive control: good names pass.
    create_user(&admin, "Alice Smith", "operator").await;
    admin
        .post("/v1/groups", json!({"name": "dba.oncall"}))
        .await
        .ok();
}

#[tokio::test]
async fn only_admins_manage_users_and_groups() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let operator = admin.token("ops", Role::Operator).await;
    let auditor = admin.token("soc", Role::Auditor).await;
    for who in [&operator, &auditor] {
        for (method, path, body) in [
            ("POST", "/v1/users", json!({"name": "eve", "role": "admin"})),
            ("GET", "/v1/users", json!(null)),
            ("POST", "/v1/users/ops/disable", json!(null)),
            ("POST", "/v1/groups", json!({"name": "dba"})),
            ("GET", "/v1/groups", json!(null)),
        ] {
            let a = match method {
                "GET" => who.get(path).await,
                _ => who.post(path, body).await,
            };
            let msg = a.error(StatusCode::FORBIDDEN);
            assert!(msg.contains("cannot manage users and groups"), "{msg}");
        }
    }
    // Nothing happened; positive control: the admin may.
    assert!(users(&admin).await.iter().all(|u| u.name != "eve"));
    assert_eq!(user(&admin, "ops").await.disabled_at_ms, None);
    create_user(&admin, "eve", "operator").await;
}

/// Starts following run `run` with `token`; the task ends with the stream.
#[tokio::test]
async fn disabling_a_user_revokes_every_token_at_once_and_ends_its_followed_log() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["cat"], &[]).await;
    assert_eq!(w.agent.next_run().await.run_id, run);
    create_user(&w.admin, "alice", "auditor").await;
    let laptop = token_for(&w.admin, "alice", "laptop").await;
    let phone = token_for(&w.admin, "alice", "phone").await;
    let bob = w.admin.token("bob", Role::Auditor).await;
    let gone = w.server.follow_log(&laptop.token, &run).await;
    let kept = w.server.follow_log(&bob.token, &run).await;

    let done: UserDisabled = w
        .admin
        .post("/v1/users/alice/disable", json!({}))
        .await
        .ok()
        .parse();
    assert_eq!(done.tokens_revoked, 2);
    assert!(done.user.disabled_at_ms.is_some());
    assert_eq!(done.user.tokens, 0);

    tokio::time::timeout(REVOCATION_BOUND, gone)
        .await
        .expect("the disabled user's stream ended")
        .unwrap();
    for token in [&laptop, &phone] {
        token.get("/v1/runs").await.error(StatusCode::UNAUTHORIZED);
    }
    // Positive control: another user's token and stream go on.
    bob.get("/v1/runs").await.ok();
    assert!(!kept.is_finished());
    // And the disabled user gets no new token.
    let msg = w
        .admin
        .post("/v1/tokens", json!({"user": "alice"}))
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains("disabled"), "{msg}");
    let audited = audit_actions(&w.admin).await;
    let entry = audited
        .iter()
        .find(|(action, ..)| action == "user.disabled")
        .expect("audited");
    assert_eq!(entry.1, "user:alice");
    assert!(entry.2.contains(r#""tokens_revoked":2"#), "{}", entry.2);
}

#[tokio::test]
async fn the_last_admin_with_a_working_token_cannot_be_disabled() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let msg = admin
        .post("/v1/users/admin/disable", json!({}))
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains("last admin"), "{msg}");
    admin.get("/v1/whoami").await.ok();

    // Positive control: with a second admin, the first can go.
    let root = admin.token("root", Role::Admin).await;
    root.post("/v1/users/admin/disable", json!({})).await.ok();
    admin
        .get("/v1/whoami")
        .await
        .error(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn disabling_an_unknown_user_is_a_404_naming_it() {
    let s = InProcessServer::start().await;
    let msg = s
        .admin()
        .post("/v1/users/ghost/disable", json!({}))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(msg, "no user named \"ghost\"");
}

#[tokio::test]
async fn a_group_is_created_changed_and_deleted_and_each_change_is_audited() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    for name in ["alice", "bob", "carol"] {
        create_user(&admin, name, "operator").await;
    }
    let created = admin
        .post("/v1/groups", json!({"name": "dba", "members": ["alice"]}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let dba: GroupView = created.parse();
    assert_eq!(dba.members, ["alice"]);

    let dba: GroupView = admin
        .post(
            "/v1/groups/dba/add",
            json!({"users": ["carol", "bob", "alice"]}),
        )
        .await
        .ok()
        .parse();
    assert_eq!(dba.members, ["alice", "bob", "carol"]);
    let dba: GroupView = admin
        .post("/v1/groups/dba/remove", json!({"users": ["alice"]}))
        .await
        .ok()
        .parse();
    assert_eq!(dba.members, ["bob", "carol"]);
    let shown: GroupView = admin.get("/v1/groups/dba").await.ok().parse();
    assert_eq!(shown, dba);
    let list: GroupList = admin.get("/v1/groups").await.ok().parse();
    assert_eq!(list.groups, [dba]);

    admin.delete("/v1/groups/dba").await.ok();
    admin
        .get("/v1/groups/dba")
        .await
        .error(StatusCode::NOT_FOUND);
    let list: GroupList = admin.get("/v1/groups").await.ok().parse();
    assert!(list.groups.is_empty());

    let audited: Vec<(String, String)> = audit_actions(&admin)
        .await
        .into_iter()
        .filter(|(_, subject, _)| subject == "group:dba")
        .map(|(action, _, detail)| (action, detail))
        .collect();
    let actions: Vec<&str> = audited.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "group.created",
            "group.members_changed",
            "group.members_changed",
            "group.deleted"
        ]
    );
    assert!(
        audited[1].1.contains(r#""added":["carol","bob"]"#),
        "alice was a member already: {}",
        audited[1].1
    );
    assert!(
        audited[2].1.contains(r#""removed":["alice"]"#),
        "{}",
        audited[2].1
    );
}

#[tokio::test]
async fn adding_an_unknown_user_to_a_group_is_a_404_naming_it_and_changes_nothing() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    create_user(&admin, "alice", "operator").await;
    admin.post("/v1/groups", json!({"name": "dba"})).await.ok();
    let msg = admin
        .post("/v1/groups/dba/add", json!({"users": ["alice", "mallory"]}))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(msg, "no user named \"mallory\"");
    let dba: GroupView = admin.get("/v1/groups/dba").await.ok().parse();
    assert!(dba.members.is_empty(), "{dba:?}");

    let msg = admin
        .post("/v1/groups", json!({"name": "sre", "members": ["mallory"]}))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(msg, "no user named \"mallory\"");
    admin
        .get("/v1/groups/sre")
        .await
        .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_are_listed_with_role_working_tokens_and_whether_disabled() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    create_user(&admin, "bob", "auditor").await;
    let listed: Vec<(String, Role, u32, bool)> = users(&admin)
        .await
        .into_iter()
        .map(|u| (u.name, u.role, u.tokens, u.disabled_at_ms.is_some()))
        .collect();
    assert_eq!(
        listed,
        [
            ("admin".to_owned(), Role::Admin, 1, false),
            ("bob".to_owned(), Role::Auditor, 0, false),
        ]
    );
}

#[tokio::test]
async fn issuing_and_revoking_a_token_are_audited_with_its_user_and_the_acting_user() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    create_user(&admin, "alice", "operator").await;
    let created: TokenCreated = admin
        .post("/v1/tokens", json!({"user": "alice", "name": "laptop"}))
        .await
        .ok()
        .parse();
    admin
        .delete(&format!("/v1/tokens/{}", created.view.id))
        .await
        .ok();
    let subject = format!("token:{}", created.view.id);
    let audited = audit_actions(&admin).await;
    for action in ["token.issued", "token.revoked"] {
        let (_, _, detail) = audited
            .iter()
            .find(|(a, s, _)| a == action && *s == subject)
            .unwrap_or_else(|| panic!("{action} is audited"));
        assert!(
            detail.contains(r#""for_user":"alice""#) && detail.contains(r#""user":"admin""#),
            "{action}: {detail}"
        );
    }
}
