//! People through the real `sealrun` CLI against a real control plane (no
//! Docker: nothing here runs a command): users, their tokens, `whoami`,
//! disabling a user, groups (issue 15).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{ControlPlane, InProcessServer, code, quick_settings, text};
use std::process::Output;

/// A failure with one line on stderr, `sealrun: ...`, containing `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected a failure");
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("sealrun: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

#[tokio::test]
async fn an_admin_creates_a_user_issues_it_a_token_and_the_token_says_who_it_is() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.cli(server.admin_token());

    admin.ok(&["user", "create", "alice", "--role", "operator"]);
    let token = admin.ok(&["token", "create", "--user", "alice", "--name", "laptop"]);
    let alice = admin.with_token(token.trim());

    let me = alice.ok(&["whoami"]);
    assert!(me.contains("user: alice"), "{me}");
    assert!(me.contains("name: laptop"), "{me}");
    assert!(me.contains("role: operator"), "{me}");
    let listed = admin.json(&["user", "list"]);
    let alice_row = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .expect("alice is listed");
    assert_eq!(alice_row["role"], "operator");
    assert_eq!(alice_row["tokens"], 1);
    let tokens = admin.ok(&["token", "list"]);
    assert!(
        tokens
            .lines()
            .any(|l| l.contains("laptop") && l.contains("alice")),
        "token list names the user: {tokens}"
    );
}

#[tokio::test]
async fn disabling_a_user_makes_each_of_its_tokens_get_401() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.cli(server.admin_token());
    admin.ok(&["user", "create", "bob", "--role", "auditor"]);
    let first = admin.ok(&["token", "create", "--user", "bob"]);
    let second = admin.ok(&["token", "create", "--user", "bob", "--name", "ci"]);
    let carol = admin.create_token("auditor");
    for token in [&first, &second, &carol] {
        admin.with_token(token.trim()).ok(&["runs", "list"]);
    }

    let out = admin.output(&["user", "disable", "bob"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("2 token(s) revoked"),
        "{}",
        text(&out.stderr)
    );
    for token in [&first, &second] {
        let refused = admin.with_token(token.trim()).output(&["runs", "list"]);
        assert_one_line_error(&refused, "401");
    }
    // Positive control: another user's token still works.
    admin.with_token(carol.trim()).ok(&["runs", "list"]);
    let users = admin.ok(&["user", "list"]);
    let bob = users
        .lines()
        .find(|l| l.starts_with("bob "))
        .expect("bob is listed");
    assert!(
        !bob.trim_end().ends_with('-'),
        "bob shows as disabled: {bob}"
    );
}

#[tokio::test]
async fn groups_are_created_changed_listed_and_deleted_through_the_cli() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.cli(server.admin_token());
    for name in ["alice", "bob", "carol"] {
        admin.ok(&["user", "create", name, "--role", "operator"]);
    }

    admin.ok(&[
        "group", "create", "dba", "--member", "alice", "--member", "bob",
    ]);
    admin.ok(&["group", "add", "dba", "carol"]);
    admin.ok(&["group", "remove", "dba", "alice"]);
    let shown = admin.json(&["group", "show", "dba"]);
    assert_eq!(shown["members"], serde_json::json!(["bob", "carol"]));
    let list = admin.ok(&["group", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("dba") && l.contains("bob,carol")),
        "{list}"
    );

    let unknown = admin.output(&["group", "add", "dba", "mallory"]);
    assert_one_line_error(&unknown, "no user named \"mallory\"");

    admin.ok(&["group", "delete", "dba"]);
    let gone = admin.output(&["group", "show", "dba"]);
    assert_one_line_error(&gone, "no group named \"dba\"");
}

#[tokio::test]
async fn an_operator_cannot_create_users_and_is_told_why_in_one_line() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.cli(server.admin_token());
    let operator = admin.with_token(&admin.create_token("operator"));
    let out = operator.output(&["user", "create", "eve", "--role", "admin"]);
    assert_one_line_error(&out, "cannot manage users and groups");
    // Nothing was created; positive control: the admin may.
    let users = admin.ok(&["user", "list"]);
    assert!(!users.contains("eve"), "{users}");
    admin.ok(&["user", "create", "eve", "--role", "admin"]);
}

#[tokio::test]
async fn a_slack_user_is_linked_to_a_sealrun_user_with_as_and_listed_with_its_role() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.cli(server.admin_token());
    admin.ok(&["user", "create", "alice", "--role", "auditor"]);
    let out = admin.output_with_stdin(
        &["slack", "link-workspace", "--team-id", "T0PEOPLE"],
        b"0123456789abcdef0123456789abcdef",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));

    admin.ok(&[
        "slack",
        "link-user",
        "--team-id",
        "T0PEOPLE",
        "--user",
        "U0ALICE",
        "--as",
        "alice",
    ]);
    let users = admin.json(&["slack", "users"]);
    let linked = &users["users"][0];
    assert_eq!(
        (&linked["user_id"], &linked["name"], &linked["role"]),
        (
            &serde_json::json!("U0ALICE"),
            &serde_json::json!("alice"),
            &serde_json::json!("auditor")
        )
    );
    let unknown = admin.output(&[
        "slack",
        "link-user",
        "--team-id",
        "T0PEOPLE",
        "--user",
        "U0BOB",
        "--as",
        "bob",
    ]);
    assert_one_line_error(&unknown, "no user named \"bob\"");
}
