//! Outages lose nothing: leases are judged only while the control plane has
//! been able to hear from agents, so a control plane that is down (killed,
//! stopped) for longer than the lease gives agents a whole lease to
//! heartbeat again when it is back, and their runs go on; and a lease too
//! short for the heartbeats is refused at start.
//!
//! The two outage tests take about two minutes and one minute: the first is
//! the outage of the issue (90 s, against the default 60 s lease).
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    Client, ControlPlane, ServerProcess, World, WorldOptions, code, https_client, output_within,
    require_docker, sealrun_bin, signal, text,
};
use sealrun_wire::run::RunStatus;
use std::process::Command;
use std::time::{Duration, Instant};

/// A command printing `lines` numbered lines, one every half second.
fn printer(lines: u32) -> String {
    format!("i=0; while [ $i -lt {lines} ]; do echo line $i; i=$((i+1)); sleep 0.5; done")
}

/// The admin with connections of its own: those pooled before an outage may
/// be cut by the server as it comes back (idle too long by its clock).
fn fresh_admin(server: &impl ControlPlane) -> Client {
    Client::new(
        server.url(),
        https_client(server.ca_cert()),
        server.admin_token(),
    )
}

/// What [`printer`] prints.
fn printed(lines: u32) -> String {
    (0..lines).map(|i| format!("line {i}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_90_second_control_plane_outage_during_a_run_loses_nothing_and_kills_nothing() {
    if !require_docker() {
        return;
    }
    // Default lease (60 s) and heartbeats (10 s): the outage outlasts the
    // lease by half.
    let mut w = World::spawned().await;
    let lines = 220; // 110 s of output
    let id = w.submit(&["sh", "-c", &printer(lines)]).await;
    w.admin.wait_output(&id, "line 3\n").await;

    let down = Instant::now();
    w.server.kill();
    tokio::time::sleep(Duration::from_secs(90)).await;
    w.server.restart().await;
    assert!(down.elapsed() > Duration::from_secs(90));
    let admin = fresh_admin(&w.server);
    assert_eq!(admin.run(&id).await.status, RunStatus::Running);

    let end = admin.wait_terminal(&id).await;
    assert_eq!(end.status, RunStatus::Succeeded, "{:?}", end.error);
    assert_eq!(end.exit_code, Some(0));
    // Every byte the command printed, stored once, in order.
    assert_eq!(admin.stdout(&id).await, printed(lines));
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_stopped_for_longer_than_the_lease_loses_nothing_when_it_resumes() {
    if !require_docker() {
        return;
    }
    // A 20 s lease (two heartbeats), a 30 s stop: the process resumes with
    // every lease expired by the clock, and judges none of them until its
    // agents could heartbeat again.
    let w = World::spawned_with(WorldOptions {
        server_args: vec!["--lease-ttl-secs".into(), "20".into()],
        ..WorldOptions::default()
    })
    .await;
    let lines = 100; // 50 s of output
    let id = w.submit(&["sh", "-c", &printer(lines)]).await;
    w.admin.wait_output(&id, "line 3\n").await;

    signal(w.server.pid(), "STOP");
    tokio::time::sleep(Duration::from_secs(30)).await;
    signal(w.server.pid(), "CONT");

    let admin = fresh_admin(&w.server);
    let end = admin.wait_terminal(&id).await;
    assert_eq!(end.status, RunStatus::Succeeded, "{:?}", end.error);
    assert_eq!(admin.stdout(&id).await, printed(lines));
    w.assert_no_containers();
}

#[test]
fn a_server_given_a_lease_shorter_than_two_heartbeats_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for lease in ["5", "0", "19"] {
        let out = output_within(
            "sealrun server with a short lease",
            Command::new(sealrun_bin()).args([
                "server",
                "--data-dir",
                &dir.path().join("data").display().to_string(),
                "--listen",
                "127.0.0.1:0",
                "--lease-ttl-secs",
                lease,
            ]),
            Duration::from_secs(30),
        );
        assert_ne!(code(&out), 0, "started with a {lease} s lease");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "a lease of {lease} s is shorter than two heartbeat intervals (10 s each)"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("at least 20 s"), "{stderr}");
        assert!(text(&out.stdout).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_given_a_lease_of_two_heartbeats_starts() {
    // The positive control of the refusal above.
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &["--lease-ttl-secs", "20"]).await;
    assert!(server.anonymous().health().await);
}
