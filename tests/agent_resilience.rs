//! End to end: what happens to runs when processes die or stop. The agent is
//! SIGKILLed mid-run and restarted; the control plane is killed while a run
//! streams output and restarted on the same data directory and port; the agent
//! is asked to stop (SIGTERM) with runs in progress.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{World, WorldOptions, containers_of, require_docker, wait_no_containers};
use sealrun_wire::run::RunStatus;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_run_comes_back_removes_the_orphan_and_the_run_is_lost() {
    if !require_docker() {
        return;
    }
    let mut world = World::spawned().await;
    let id = world.submit(&["sh", "-c", "echo started; sleep 300"]).await;
    world.admin.wait_output(&id, "started").await;

    world.agent.kill();
    let orphans = containers_of(&world.agent.id);
    assert_eq!(
        orphans.len(),
        1,
        "the killed agent's container is still there"
    );
    assert_eq!(world.admin.run(&id).await.status, RunStatus::Running);

    world.agent.restart();
    let run = world.admin.wait_status(&id, RunStatus::Lost).await;
    assert_eq!(run.exit_code, None);
    wait_no_containers(&world.agent.id).await;

    // The restarted agent is healthy: it takes new work.
    let next = world.submit(&["echo", "after restart"]).await;
    assert_eq!(
        world.admin.wait_terminal(&next).await.status,
        RunStatus::Succeeded
    );
    assert_eq!(world.admin.stdout(&next).await, "after restart\n");
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn output_written_while_the_control_plane_is_down_is_stored_exactly_once_in_order() {
    if !require_docker() {
        return;
    }
    let mut world = World::spawned().await;
    let lines = 400;
    let script =
        format!("i=0; while [ $i -lt {lines} ]; do echo \"line $i\"; i=$((i+1)); sleep 0.02; done");
    let id = world.submit(&["sh", "-c", &script]).await;
    world.admin.wait_output(&id, "line 20\n").await;

    world.server.kill();
    // The command keeps printing while nobody can store its output.
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.agent.assert_alive();
    world.server.restart().await;

    let run = world.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let expected: String = (0..lines).map(|i| format!("line {i}\n")).collect();
    let stored = world.admin.stdout(&id).await;
    assert_eq!(stored.len(), expected.len(), "bytes lost or duplicated");
    assert_eq!(stored, expected);
    let chunks = world.admin.logs(&id).await;
    assert!(
        chunks.iter().enumerate().all(|(i, c)| c.seq == i as u64),
        "a gap in the stored sequence"
    );
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_running_command_finish_then_the_agent_deregisters() {
    if !require_docker() {
        return;
    }
    let mut world = World::spawned().await;
    let id = world
        .submit(&["sh", "-c", "echo started; sleep 2; echo finished"])
        .await;
    world.admin.wait_output(&id, "started").await;

    let status = world.agent.terminate(Duration::from_secs(60));
    assert!(status.success(), "agent exited with {status}");
    let run = world.admin.run(&id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(world.admin.stdout(&id).await, "started\nfinished\n");

    let agents: Value = world.admin.get("/v1/agents").await.ok().json();
    assert_eq!(
        agents["agents"][0]["connected"], false,
        "the agent did not deregister: {agents}"
    );
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_kills_a_command_that_outlives_the_grace_period_and_reports_it() {
    if !require_docker() {
        return;
    }
    let options = WorldOptions {
        agent_args: vec!["--shutdown-grace-secs".into(), "1".into()],
        ..Default::default()
    };
    let mut world = World::spawned_with(options).await;
    let id = world.submit(&["sh", "-c", "echo started; sleep 300"]).await;
    world.admin.wait_output(&id, "started").await;

    let status = world.agent.terminate(Duration::from_secs(60));
    assert!(status.success(), "agent exited with {status}");
    let run = world.admin.run(&id).await;
    assert_eq!(run.status, RunStatus::Error, "{run:?}");
    assert!(
        run.error.as_deref().unwrap().contains("shut down"),
        "{run:?}"
    );
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_agent_kills_its_run_and_exits_saying_why() {
    if !require_docker() {
        return;
    }
    let mut world = World::spawned().await;
    let id = world.submit(&["sh", "-c", "echo started; sleep 300"]).await;
    world.admin.wait_output(&id, "started").await;

    let path = format!("/v1/agents/{}", world.agent.id);
    let revoked = world.admin.delete(&path).await;
    assert!(
        revoked.status.is_success(),
        "revoke answered {}: {}",
        revoked.status,
        revoked.text
    );

    // The next heartbeat is refused: the agent stops its run and exits non-zero.
    let exit = world.agent.wait_exit(Duration::from_secs(60));
    assert!(!exit.success(), "a revoked agent exited successfully");
    assert!(
        world.agent.log().contains("refused the agent's token"),
        "{}",
        world.agent.log()
    );
    wait_no_containers(&world.agent.id).await;
    assert_eq!(world.admin.run(&id).await.status, RunStatus::Lost);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_started_while_the_control_plane_is_down_connects_when_it_returns() {
    if !require_docker() {
        return;
    }
    let mut world = World::spawned().await;
    world.agent.kill();
    world.server.kill();

    world.agent.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.agent.assert_alive();
    world.server.restart().await;

    let id = world.submit(&["echo", "connected late"]).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(world.admin.stdout(&id).await, "connected late\n");
    assert!(
        world.agent.log().contains("connect failed; retrying"),
        "the agent never retried"
    );
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agents_command_ends_at_its_deadline_and_an_agent_under_a_new_identity_sweeps_it()
{
    if !require_docker() {
        return;
    }
    // The timeout leaves the test time to see the command start and kill
    // its agent before the agent would stop it (a loaded CI machine took
    // more than 2 s, and the agent had removed the container).
    let mut world = World::spawned_with(WorldOptions {
        target_timeout_secs: 8,
        ..Default::default()
    })
    .await;
    let id = world.submit(&["sh", "-c", "echo started; sleep 600"]).await;
    world.admin.wait_output(&id, "started").await;
    world.agent.kill();
    let container = containers_of(&world.agent.id)
        .pop()
        .expect("the run's container outlives its killed agent");

    // Nobody is left to stop it: its shim does, at the deadline (timeout 8 s
    // + stop grace 10 s + margin 5 s), not after `sleep 600`.
    let running = || {
        sealrun_testkit::docker_cli(&["inspect", "--format", "{{.State.Running}}", &container])
            .trim()
            .to_owned()
    };
    // Positive control: it was still running when its agent died, so what
    // stops it below is its shim.
    assert_eq!(
        running(),
        "true",
        "the agent stopped it before it was killed"
    );
    sealrun_testkit::wait_until(60, "the orphan to be stopped by its shim", || {
        running() == "false"
    })
    .await;
    assert_eq!(
        containers_of(&world.agent.id),
        vec![container.clone()],
        "stopped but still there: only an agent removes it"
    );

    // A new agent on the same engine, with its own state directory (a new
    // identity, another target), removes it at start: its deadline passed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.admin.declare_target("e2e-other").await;
    let enrollment = world.admin.enrollment_token("default").await;
    let mut other = sealrun_testkit::AgentProcess::start(
        &world.server,
        &world.dir.path().join("other-agent"),
        "other-agent",
        &["e2e-other"],
        Some(&enrollment),
        &[],
    )
    .await;
    other.wait_connected(&world.admin, &["e2e-other"]).await;
    wait_no_containers(&world.agent.id).await;
    // Positive control on whose containers it may take: its own run, within
    // its deadline, is left alone while it runs.
    let mine = world
        .admin
        .submit_request(&sealrun_testkit::run_request(
            "e2e-other",
            &["sh", "-c", "echo mine; sleep 1"],
        ))
        .await;
    assert_eq!(
        world.admin.wait_terminal(&mine).await.status,
        RunStatus::Succeeded
    );
}
