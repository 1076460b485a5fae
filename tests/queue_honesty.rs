//! `sealrun run` tells the truth about the queue, through the real binary:
//! a target no connected agent serves is said so at once, `--no-wait`
//! refuses it (exit 125), and a run no agent takes in time expires (exit 69)
//! instead of running whenever an agent shows up.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{ControlPlane, InProcessServer, code, quick_settings, text};
use std::time::Duration;

async fn server(queue_ttl: Duration) -> InProcessServer {
    let server = InProcessServer::start_with(sealrun_api::Settings {
        queue_ttl,
        ..quick_settings()
    })
    .await;
    server.admin().declare_target("idle").await;
    server
}

#[tokio::test]
async fn no_wait_refuses_a_target_no_agent_serves_with_exit_125() {
    let server = server(Duration::from_secs(3600)).await;
    let cli = server.cli(server.admin_token());
    let out = cli.output(&["run", "--no-wait", "--target", "idle", "--", "true"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 125, "{err}");
    assert!(
        err.contains("no connected agent serves target idle"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // Nothing was queued.
    let runs = cli.json(&["runs", "list"]);
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");
}

#[tokio::test]
async fn a_refused_submission_exits_125_not_like_the_commands_own_failure() {
    let server = server(Duration::from_secs(3600)).await;
    let cli = server.cli(server.admin_token());
    let out = cli.output(&["run", "--target", "nope", "--", "true"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no target named"));
}

#[tokio::test]
async fn a_run_no_agent_takes_in_time_is_announced_then_expires_with_exit_69() {
    let server = server(Duration::from_secs(2)).await;
    let cli = server.cli(server.admin_token());
    let out = cli.output(&["run", "--target", "idle", "--", "true"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 69, "{err}");
    assert!(
        err.contains("no connected agent serves target idle right now"),
        "{err}"
    );
    assert!(err.contains("expired in the queue"), "{err}");
    let runs = cli.json(&["runs", "list"]);
    assert_eq!(runs["runs"][0]["status"], "expired", "{runs}");
}

#[tokio::test]
async fn an_agent_ends_a_run_at_its_own_maximum_timeout_whatever_the_target_allows() {
    if !sealrun_testkit::require_docker() {
        return;
    }
    // The target allows an hour; the agent's operator allows 2 s.
    let w = sealrun_testkit::World::spawned_with(sealrun_testkit::WorldOptions {
        agent_args: vec!["--max-run-timeout-secs".into(), "2".into()],
        target_timeout_secs: 3600,
        ..Default::default()
    })
    .await;
    let cli = w.server.cli(w.server.admin_token());
    let started = std::time::Instant::now();
    let out = cli.output(&["run", "--target", &w.target, "--", "sleep", "60"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 124, "{err}");
    assert!(err.contains("timed out"), "{err}");
    // Positive control on the cause: far sooner than the command's 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let runs = cli.json(&["runs", "list"]);
    assert_eq!(runs["runs"][0]["status"], "timed_out", "{runs}");
}
