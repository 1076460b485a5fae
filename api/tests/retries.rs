//! Retries that never act twice: a submission sent again with its
//! `Idempotency-Key` answers the run the first one queued; a write whose
//! sync fails after its commit is answered 503 "may or may not have been
//! applied", never a success or a plain failure; an agent that did not get
//! the answer to its poll gets the same run by asking with the same poll id.
#![allow(clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use sealrun_api::Settings;
use sealrun_testkit::{Answer, Client, InProcessWorld, World, quick_settings, to_value};
use sealrun_wire::admin::Role;
use sealrun_wire::agent::{Assignment, ConnectRequest};
use sealrun_wire::run::{RunCreated, RunList, RunRequest, RunStatus};
use std::time::Duration;

/// Quick settings with no background writes during a test (the lease
/// sweeper runs once, at start), so that a fault armed for the next sync
/// hits the write the test makes.
fn quiet() -> Settings {
    Settings {
        lease_sweep_interval: Duration::from_secs(3600),
        ..quick_settings()
    }
}

async fn submit_with_key(client: &Client, req: &RunRequest, key: &str) -> Answer {
    client
        .call_with(
            Method::POST,
            "/v1/runs",
            Some(to_value(req)),
            &[("Idempotency-Key", key)],
        )
        .await
}

async fn run_ids(w: &InProcessWorld) -> Vec<String> {
    let list: RunList = w.admin.get("/v1/runs").await.ok().parse();
    list.runs.into_iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn a_submission_sent_again_with_the_same_key_answers_the_same_run_and_queues_nothing() {
    let w = World::in_process_with(quiet()).await;
    let req = w.request(&["migrate"]);
    let first = submit_with_key(&w.admin, &req, "key-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let first: RunCreated = first.parse();
    let again = submit_with_key(&w.admin, &req, "key-1").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let again: RunCreated = again.parse();
    assert_eq!(again.id, first.id);
    assert_eq!(again.status, RunStatus::Queued);
    assert_eq!(again.expires_at_ms, first.expires_at_ms);
    assert_eq!(run_ids(&w).await, vec![first.id.clone()]);
    assert_eq!(w.admin.audited("run.submitted", &first.id).await, 1);
    // Positive control: another key is another run.
    let other = submit_with_key(&w.admin, &req, "key-2").await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text);
    assert_ne!(other.parse::<RunCreated>().id, first.id);
    assert_eq!(run_ids(&w).await.len(), 2);
}

#[tokio::test]
async fn a_key_sent_with_another_request_is_refused_and_queues_nothing() {
    let w = World::in_process_with(quiet()).await;
    let first: RunCreated = submit_with_key(&w.admin, &w.request(&["migrate"]), "key-1")
        .await
        .parse();
    let refused = submit_with_key(&w.admin, &w.request(&["rollback"]), "key-1").await;
    let message = refused.error(StatusCode::CONFLICT);
    assert!(
        message.contains("already used for another request"),
        "{message}"
    );
    assert!(message.contains(&first.id), "{message}");
    assert_eq!(run_ids(&w).await, vec![first.id]);
}

#[tokio::test]
async fn keys_belong_to_their_submitter() {
    let w = World::in_process_with(quiet()).await;
    let operator = w.admin.token("ops", Role::Operator).await;
    let req = w.request(&["migrate"]);
    let mine: RunCreated = submit_with_key(&w.admin, &req, "shared").await.parse();
    let theirs = submit_with_key(&operator, &req, "shared").await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text);
    assert_ne!(theirs.parse::<RunCreated>().id, mine.id);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_refused() {
    let w = World::in_process_with(quiet()).await;
    let req = w.request(&["migrate"]);
    for key in ["has space", &"k".repeat(256)] {
        let refused = submit_with_key(&w.admin, &req, key).await;
        let message = refused.error(StatusCode::BAD_REQUEST);
        assert!(message.contains("idempotency key"), "{message}");
    }
    assert!(run_ids(&w).await.is_empty());
    // Positive control: the longest key allowed.
    let ok = submit_with_key(&w.admin, &req, &"k".repeat(255)).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
}

#[tokio::test]
async fn a_submission_whose_sync_fails_after_its_commit_is_answered_503_and_its_retry_answers_the_same_run()
 {
    let settings = quiet();
    let faults = settings.faults.clone();
    let w = World::in_process_with(settings).await;
    let req = w.request(&["migrate"]);
    faults.fail_next_syncs(1);
    let ambiguous = submit_with_key(&w.admin, &req, "key-1").await;
    let message = ambiguous.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        message.contains("may or may not have been applied"),
        "{message}"
    );
    // It was committed: the retry finds it instead of queueing another.
    let retried = submit_with_key(&w.admin, &req, "key-1").await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    let retried: RunCreated = retried.parse();
    assert_eq!(run_ids(&w).await, vec![retried.id.clone()]);
    // And it runs, once.
    let assignment = w.agent.next_run().await;
    assert_eq!(assignment.run_id, retried.id);
    assert!(w.agent.poll().await.is_none());
}

#[tokio::test]
async fn an_agent_that_did_not_get_its_poll_answer_gets_the_same_run_by_asking_with_the_same_poll_id()
 {
    let settings = quiet();
    let faults = settings.faults.clone();
    let w = World::in_process_with(settings).await;
    let run = w.submit(&["migrate"]).await;
    // The claim commits, its sync fails: the agent is told 503, not the run.
    faults.fail_next_syncs(1);
    let lost = w.agent.poll_with_id("poll-1").await;
    lost.error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Running);
    // Another poll does not get it (it is held)...
    assert_eq!(
        w.agent.poll_with_id("poll-2").await.status,
        StatusCode::NO_CONTENT
    );
    // ...the same poll asked again does, instead of it sitting held by nobody.
    let again = w.agent.poll_with_id("poll-1").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.parse::<Assignment>().run_id, run);
    assert_eq!(w.admin.audited("run.started", &run).await, 1);
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_run_handed_out_in_one_poll_is_not_handed_out_in_another() {
    let w = World::in_process_with(quiet()).await;
    let run = w.submit(&["migrate"]).await;
    let first = w.agent.poll_with_id("poll-1").await;
    assert_eq!(first.parse::<Assignment>().run_id, run);
    assert_eq!(
        w.agent.poll_with_id("poll-2").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(w.agent.poll().await.map(|a| a.run_id), None);
}

#[tokio::test]
async fn a_run_handed_out_again_whose_secret_is_gone_frees_its_slot_for_the_next_run() {
    let w = World::in_process_with(quiet()).await;
    // The agent runs one run at a time.
    let proofs = w.agent.prove(&w.agent.challenges().await);
    let connect = ConnectRequest {
        version: "test".into(),
        max_concurrency: 1,
        targets: w.agent.served(),
        proofs,
    };
    w.agent
        .client
        .post("/v1/agent/connect", to_value(&connect))
        .await
        .ok();
    w.admin
        .set_secret(&w.target, "TOKEN", b"a-secret-value")
        .await;
    let needing = w.admin.submit(&w.target, &["migrate"], &["TOKEN"]).await;
    let handed = w.agent.poll_with_id("poll-1").await;
    assert_eq!(handed.parse::<Assignment>().run_id, needing);
    // Its answer never reached the agent. Another run queues; the agent's
    // one slot is taken (positive control for the limit).
    let next = w.submit(&["status"]).await;
    assert_eq!(
        w.agent.poll_with_id("poll-2").await.status,
        StatusCode::NO_CONTENT
    );
    // The secret is deleted; the agent asks again with the same poll id.
    let deleted = w
        .admin
        .delete(&format!("/v1/targets/{}/secrets/TOKEN", w.target))
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.text);
    let again = w.agent.poll_with_id("poll-1").await;
    // The run it was handed ends (it cannot run without its secret), and
    // the slot it held takes the next run in the same poll.
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.parse::<Assignment>().run_id, next);
    assert_eq!(w.admin.run(&needing).await.status, RunStatus::Error);
}

#[tokio::test]
async fn a_malformed_poll_id_is_refused() {
    let w = World::in_process_with(quiet()).await;
    let refused = w.agent.poll_with_id("not/an id").await;
    let message = refused.error(StatusCode::BAD_REQUEST);
    assert!(message.contains("poll id"), "{message}");
}
