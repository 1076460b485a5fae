//! The warm pool against a real Docker engine, without a control plane: a
//! run takes a unit that was prepared before it existed, uses it once, and
//! leaves nothing of itself to the next run or in the engine's records.
//! After every case, no container labeled with the case's agent id remains.
#![allow(clippy::unwrap_used)]

use bollard::query_parameters::{EventsOptions, InspectContainerOptions};
use futures_util::StreamExt as _;
use sealrun_agent::control::RunControl;
use sealrun_agent::docker::DockerRuntime;
use sealrun_agent::executor::Job;
use sealrun_agent::executor::{Outcome, execute};
use sealrun_agent::pool::{Pool, PoolConfig};
use sealrun_agent::runtime::{POOL_LABEL, Runtime};
use sealrun_testkit::runtime::TARGET;
use sealrun_testkit::runtime::{
    MemorySink, assert_no_container_left, docker_runtime, in_image, job, unique_agent_id,
    with_secret,
};
use sealrun_testkit::wait_until;
use sealrun_wire::agent::FinishRequest;
use sealrun_wire::run::RunStatus;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "pool-secret-0e1f2a3b4c5d";

/// An agent's pools (one target, `size` members, `max_age`) kept warm in the
/// background until the fixture is stopped.
struct Warm {
    rt: DockerRuntime,
    agent_id: String,
    pool: Arc<Pool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Warm {
    fn start(rt: &DockerRuntime, size: usize, max_age: Duration) -> Warm {
        let agent_id = unique_agent_id();
        let configs = HashMap::from([(TARGET.to_owned(), PoolConfig { size, max_age })]);
        let pool = Pool::new(&agent_id, configs).unwrap();
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(Arc::clone(&pool).keep_warm(Arc::new(rt.clone()), None, stop.clone()));
        Warm {
            rt: rt.clone(),
            agent_id,
            pool,
            stop,
            task,
        }
    }

    /// `job` as a run of this agent, with its pools.
    fn job(&self, mut j: Job) -> Job {
        j.agent_id = self.agent_id.clone();
        j.pool = Some(Arc::clone(&self.pool));
        j
    }

    async fn until_ready(&self, n: usize) {
        let pool = Arc::clone(&self.pool);
        wait_until(60, "the pool to fill", || pool.ready(TARGET) >= n).await;
    }

    /// Full ids of the pool members waiting now, as the engine lists them.
    async fn members(&self) -> HashSet<String> {
        self.rt
            .list(&self.agent_id)
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.0)
            .collect()
    }

    /// Stops the pools (which removes every member) and checks that nothing
    /// of this agent is left.
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
        assert_no_container_left(&self.rt, &self.agent_id).await;
    }
}

/// Runs `job` to its end with `sink` and `control` (the pool's members
/// stay: the fixture checks the agent's containers when it stops).
async fn run_with(
    rt: &DockerRuntime,
    job: Job,
    sink: Arc<MemorySink>,
    control: RunControl,
) -> FinishRequest {
    match execute(rt, job, sink, control).await {
        Outcome::Report(f) => f,
        Outcome::Abandoned => panic!("run was abandoned"),
    }
}

async fn run(rt: &DockerRuntime, job: Job) -> (FinishRequest, Arc<MemorySink>) {
    let sink = MemorySink::new();
    let finish = run_with(rt, job, Arc::clone(&sink), RunControl::new()).await;
    (finish, sink)
}

/// The container a run's command ran in, by the hostname Docker gives it
/// (the first 12 hex digits of its id).
fn container_of(stdout: &str) -> String {
    let host = stdout.lines().next().unwrap_or_default().trim().to_owned();
    assert_eq!(host.len(), 12, "not a container hostname: {stdout:?}");
    host
}

async fn exists(rt: &DockerRuntime, id: &str) -> bool {
    rt.client()
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .is_ok()
}

#[tokio::test]
async fn runs_take_prepared_containers_each_its_own_and_each_gone_after_its_run() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let warm = Warm::start(&rt, 2, Duration::from_secs(300));
    // The first run shows the pool its target's shape, and gets a cold unit.
    let (first, out) = run(&rt, warm.job(job(&["hostname"]))).await;
    assert_eq!(first.status, RunStatus::Succeeded);
    let mut seen = HashSet::from([container_of(&out.stdout())]);
    for _ in 0..3 {
        warm.until_ready(2).await;
        let members = warm.members().await;
        let (finish, out) = run(&rt, warm.job(job(&["hostname"]))).await;
        assert_eq!(finish.status, RunStatus::Succeeded);
        let host = container_of(&out.stdout());
        assert!(
            members.iter().any(|m| m.starts_with(&host)),
            "the run did not get a pool member: {host} not in {members:?}"
        );
        assert!(
            seen.insert(host.clone()),
            "container {host} served two runs"
        );
        assert!(
            !exists(&rt, &host).await,
            "container {host} outlived its run"
        );
    }
    warm.stop().await;
}

#[tokio::test]
async fn a_secret_of_one_run_is_never_visible_to_the_next_run_of_the_same_target() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let warm = Warm::start(&rt, 2, Duration::from_secs(300));
    run(&rt, warm.job(job(&["true"]))).await;
    warm.until_ready(2).await;
    let members_a = warm.members().await;
    // Run A leaves its secret everywhere it can write.
    let a = with_secret(
        job(&[
            "sh",
            "-c",
            "hostname; printf %s \"$DB_PASSWORD\" > /tmp/left-by-a; echo \"$DB_PASSWORD\"",
        ]),
        "DB_PASSWORD",
        SECRET,
    );
    let (finish, out_a) = run(&rt, warm.job(a)).await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    // Positive control: A had the secret (its output shows it masked).
    let shown = out_a.stdout();
    assert!(shown.contains("***") && !shown.contains(SECRET), "{shown}");
    warm.until_ready(2).await;
    let members_b = warm.members().await;
    // Run B looks for it, from inside, while the test inspects its container.
    let b = job(&[
        "sh",
        "-c",
        "hostname; ls /tmp; env | grep -c DB_PASSWORD; grep -rl pool-secret /tmp 2>/dev/null | wc -l; echo looked; sleep 30",
    ]);
    let (control, out_b) = (RunControl::new(), MemorySink::new());
    let task = tokio::spawn({
        let (rt, job, sink, control) =
            (rt.clone(), warm.job(b), Arc::clone(&out_b), control.clone());
        async move { run_with(&rt, job, sink, control).await }
    });
    let probe = Arc::clone(&out_b);
    wait_until(30, "run B to look", || probe.stdout().contains("looked")).await;
    let host_b = container_of(&out_b.stdout());
    let host_a = container_of(&out_a.stdout());
    assert_ne!(host_b, host_a);
    // Both runs took a pool member: the case is about the pool.
    assert!(members_a.iter().any(|m| m.starts_with(&host_a)), "{host_a}");
    assert!(members_b.iter().any(|m| m.starts_with(&host_b)), "{host_b}");
    let inspected = rt
        .client()
        .inspect_container(&host_b, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let config = serde_json::to_string(&inspected).unwrap();
    assert!(!config.contains(SECRET), "{config}");
    assert!(!config.contains("DB_PASSWORD"), "{config}");
    control.request(sealrun_agent::control::Stop::Cancel);
    task.await.unwrap();
    let seen = out_b.stdout();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[1..4], ["0", "0", "looked"], "{seen}");
    warm.stop().await;
}

#[tokio::test]
async fn a_waiting_pool_member_holds_no_command_and_no_secret() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let warm = Warm::start(&rt, 2, Duration::from_secs(300));
    let argv = ["sh", "-c", "echo distinctive-argv-7f3a"];
    let (finish, _) = run(
        &rt,
        warm.job(with_secret(job(&argv), "DB_PASSWORD", SECRET)),
    )
    .await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    warm.until_ready(2).await;
    let members = warm.members().await;
    assert_eq!(members.len(), 2);
    for id in members {
        let inspected = rt
            .client()
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let config = inspected.config.clone().unwrap();
        // Positive control: this is the pool member of the run's target.
        assert_eq!(
            config
                .labels
                .as_ref()
                .unwrap()
                .get(POOL_LABEL)
                .map(String::as_str),
            Some(TARGET)
        );
        assert_eq!(
            config.entrypoint.unwrap(),
            ["/.sealrun/init", "--wait", "--idle-secs", "360"]
        );
        assert!(config.cmd.unwrap_or_default().is_empty());
        assert!(
            inspected
                .args
                .clone()
                .unwrap_or_default()
                .iter()
                .all(|a| !a.contains("echo"))
        );
        let all = serde_json::to_string(&inspected).unwrap();
        for absent in [SECRET, "DB_PASSWORD", "distinctive-argv-7f3a"] {
            assert!(!all.contains(absent), "{absent} in {all}");
        }
    }
    warm.stop().await;
}

#[tokio::test]
async fn a_member_recycled_for_age_never_ran_anything() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let warm = Warm::start(&rt, 1, Duration::from_secs(3));
    let (finish, _) = run(&rt, warm.job(job(&["true"]))).await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    warm.until_ready(1).await;
    let old = warm.members().await;
    // Aged out and replaced by a new member.
    let agent = warm.agent_id.clone();
    let mut replaced = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = warm.members().await;
        if !now.is_empty() && now.is_disjoint(&old) {
            replaced = true;
            break;
        }
    }
    assert!(replaced, "the member was not recycled");
    for id in &old {
        assert!(!exists(&rt, id).await, "recycled member {id} still exists");
    }
    // Positive control: a member a run took is attached to (its bundle).
    warm.until_ready(1).await;
    let taken = warm.members().await;
    let (finish, _) = run(&rt, warm.job(job(&["true"]))).await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    warm.stop().await;

    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let options = EventsOptions {
        since: Some(since.to_string()),
        until: Some(until.to_string()),
        filters: Some(HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("sealrun.agent={agent}")]),
        ])),
    };
    let events: Vec<_> = rt.client().events(Some(options)).collect().await;
    let actions = |id: &str| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .filter(|e| e.actor.as_ref().and_then(|a| a.id.as_deref()) == Some(id))
            .filter_map(|e| e.action.clone())
            .collect()
    };
    for id in &old {
        let seen = actions(id);
        assert!(seen.iter().any(|a| a == "start"), "{id}: {seen:?}");
        assert!(seen.iter().any(|a| a == "destroy"), "{id}: {seen:?}");
        assert!(
            !seen.iter().any(|a| a == "attach"),
            "{id} was attached to: {seen:?}"
        );
    }
    for id in &taken {
        let seen = actions(id);
        assert!(seen.iter().any(|a| a == "attach"), "{id}: {seen:?}");
    }
}

#[tokio::test]
async fn a_run_of_another_image_gets_a_cold_container_and_leaves_the_pool_as_it_was() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // The same image under another name: a per-run image, as far as the
    // target is concerned.
    let other = format!("sealrun/busybox:pool-{}", unique_agent_id());
    let (repo, tag) = other.split_once(':').unwrap();
    rt.client()
        .tag_image(
            sealrun_testkit::IMAGE,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
            }),
        )
        .await
        .unwrap();
    let warm = Warm::start(&rt, 1, Duration::from_secs(300));
    run(&rt, warm.job(job(&["true"]))).await;
    warm.until_ready(1).await;
    let members = warm.members().await;
    let (finish, out) = run(&rt, warm.job(in_image(job(&["hostname"]), &other))).await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    let host = container_of(&out.stdout());
    assert!(!members.iter().any(|m| m.starts_with(&host)), "{host}");
    assert_eq!(warm.members().await, members, "the pool changed");
    // Positive control: a run of the target's own image takes the member.
    let (_, out) = run(&rt, warm.job(job(&["hostname"]))).await;
    let host = container_of(&out.stdout());
    assert!(members.iter().any(|m| m.starts_with(&host)), "{host}");
    warm.stop().await;
    rt.client()
        .remove_image(
            &other,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_run_with_other_limits_gets_a_cold_container_and_the_pool_takes_its_shape() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let warm = Warm::start(&rt, 1, Duration::from_secs(300));
    run(&rt, warm.job(job(&["true"]))).await;
    warm.until_ready(1).await;
    let old = warm.members().await;
    let mut j = job(&["hostname"]);
    j.assignment.limits.pids = 77;
    let (finish, out) = run(&rt, warm.job(j)).await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    let host = container_of(&out.stdout());
    assert!(!old.iter().any(|m| m.starts_with(&host)), "{host}");
    // The old member is retired; a new one has the new limits.
    let rt2 = rt.clone();
    let agent = warm.agent_id.clone();
    let mut fresh = HashSet::new();
    for _ in 0..80 {
        fresh = warm.members().await;
        if fresh.len() == 1 && fresh.is_disjoint(&old) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        fresh.len() == 1 && fresh.is_disjoint(&old),
        "{fresh:?} {old:?} ({agent})"
    );
    let id = fresh.into_iter().next().unwrap();
    let inspected = rt2
        .client()
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(inspected.host_config.unwrap().pids_limit, Some(77));
    warm.stop().await;
}

#[tokio::test]
async fn a_member_that_stopped_since_it_was_made_is_not_used_and_the_run_gets_a_cold_container() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let warm = Warm::start(&rt, 1, Duration::from_secs(300));
    run(&rt, warm.job(job(&["true"]))).await;
    warm.until_ready(1).await;
    let members = warm.members().await;
    let dead = members.iter().next().unwrap().clone();
    // As an engine restart or `docker kill` would leave it.
    rt.signal(
        &sealrun_agent::runtime::ContainerId(dead.clone()),
        sealrun_agent::runtime::StopSignal::Kill,
    )
    .await
    .unwrap();
    let (finish, out) = run(&rt, warm.job(job(&["hostname"]))).await;
    assert_eq!(finish.status, RunStatus::Succeeded, "{finish:?}");
    let host = container_of(&out.stdout());
    assert!(!dead.starts_with(&host), "the stopped member was used");
    assert!(
        !exists(&rt, &dead).await,
        "the stopped member was left behind"
    );
    warm.stop().await;
}
