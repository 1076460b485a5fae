//! Four-eyes approvals over HTTP: a run that needs approval waits as
//! `pending_approval` and no agent gets it until enough distinct eligible
//! people approved exactly its spec; the submitter never counts, whichever
//! token they use; rejected and expired requests never run; break-glass is
//! for the roles the rule names, with a reason, audited for review.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{Client, InProcessWorld, World, run_request, to_value};
use sealrun_wire::admin::{Role, TargetSpec};
use sealrun_wire::approval::{ApprovalList, ApprovalView};
use sealrun_wire::run::{RunCreated, RunRequest, RunStatus};
use serde_json::{Value, json};

/// People of the org `acme`: alice and bob in group `dba`, carol (an
/// operator outside it), and an auditor.
struct People {
    alice: Client,
    bob: Client,
    carol: Client,
    auditor: Client,
}

/// A world whose target `db` (served by the fake agent) declares `rule` as
/// its approval policy, and its people.
async fn world(rule: Value) -> (InProcessWorld, People) {
    let w = World::in_process().await;
    declare(&w, rule).await;
    let people = People {
        alice: w.admin.token("alice", Role::Operator).await,
        bob: w.admin.token("bob", Role::Operator).await,
        carol: w.admin.token("carol", Role::Operator).await,
        auditor: w.admin.token("audrey", Role::Auditor).await,
    };
    let a = w
        .admin
        .post(
            "/v1/groups",
            json!({"name": "dba", "members": ["alice", "bob"]}),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.text);
    (w, people)
}

async fn declare(w: &InProcessWorld, rule: Value) -> sealrun_testkit::Answer {
    let spec: TargetSpec = serde_json::from_value(json!({
        "name": "db", "image": sealrun_testkit::IMAGE, "timeout_secs": 600,
        "policy": {"approval": rule},
    }))
    .unwrap();
    w.admin.put("/v1/targets/db", to_value(&spec)).await
}

/// Two approvals from `dba` for every ad-hoc command.
fn two_from_dba() -> Value {
    json!({"require": "ad_hoc", "approvals": 2, "from_groups": ["dba"]})
}

async fn submit(who: &Client, req: &RunRequest) -> RunCreated {
    let a = who.post("/v1/runs", to_value(req)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    a.parse()
}

async fn show(who: &Client, id: &str) -> ApprovalView {
    who.get(&format!("/v1/approvals/{id}")).await.ok().parse()
}

async fn approve(who: &Client, id: &str, digest: &str) -> sealrun_testkit::Answer {
    who.post(
        &format!("/v1/approvals/{id}/approve"),
        json!({"digest": digest}),
    )
    .await
}

/// Approves run `id` with the digest `who` is shown.
async fn approve_shown(who: &Client, id: &str) -> sealrun_testkit::Answer {
    let digest = show(who, id).await.digest;
    approve(who, id, &digest).await
}

async fn trail(w: &InProcessWorld, action: &str, subject: &str) -> Vec<Value> {
    w.admin
        .audit_of(action, subject)
        .await
        .into_iter()
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .collect()
}

#[tokio::test]
async fn a_run_needing_two_approvals_from_dba_is_dispatched_only_after_two_distinct_members_approve()
 {
    let (w, p) = world(two_from_dba()).await;
    let created = submit(&p.carol, &run_request("db", &["psql", "-c", "select 1"])).await;
    assert_eq!(created.status, RunStatus::PendingApproval);
    let progress = created.approval.unwrap();
    assert_eq!((progress.approved, progress.required), (0, 2));
    assert_eq!(progress.approvers, "group dba");
    assert!(w.agent.poll().await.is_none(), "dispatched before approval");

    assert_eq!(
        approve_shown(&p.alice, &created.id).await.status,
        StatusCode::OK
    );
    let after_one = show(&p.carol, &created.id).await;
    assert_eq!(after_one.status, RunStatus::PendingApproval);
    assert_eq!(after_one.approvals.len(), 1);
    assert_eq!(after_one.approvals[0].user, "alice");
    assert!(
        w.agent.poll().await.is_none(),
        "dispatched after one approval"
    );

    assert_eq!(
        approve_shown(&p.bob, &created.id).await.status,
        StatusCode::OK
    );
    assert_eq!(w.admin.run(&created.id).await.status, RunStatus::Queued);
    let assignment = w.agent.next_run().await;
    assert_eq!(assignment.run_id, created.id);
    assert_eq!(assignment.argv, ["psql", "-c", "select 1"]);
}

#[tokio::test]
async fn the_submitters_own_approval_is_refused_also_through_a_second_token() {
    let (w, p) = world(two_from_dba()).await;
    let id = submit(&p.alice, &run_request("db", &["true"])).await.id;
    let a = approve_shown(&p.alice, &id).await;
    assert_eq!(
        a.error(StatusCode::FORBIDDEN),
        format!("you submitted run {id}; another person must approve it")
    );
    // Another token of the same user is the same person.
    let second = w
        .admin
        .post(
            "/v1/tokens",
            json!({"user": "alice", "name": "alice-laptop"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let token = second.json()["token"].as_str().unwrap().to_owned();
    let alice_again = w.admin.with_token(&token);
    let a = approve_shown(&alice_again, &id).await;
    assert_eq!(
        a.error(StatusCode::FORBIDDEN),
        format!("you submitted run {id}; another person must approve it")
    );
    assert!(show(&p.bob, &id).await.approvals.is_empty());
    // Positive control: another member's approval counts.
    assert_eq!(approve_shown(&p.bob, &id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn each_person_counts_once() {
    let (_w, p) = world(two_from_dba()).await;
    let id = submit(&p.carol, &run_request("db", &["true"])).await.id;
    assert_eq!(approve_shown(&p.alice, &id).await.status, StatusCode::OK);
    let again = approve_shown(&p.alice, &id).await;
    assert_eq!(
        again.error(StatusCode::CONFLICT),
        format!("you already approved run {id}; each person counts once")
    );
    let view = show(&p.carol, &id).await;
    assert_eq!(
        (view.status, view.approvals.len()),
        (RunStatus::PendingApproval, 1)
    );
}

#[tokio::test]
async fn an_approval_of_one_spec_does_not_approve_a_changed_spec() {
    let rule = json!({"require": "ad_hoc", "approvals": 1, "from_groups": ["dba"]});
    let (w, p) = world(rule).await;
    let a = run_request("db", &["psql", "-c", "select 1"]);
    let mut b = a.clone();
    b.env
        .insert("PGOPTIONS".into(), "-c statement_timeout=0".into());
    let run_a = submit(&p.carol, &a).await.id;
    let run_b = submit(&p.carol, &b).await.id;
    let digest_a = show(&p.alice, &run_a).await.digest;
    let digest_b = show(&p.alice, &run_b).await.digest;
    assert_ne!(
        digest_a, digest_b,
        "one env value apart, yet the same digest"
    );

    // A's digest does not approve B...
    let refused = approve(&p.alice, &run_b, &digest_a).await;
    assert!(
        refused.error(StatusCode::CONFLICT).starts_with(&format!(
            "digest {digest_a} is not the digest of run {run_b}'s spec"
        )),
        "{}",
        refused.text
    );
    // ...approving A leaves B waiting, unapproved.
    assert_eq!(
        approve(&p.alice, &run_a, &digest_a).await.status,
        StatusCode::OK
    );
    assert_eq!(w.admin.run(&run_a).await.status, RunStatus::Queued);
    let b_now = show(&p.alice, &run_b).await;
    assert_eq!(
        (b_now.status, b_now.approvals.len()),
        (RunStatus::PendingApproval, 0)
    );
    assert_eq!(w.agent.next_run().await.run_id, run_a);
    assert!(w.agent.poll().await.is_none(), "run B was dispatched");
}

#[tokio::test]
async fn the_view_shows_the_full_spec_with_env_values_and_secret_names_and_its_digest() {
    let rule = json!({"require": "all", "from_groups": ["dba"]});
    let (_w, p) = world(rule).await;
    let mut req = run_request("db", &["sh", "-c", "echo $X"]);
    req.env.insert("X".into(), "visible value".into());
    let id = submit(&p.carol, &req).await.id;
    let view = show(&p.auditor, &id).await;
    assert_eq!(view.spec.org, "acme");
    assert_eq!(view.spec.target, "db");
    assert_eq!(view.spec.argv, ["sh", "-c", "echo $X"]);
    assert_eq!(view.spec.env["X"], "visible value");
    assert_eq!(view.spec.image, sealrun_testkit::IMAGE);
    assert_eq!(view.spec.timeout_secs, 600);
    assert_eq!(view.submitter, "carol");
    assert_eq!(
        view.digest,
        view.spec.digest(),
        "the digest is of the spec shown"
    );
    assert_eq!((view.required, view.approvers.as_str()), (1, "group dba"));
    // The list shows waiting requests to every role.
    let list: ApprovalList = p.auditor.get("/v1/approvals").await.ok().parse();
    assert_eq!(list.approvals.len(), 1);
    assert_eq!(list.approvals[0].run_id, id);
}

#[tokio::test]
async fn someone_outside_the_rules_groups_and_roles_is_refused_naming_the_rule() {
    let (w, p) = world(two_from_dba()).await;
    let id = submit(&p.alice, &run_request("db", &["true"])).await.id;
    let a = approve_shown(&p.carol, &id).await;
    assert_eq!(
        a.error(StatusCode::FORBIDDEN),
        format!(
            "run {id} needs approval from group dba (the approval rule of target db); you are not one of them"
        )
    );
    // Nor is the org's admin, unless the rule names its role.
    let a = approve_shown(&w.admin, &id).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    // An auditor may read the request but not decide on it.
    let a = approve_shown(&p.auditor, &id).await;
    assert_eq!(
        a.error(StatusCode::FORBIDDEN),
        "a token with role auditor cannot approve runs"
    );
    // Positive control: a member of dba may.
    assert_eq!(approve_shown(&p.bob, &id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn with_no_groups_or_roles_any_other_admin_or_operator_may_approve() {
    let (_w, p) = world(json!({"require": "ad_hoc"})).await;
    let id = submit(&p.alice, &run_request("db", &["true"])).await.id;
    assert_eq!(approve_shown(&p.carol, &id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_rejected_run_never_runs_and_a_rejection_needs_a_reason() {
    let (w, p) = world(two_from_dba()).await;
    let id = submit(&p.carol, &run_request("db", &["rm", "-rf", "/data"]))
        .await
        .id;
    let blank = p
        .alice
        .post(
            &format!("/v1/approvals/{id}/reject"),
            json!({"reason": "  "}),
        )
        .await;
    assert_eq!(
        blank.error(StatusCode::BAD_REQUEST),
        "a rejection reason cannot be empty"
    );
    let a = p
        .alice
        .post(
            &format!("/v1/approvals/{id}/reject"),
            json!({"reason": "use the cleanup runbook"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let run = w.admin.run(&id).await;
    assert_eq!(run.status, RunStatus::Rejected);
    assert_eq!(
        run.error.as_deref(),
        Some("rejected by alice: use the cleanup runbook")
    );
    let late = approve_shown(&p.bob, &id).await;
    assert_eq!(
        late.error(StatusCode::CONFLICT),
        format!("run {id} is not waiting for approval: it is rejected")
    );
    assert!(
        w.agent.poll().await.is_none(),
        "a rejected run was dispatched"
    );
    let rejected = trail(&w, "run.rejected", &id).await;
    assert_eq!(rejected[0]["reason"], "use the cleanup runbook");
    assert_eq!(rejected[0]["user"], "alice");
}

#[tokio::test]
async fn an_unapproved_request_expires_and_never_runs() {
    let rule = json!({"require": "ad_hoc", "from_groups": ["dba"], "expires_in_secs": 1});
    let (w, p) = world(rule).await;
    let id = submit(&p.carol, &run_request("db", &["true"])).await.id;
    let run = w.admin.wait_status(&id, RunStatus::Expired).await;
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .starts_with("expired: approval was not given"),
        "{:?}",
        run.error
    );
    assert_eq!(run.started_at_ms, None);
    assert_eq!(
        approve_shown(&p.alice, &id).await.status,
        StatusCode::CONFLICT
    );
    assert!(
        w.agent.poll().await.is_none(),
        "an expired run was dispatched"
    );
    let expired = trail(&w, "run.approval_expired", &id).await;
    assert_eq!(expired.len(), 1);
}

#[tokio::test]
async fn a_run_waiting_for_approval_can_be_withdrawn() {
    let (w, p) = world(two_from_dba()).await;
    let id = submit(&p.carol, &run_request("db", &["true"])).await.id;
    let a = p
        .carol
        .post(&format!("/v1/runs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(w.admin.run(&id).await.status, RunStatus::Canceled);
    assert_eq!(
        approve_shown(&p.alice, &id).await.status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn break_glass_is_for_the_roles_the_rule_names_with_a_reason_and_is_audited_for_review() {
    let mut rule = two_from_dba();
    rule["break_glass_roles"] = json!(["admin"]);
    let (w, p) = world(rule).await;
    let mut req = run_request("db", &["true"]);
    req.break_glass = Some("prod down, dba unreachable".into());

    // An operator may not.
    let a = p.carol.post("/v1/runs", to_value(&req)).await;
    assert_eq!(
        a.error(StatusCode::FORBIDDEN),
        "role operator may not skip approval on target db (approval.break_glass_roles: only admin may)"
    );
    // A blank reason is refused.
    let mut blank = req.clone();
    blank.break_glass = Some(" ".into());
    let a = w.admin.post("/v1/runs", to_value(&blank)).await;
    assert_eq!(
        a.error(StatusCode::BAD_REQUEST),
        "a break-glass reason cannot be empty"
    );

    // An admin may: queued at once, dispatched, audited, listed for review.
    let created = submit(&w.admin, &req).await;
    assert_eq!(created.status, RunStatus::Queued);
    assert_eq!(w.agent.next_run().await.run_id, created.id);
    let audited = trail(&w, "run.break_glass", &created.id).await;
    assert_eq!(audited[0]["reason"], "prod down, dba unreachable");
    assert_eq!(audited[0]["review_required"], true);
    let list: ApprovalList = p
        .auditor
        .get("/v1/approvals?break_glass=true")
        .await
        .ok()
        .parse();
    assert_eq!(list.approvals.len(), 1);
    assert_eq!(list.approvals[0].run_id, created.id);
    assert!(
        list.approvals[0]
            .break_glass
            .as_ref()
            .unwrap()
            .review_required
    );
}

#[tokio::test]
async fn every_decision_is_in_the_audit_chain_with_the_digest() {
    let (w, p) = world(two_from_dba()).await;
    let id = submit(&p.carol, &run_request("db", &["true"])).await.id;
    let digest = show(&p.alice, &id).await.digest;
    let a = p
        .alice
        .post(
            &format!("/v1/approvals/{id}/approve"),
            json!({"digest": digest, "comment": "looks fine"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(approve(&p.bob, &id, &digest).await.status, StatusCode::OK);
    let requested = trail(&w, "run.approval_requested", &id).await;
    assert_eq!(requested[0]["digest"], digest.as_str());
    assert_eq!(requested[0]["rule"]["approvals"], 2);
    let approved = trail(&w, "run.approved", &id).await;
    assert_eq!(approved.len(), 2);
    assert_eq!(approved[0]["user"], "alice");
    assert_eq!(approved[0]["digest"], digest.as_str());
    assert_eq!(approved[0]["comment"], "looks fine");
    assert_eq!(
        (
            approved[0]["approvals"].clone(),
            approved[1]["approvals"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(approved[1]["queued"], true);
    let verify = w.admin.get("/v1/audit/verify?full=true").await;
    assert_eq!(verify.status, StatusCode::OK, "{}", verify.text);
    assert_eq!(verify.json()["ok"], true, "{}", verify.text);
}

#[tokio::test]
async fn a_rule_that_cannot_be_enforced_is_refused_when_the_target_is_declared() {
    let w = World::in_process().await;
    let zero = declare(&w, json!({"require": "all", "approvals": 0})).await;
    assert_eq!(
        zero.error(StatusCode::BAD_REQUEST),
        "policy.approval.approvals must be 1 to 10 (got 0)"
    );
    let auditors = declare(&w, json!({"require": "all", "from_roles": ["auditor"]})).await;
    assert_eq!(
        auditors.error(StatusCode::BAD_REQUEST),
        "policy.approval.from_roles: role auditor cannot approve runs"
    );
    // Groups may be created after the target that names them.
    let later = declare(&w, json!({"require": "all", "from_groups": ["not-yet"]})).await;
    assert!(later.status.is_success(), "{}", later.text);
}

#[tokio::test]
async fn runs_that_need_no_approval_are_queued_as_before() {
    let rule = json!({"require": "ad_hoc_with_secrets", "from_groups": ["dba"]});
    let (w, p) = world(rule).await;
    let created = submit(&p.carol, &run_request("db", &["true"])).await;
    assert_eq!(created.status, RunStatus::Queued);
    assert!(created.approval.is_none());
    assert_eq!(w.agent.next_run().await.run_id, created.id);
    // No request to show for it.
    let a = p.carol.get(&format!("/v1/approvals/{}", created.id)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
}

#[tokio::test]
async fn the_queue_ttl_counts_from_the_approval_not_the_submission() {
    let w = World::in_process_with(sealrun_api::Settings {
        queue_ttl: std::time::Duration::from_secs(2),
        ..sealrun_testkit::quick_settings()
    })
    .await;
    // A target no agent serves, so an approved run stays queued.
    let spec: TargetSpec = serde_json::from_value(json!({
        "name": "idle", "image": sealrun_testkit::IMAGE,
        "policy": {"approval": {"require": "ad_hoc"}},
    }))
    .unwrap();
    w.admin.put_target(&spec).await;
    let approver = w.admin.token("alice", Role::Operator).await;
    let id = submit(&w.admin, &run_request("idle", &["true"])).await.id;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        w.admin.run(&id).await.status,
        RunStatus::PendingApproval,
        "a request waits for its own expiry, not the queue TTL"
    );
    assert_eq!(approve_shown(&approver, &id).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(w.admin.run(&id).await.status, RunStatus::Queued);
    // Positive control: it expires a queue TTL after it was approved.
    let run = w.admin.wait_status(&id, RunStatus::Expired).await;
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .starts_with("expired: no agent took it"),
        "{:?}",
        run.error
    );
}

#[tokio::test]
async fn break_glass_on_a_run_that_needs_no_approval_is_refused() {
    let rule = json!({"require": "ad_hoc_with_secrets", "break_glass_roles": ["admin"]});
    let (w, _p) = world(rule).await;
    let mut req = run_request("db", &["true"]);
    req.break_glass = Some("just because".into());
    let a = w.admin.post("/v1/runs", to_value(&req)).await;
    assert_eq!(
        a.error(StatusCode::BAD_REQUEST),
        "runs like this one on target db need no approval; leave out --break-glass"
    );
    // Positive control: without it, it is queued.
    req.break_glass = None;
    assert_eq!(submit(&w.admin, &req).await.status, RunStatus::Queued);
}
