//! End to end: `sealrun agent --pool-size N` keeps containers started and
//! waiting for the target's runs. A run through `sealrun run` takes one, which
//! is gone after it; an agent killed with a full pool leaves no member behind
//! once it restarts, warms its pool again at once (it remembers the target's
//! shape), and one that stops removes its members.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    AgentProcess, ControlPlane as _, ServerProcess, World, WorldOptions, containers_of,
    require_docker, wait_for, wait_no_containers,
};
use sealrun_wire::run::RunStatus;
use std::collections::HashSet;
use std::time::Duration;

fn options() -> WorldOptions {
    WorldOptions {
        agent_args: vec!["--pool-size".into(), "2".into()],
        ..Default::default()
    }
}

/// `sealrun run --target T -- hostname` through the CLI: the short id of the
/// container the run got.
fn run_hostname(world: &World<ServerProcess, AgentProcess>) -> String {
    let cli = world.server.cli(world.server.admin_token());
    let out = cli
        .command(&["run", "--target", &world.target, "--", "hostname"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Waits until the agent `agent_id` has `n` containers, none running a run,
/// and returns their ids.
async fn full_pool(agent_id: &str, n: usize) -> HashSet<String> {
    wait_for(&format!("{n} pool members of agent {agent_id}"), || async {
        let ids: HashSet<String> = containers_of(agent_id).into_iter().collect();
        (ids.len() == n).then_some(ids)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sealrun_run_takes_a_waiting_container_which_is_gone_after_the_run() {
    if !require_docker() {
        return;
    }
    let world = World::spawned_with(options()).await;
    // The first run shows the agent the target's shape.
    let id = world.submit(&["true"]).await;
    assert_eq!(
        world.admin.wait_terminal(&id).await.status,
        RunStatus::Succeeded
    );
    let mut seen = HashSet::new();
    for _ in 0..2 {
        let members = full_pool(&world.agent.id, 2).await;
        let host = run_hostname(&world);
        let taken: Vec<&String> = members.iter().filter(|m| m.starts_with(&host)).collect();
        assert_eq!(taken.len(), 1, "{host} is not one of {members:?}");
        assert!(seen.insert(host.clone()), "{host} served two runs");
        let taken = taken[0].clone();
        wait_for("the run's container to be removed", || async {
            (!containers_of(&world.agent.id).contains(&taken)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_leaves_no_pool_member_behind_once_restarted_and_a_stopped_one_none_at_all()
{
    if !require_docker() {
        return;
    }
    let mut world = World::spawned_with(options()).await;
    let id = world.submit(&["true"]).await;
    world.admin.wait_terminal(&id).await;
    let members = full_pool(&world.agent.id, 2).await;

    world.agent.kill();
    // Positive control: the members outlive the process that made them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left: HashSet<String> = containers_of(&world.agent.id).into_iter().collect();
    assert_eq!(left, members);

    world.agent.restart();
    wait_for("the killed agent's pool members to be removed", || async {
        let now: HashSet<String> = containers_of(&world.agent.id).into_iter().collect();
        now.is_disjoint(&members).then_some(())
    })
    .await;
    // The restarted agent remembers the target's shape: it fills its pool
    // again before any run, with new members, and a run takes one.
    let refilled = full_pool(&world.agent.id, 2).await;
    assert!(refilled.is_disjoint(&members));
    let host = run_hostname(&world);
    assert!(refilled.iter().any(|m| m.starts_with(&host)), "{host}");

    // Stopping the agent removes its members.
    let status = world.agent.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    wait_no_containers(&world.agent.id).await;
}
