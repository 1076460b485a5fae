//! `sealrun run` submits at most once: it sends one idempotency key with its
//! submission and, when the answer says the submission may or may not have
//! been applied (a commit whose fsync failed, injected in the store: a real
//! disk cannot be made to fail on cue), sends it again with the same key and
//! follows the one run that exists.
#![allow(clippy::unwrap_used)]

use sealrun_api::Settings;
use sealrun_testkit::{AgentProcess, ControlPlane, InProcessServer, code, require_docker, text};
use sealrun_wire::run::RunList;
use std::time::Duration;

/// A control plane whose only writes, once its agent is connected and
/// polling, are the ones the test causes: no lease sweeps after the first,
/// heartbeats a minute apart, polls held 25 s.
fn quiet() -> Settings {
    Settings {
        lease_sweep_interval: Duration::from_secs(3600),
        heartbeat_interval: Duration::from_secs(60),
        lease_ttl: Duration::from_secs(120),
        shutdown_grace: Duration::from_secs(2),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submission_that_may_not_have_been_applied_is_sent_again_by_the_cli_without_a_second_run()
{
    if !require_docker() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = quiet();
    let faults = settings.faults.clone();
    let server = InProcessServer::start_in(dir.path(), settings).await;
    let admin = server.admin();
    admin.declare_target("e2e").await;
    let enrollment = admin.enrollment_token("default").await;
    let mut agent = AgentProcess::start(
        &server,
        &dir.path().join("agent"),
        "e2e-agent",
        &["e2e"],
        Some(&enrollment),
        &[],
    )
    .await;
    agent.wait_connected(&admin, &["e2e"]).await;
    // Past the agent's first heartbeat and poll: it now waits in a poll.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The submission's sync fails after its commit, and so does the sync of
    // the claim the agent's poll makes right after it.
    faults.fail_next_syncs(2);
    let out = server
        .cli(&server.admin_token)
        .output(&["run", "--target", "e2e", "--", "echo", "once"]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert_eq!(text(&out.stdout), "once\n");
    assert!(
        stderr.contains("submission not confirmed")
            && stderr.contains("may or may not have been applied")
            && stderr.contains("with the same idempotency key"),
        "{stderr}"
    );

    // One run, started once, its output stored once.
    let runs: RunList = admin.get("/v1/runs").await.ok().parse();
    assert_eq!(runs.runs.len(), 1, "{:?}", runs.runs);
    let id = &runs.runs[0].id;
    assert_eq!(admin.stdout(id).await, "once\n");
    assert_eq!(admin.audited("run.submitted", id).await, 1);
    assert_eq!(admin.audited("run.started", id).await, 1);
    drop(agent);
    drop(server);
}
