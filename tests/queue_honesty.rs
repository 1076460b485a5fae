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
