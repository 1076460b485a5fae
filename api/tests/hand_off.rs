//! A run submitted while an agent of its target waits on the same replica
//! is handed to that poll by the submission itself: the claim the poll
//! would have made, in the submission's batch (`HandOffs` in
//! `sealrun_control::dispatch`). What the poll gets is what its own claim
//! would have got; a hand-off whose answer is lost still reaches the poll.
//! `/metrics` counts the polls waiting and the runs handed off.
#![allow(clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use sealrun_api::{MetricsAccess, Settings};
use sealrun_testkit::{
    ControlPlane as _, InProcessWorld, World, quick_settings, to_value, wait_for,
};
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::agent::Assignment;
use sealrun_wire::run::{RunCreated, RunStatus};
use std::time::{Duration, Instant};

const METRICS_TOKEN: &str = "metrics-token-for-the-hand-off-tests";

/// A world whose `/metrics` answers [`METRICS_TOKEN`], with `settings`.
async fn world(settings: Settings) -> (InProcessWorld, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("metrics.token");
    std::fs::write(&token, format!("{METRICS_TOKEN}\n")).unwrap();
    let w = World::in_process_configured(
        |config| {
            config.metrics = MetricsAccess {
                token_file: Some(token),
                ..MetricsAccess::default()
            }
        },
        settings,
    )
    .await;
    (w, dir)
}

/// The value of the unlabelled metric `name`.
async fn metric(w: &InProcessWorld, name: &str) -> u64 {
    w.server.client(METRICS_TOKEN).metrics().await.value(name)
}

/// Waits until `n` polls wait on the server.
async fn polls_waiting(w: &InProcessWorld, n: u64) {
    wait_for(&format!("{n} polls waiting"), || async {
        (metric(w, "sealrun_polls_waiting").await == n).then_some(())
    })
    .await;
}

/// Quick settings whose polls wait `secs`: long enough for a test to see
/// one waiting and submit on a loaded machine (most tests end on the
/// hand-off, not the timeout); and no background writes during a test (the
/// lease sweeper runs once, at start), so that a fault armed for the next
/// write hits the one the test makes.
fn polls_held(secs: u64) -> Settings {
    Settings {
        poll_timeout: Duration::from_secs(secs),
        lease_sweep_interval: Duration::from_secs(3600),
        ..quick_settings()
    }
}

#[tokio::test]
async fn a_run_submitted_while_its_agent_waits_is_handed_to_that_poll() {
    let (w, _dir) = world(polls_held(30)).await;
    let (polled, run) = tokio::join!(w.agent.poll(), async {
        polls_waiting(&w, 1).await;
        w.submit(&["migrate"]).await
    });
    assert_eq!(polled.map(|a| a.run_id), Some(run.clone()));
    assert_eq!(metric(&w, "sealrun_dispatch_handed_off_total").await, 1);
    assert_eq!(metric(&w, "sealrun_polls_waiting").await, 0);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Running);
    assert_eq!(w.admin.audited("run.started", &run).await, 1);
}

#[tokio::test]
async fn a_run_submitted_while_no_poll_waits_is_claimed_by_the_next_poll_not_handed_off() {
    let (w, _dir) = world(polls_held(30)).await;
    let run = w.submit(&["migrate"]).await;
    assert_eq!(w.agent.poll().await.map(|a| a.run_id), Some(run.clone()));
    assert_eq!(metric(&w, "sealrun_dispatch_handed_off_total").await, 0);
    // Positive control: the counter counts (the same world, a poll waiting).
    let (polled, next) = tokio::join!(w.agent.poll(), async {
        polls_waiting(&w, 1).await;
        w.submit(&["status"]).await
    });
    assert_eq!(polled.map(|a| a.run_id), Some(next));
    assert_eq!(metric(&w, "sealrun_dispatch_handed_off_total").await, 1);
}

#[tokio::test]
async fn a_run_waiting_for_approval_is_not_handed_to_a_waiting_poll() {
    let (w, _dir) = world(polls_held(4)).await;
    let spec: TargetSpec = serde_json::from_value(serde_json::json!({
        "name": w.target, "image": sealrun_testkit::IMAGE,
        "policy": {"approval": {"require": "ad_hoc"}},
    }))
    .unwrap();
    w.admin.put_target(&spec).await;
    let started = Instant::now();
    let (polled, run) = tokio::join!(w.agent.poll(), async {
        polls_waiting(&w, 1).await;
        w.submit(&["migrate"]).await
    });
    // The poll ended at its timeout, with nothing.
    assert_eq!(polled.map(|a| a.run_id), None);
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(w.admin.run(&run).await.status, RunStatus::PendingApproval);
    assert_eq!(metric(&w, "sealrun_dispatch_handed_off_total").await, 0);
}

#[tokio::test]
async fn a_hand_off_whose_commit_may_not_have_held_is_answered_as_a_failed_claim_and_the_same_poll_id_gets_the_run()
 {
    let settings = polls_held(30);
    let faults = settings.faults.clone();
    let (w, _dir) = world(settings).await;
    let request = to_value(&w.request(&["migrate"]));
    let submit = || {
        w.admin.call_with(
            Method::POST,
            "/v1/runs",
            Some(request.clone()),
            &[("Idempotency-Key", "hand-off-1")],
        )
    };
    let (polled, maybe) = tokio::join!(w.agent.poll_with_id("poll-1"), async {
        polls_waiting(&w, 1).await;
        // The submission and the claim made for the poll commit together;
        // their answer is lost ("may or may not have been applied").
        faults.fail_next_syncs(1);
        submit().await
    });
    maybe.error(StatusCode::SERVICE_UNAVAILABLE);
    // The poll is answered as its own claim would be, so that the agent
    // asks again with the same id (a poll's own claim is never answered so:
    // the poll would have been woken, or left waiting, and claimed after).
    polled.error(StatusCode::SERVICE_UNAVAILABLE);
    // The client sends its submission again with the same key: the run
    // queued the first time (200, not 201: nothing new was queued)...
    let again = submit().await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let run: RunCreated = again.parse();
    // ...which the claim did take for the poll: asked again with its id,
    // the poll gets it, handed out once.
    assert_eq!(w.admin.run(&run.id).await.status, RunStatus::Running);
    let asked = w.agent.poll_with_id("poll-1").await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    assert_eq!(asked.parse::<Assignment>().run_id, run.id);
    assert_eq!(w.admin.audited("run.started", &run.id).await, 1);
}

#[tokio::test]
async fn a_poll_whose_deadline_passes_while_a_claim_made_for_it_is_under_way_gets_that_run() {
    let settings = polls_held(6);
    let faults = settings.faults.clone();
    let (w, _dir) = world(settings).await;
    let started = Instant::now();
    let (polled, run) = tokio::join!(w.agent.poll_with_id("poll-1"), async {
        polls_waiting(&w, 1).await;
        // The claim made for the poll commits; its answer comes 8 s later,
        // after the poll's deadline (a slow disk).
        faults.delay_next_answers(Duration::from_secs(8));
        w.submit(&["migrate"]).await
    });
    // Answered after its deadline (the fault held the answer), and not
    // with "nothing": the run was claimed in this poll.
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.text);
    assert_eq!(polled.parse::<Assignment>().run_id, run);
    assert_eq!(metric(&w, "sealrun_dispatch_handed_off_total").await, 1);
}
