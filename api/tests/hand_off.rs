//! A run submitted while an agent of its target waits on the same replica
//! is handed to that poll by the submission itself: the claim the poll
//! would have made, in the submission's batch (`HandOffs` in
//! `sealrun_control::dispatch`). What the poll gets is what its own claim
//! would have got; a hand-off whose answer is lost still reaches the poll.
//! `/metrics` counts the polls waiting and the runs handed off.
#![allow(clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use sealrun_api::{MetricsAccess, Settings};
use sealrun_testkit::{InProcessWorld, World, quick_settings, to_value, wait_for};
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::{RunCreated, RunStatus};

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
    let body = w
        .server
        .http
        .get(format!("{}/metrics", w.server.url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .parse()
        .unwrap()
}

/// Waits until `n` polls wait on the server.
async fn polls_waiting(w: &InProcessWorld, n: u64) {
    wait_for(&format!("{n} polls waiting"), || async {
        (metric(w, "sealrun_polls_waiting").await == n).then_some(())
    })
    .await;
}

async fn audited(w: &InProcessWorld, action: &str, subject: &str) -> usize {
    let audit: AuditPage = w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    audit
        .entries
        .iter()
        .filter(|e| e.action == action && e.subject == subject)
        .count()
}

#[tokio::test]
async fn a_run_submitted_while_its_agent_waits_is_handed_to_that_poll() {
    let (w, _dir) = world(quick_settings()).await;
    let (polled, run) = tokio::join!(w.agent.poll(), async {
        polls_waiting(&w, 1).await;
        w.submit(&["migrate"]).await
    });
    assert_eq!(polled.map(|a| a.run_id), Some(run.clone()));
    assert_eq!(metric(&w, "sealrun_dispatch_handed_off_total").await, 1);
    assert_eq!(metric(&w, "sealrun_polls_waiting").await, 0);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Running);
    assert_eq!(audited(&w, "run.started", &run).await, 1);
}

#[tokio::test]
async fn a_run_submitted_while_no_poll_waits_is_claimed_by_the_next_poll_not_handed_off() {
    let (w, _dir) = world(quick_settings()).await;
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
    let (w, _dir) = world(quick_settings()).await;
    let spec: TargetSpec = serde_json::from_value(serde_json::json!({
        "name": w.target, "image": sealrun_testkit::IMAGE,
        "policy": {"approval": {"require": "ad_hoc"}},
    }))
    .unwrap();
    w.admin.put_target(&spec).await;
    let (polled, run) = tokio::join!(w.agent.poll(), async {
        polls_waiting(&w, 1).await;
        let run = w.submit(&["migrate"]).await;
        // The poll is still waiting, not handed anything.
        polls_waiting(&w, 1).await;
        run
    });
    // The poll ended at its timeout, with nothing.
    assert_eq!(polled.map(|a| a.run_id), None);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::PendingApproval);
    assert_eq!(metric(&w, "sealrun_dispatch_handed_off_total").await, 0);
}

#[tokio::test]
async fn a_hand_off_whose_commit_may_not_have_held_still_reaches_its_poll_once() {
    let settings = quick_settings();
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
    let (polled, maybe) = tokio::join!(w.agent.poll(), async {
        polls_waiting(&w, 1).await;
        // The submission and the claim made for the poll commit together;
        // their answer is lost ("may or may not have been applied").
        faults.fail_next_syncs(1);
        submit().await
    });
    maybe.error(StatusCode::SERVICE_UNAVAILABLE);
    // The poll looked for itself, under its poll id, and found the run
    // claimed for it.
    let handed = polled.expect("the run reached the poll");
    // The client sends its submission again with the same key: the same run.
    let again = submit().await;
    // 200, not 201: nothing new was queued.
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let again: RunCreated = again.parse();
    assert_eq!(handed.run_id, again.id);
    assert_eq!(w.admin.run(&again.id).await.status, RunStatus::Running);
    assert_eq!(audited(&w, "run.started", &again.id).await, 1);
}
