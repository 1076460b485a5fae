//! What the suites that attack signed runs share: a world whose agent has
//! a trust file, the running server's database to edit, the check that
//! the agent refused a run with nothing run, and the changes an attacker
//! or an admin makes to it.
#![allow(clippy::unwrap_used)]

use rusqlite::Connection;
use sealrun_testkit::{SpawnedWorld, World, WorldOptions, spawned_target, trust_target};
use sealrun_wire::approval::{ApprovalRule, ApprovalScope};
use sealrun_wire::run::{RunStatus, RunView};
use std::time::Duration;

/// A world whose agent trusts the admin's key, with its admin user and
/// target certified ([`WorldOptions::signed`]).
pub async fn signed_world() -> SpawnedWorld {
    World::spawned_with(WorldOptions {
        signed: true,
        ..WorldOptions::default()
    })
    .await
}

/// The running server's database, as whoever can edit it.
pub fn db(w: &SpawnedWorld) -> Connection {
    let conn = Connection::open(w.server.data_dir.join(sealrun_control::DB_FILE)).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Waits for `run` to end, and checks that the agent refused it for
/// `reason`, with nothing run and no container created (the agent logs
/// every container it creates).
pub async fn assert_refused(w: &SpawnedWorld, run: &str, reason: &str) -> RunView {
    let view = w.admin.wait_terminal(run).await;
    assert_eq!(view.status, RunStatus::Error, "{view:?}");
    let why = view.error.clone().unwrap_or_default();
    assert!(
        why.starts_with("refused by agent") && why.contains(reason),
        "{run}: wanted {reason:?}: {why}"
    );
    assert_eq!(view.log_bytes, 0, "nothing ran: {view:?}");
    assert!(
        !w.agent
            .log()
            .lines()
            .any(|l| l.contains("container created") && l.contains(run)),
        "no container was created for {run}"
    );
    view
}

/// The target now needs one approval for ad-hoc runs, and its admin
/// certifies that declaration.
pub async fn require_one_approval(w: &SpawnedWorld) {
    let mut spec = spawned_target(&w.target, WorldOptions::default().target_timeout_secs);
    spec.policy.approval = Some(ApprovalRule {
        require: ApprovalScope::AdHoc,
        approvals: 1,
        ..ApprovalRule::default()
    });
    w.admin.put_target(&spec).await;
    trust_target(&w.server, &w.admin, &w.target).await;
}

/// Approves `run` without a signature, as `approver` (a Slack click gives
/// such an approval): the control plane records and counts it.
pub async fn approve_unsigned(approver: &sealrun_testkit::Client, run: &str) {
    let digest = approver
        .get(&format!("/v1/approvals/{run}"))
        .await
        .ok()
        .json()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let approved = approver
        .post(
            &format!("/v1/approvals/{run}/approve"),
            serde_json::json!({ "digest": digest }),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text);
}
