//! Several control-plane replicas on one PostgreSQL database, against real
//! processes and real faults: a replica SIGKILLed under the agent polling it
//! and under the CLI following a run, PostgreSQL itself stopped and started
//! mid-run, and a thousand agents spread over three replicas taking ten
//! thousand runs, and the replica a run's input is sent to killed mid-feed.
//! Nothing is lost, nothing runs twice, nothing acts on part of its input,
//! nobody has to step in.
//!
//! Each test needs a PostgreSQL (the suite's cluster, or its server binaries
//! for a private one) and most need Docker; each skips loudly
//! without them, and fails under `CI` / `SEALRUN_REQUIRE_POSTGRES`.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    AgentProcess, Balancer, Cli, Client, ControlPlane, FakeAgent, PrivateCluster, Replicas,
    TestDatabase, announced_run, code, require_docker, require_postgres, run_request,
    spawned_target, text, to_value, trust_target, varied_bytes,
};
use sealrun_vault::TargetKeypair;
use sealrun_wire::admin::Role;
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::agent::Assignment;
use sealrun_wire::run::{RunCreated, RunStatus};
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A command printing `lines` numbered lines, one every `pause` seconds.
fn printer(lines: u32, pause: &str) -> String {
    format!("i=0; while [ $i -lt {lines} ]; do echo line $i; i=$((i+1)); sleep {pause}; done")
}

/// What [`printer`] prints.
fn printed(lines: u32) -> String {
    (0..lines).map(|i| format!("line {i}\n")).collect()
}

/// Two replicas on `db`, target `spec` on them, and a real agent serving it
/// through a balancer over the replicas `via` (in that order).
struct Served {
    replicas: Replicas,
    admin: Client,
    agent: AgentProcess,
    /// The agent's way in: kept as long as the agent.
    via_agent: Balancer,
}

impl Served {
    async fn start(
        dir: &std::path::Path,
        db: &TestDatabase,
        spec: &TargetSpec,
        via: &[usize],
    ) -> Served {
        let replicas = Replicas::start(dir, &db.url_text, 2, &[]).await;
        let admin = replicas.at(0).admin();
        admin.put_target(spec).await;
        let enrollment = admin.enrollment_token("default").await;
        let via_agent = replicas.balancer(via).await;
        let mut agent = AgentProcess::start(
            &via_agent,
            &dir.join("agent"),
            "agent",
            &[&spec.name],
            Some(&enrollment),
            &[],
        )
        .await;
        agent.wait_connected(&admin, &[&spec.name]).await;
        Served {
            replicas,
            admin,
            agent,
            via_agent,
        }
    }
}

/// `sealrun ARGS` running, its stdout and stderr captured as they come;
/// killed if dropped before [`Following::finish`], so a failing test leaves
/// no `sealrun` behind (one whose replica died reconnects for minutes).
struct Following {
    child: Option<std::process::Child>,
    shown: Captured,
    said: Captured,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Following {
    fn start(cli: &Cli, args: &[&str]) -> Following {
        Following::of(cli.spawn(args))
    }

    /// `child`, spawned with its stdout and stderr piped.
    fn of(mut child: std::process::Child) -> Following {
        let (shown, out) = Captured::of(child.stdout.take().unwrap());
        let (said, err) = Captured::of(child.stderr.take().unwrap());
        Following {
            child: Some(child),
            shown,
            said,
            readers: vec![out, err],
        }
    }

    /// `sealrun run` on `target` of a command printing `lines` lines, one
    /// every half second.
    fn printing(cli: &Cli, target: &str, lines: u32) -> Following {
        Following::start(
            cli,
            &[
                "run",
                "--target",
                target,
                "--",
                "sh",
                "-c",
                &printer(lines, "0.5"),
            ],
        )
    }

    /// Waits for it to exit and for both pipes to be read to their end.
    async fn finish(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a process has written to a pipe so far, read on a thread of its own.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn of(
        mut pipe: impl std::io::Read + Send + 'static,
    ) -> (Captured, std::thread::JoinHandle<()>) {
        let captured = Captured::default();
        let sink = captured.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (captured, reader)
    }

    fn text(&self) -> String {
        text(&self.0.lock().unwrap())
    }

    async fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "{what:?} never came; so far: {:?}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_replicas_an_agent_polls_and_a_cli_follows_mid_run_loses_no_byte() {
    if !require_docker() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let mut replicas = Replicas::start(dir.path(), &db.url_text, 3, &[]).await;
    let admin = replicas.at(0).admin();
    // Two agents spread over the replicas: `a` reaches replica 0 first, `b`
    // replica 2; the CLI reaches replica 1 first.
    let via_a = replicas.balancer(&[0, 1, 2]).await;
    let via_b = replicas.balancer(&[2, 0, 1]).await;
    let via_cli = replicas.balancer(&[1, 2, 0]).await;
    let mut agents = Vec::new();
    for (name, via) in [("a", &via_a), ("b", &via_b)] {
        admin.put_target(&spawned_target(name, 300)).await;
        let enrollment = admin.enrollment_token("default").await;
        let mut agent = AgentProcess::start(
            via,
            &dir.path().join(format!("agent-{name}")),
            &format!("agent-{name}"),
            &[name],
            Some(&enrollment),
            &[],
        )
        .await;
        agent.wait_connected(&admin, &[name]).await;
        trust_target(replicas.at(0), &admin, name).await;
        agents.push(agent);
    }

    // 40 lines over about 20 s on each target: the CLI follows `a`'s.
    let lines = 40;
    let cli = Following::printing(&via_cli.cli(&admin.token), "a", lines);
    let (shown, said) = (cli.shown.clone(), cli.said.clone());
    let other: RunCreated = admin
        .post(
            "/v1/runs",
            to_value(&run_request("b", &["sh", "-c", &printer(lines, "0.5")])),
        )
        .await
        .ok()
        .parse();

    shown.wait_for("line 5\n").await;
    let before_kill = via_a.routed().len();
    replicas.at_mut(0).kill(); // under agent `a`
    shown.wait_for("line 15\n").await;
    replicas.at_mut(1).kill(); // under the CLI, and where `a` went next

    let status = cli.finish().await;
    assert!(
        status.success(),
        "sealrun run: {status}: {}\n{}",
        said.text(),
        replicas.logs()
    );
    // The CLI showed every byte once, in order, across a reconnection
    // (which it says it made: the fault did reach it).
    assert_eq!(shown.text(), printed(lines));
    assert!(said.text().contains("reconnecting"), "{}", said.text());

    let survivor = replicas.at(2).admin();
    let runs: serde_json::Value = survivor.get("/v1/runs?target=a").await.ok().json();
    let followed = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    for id in [followed.as_str(), other.id.as_str()] {
        let end = survivor.wait_terminal(id).await;
        assert_eq!(end.status, RunStatus::Succeeded, "{id}: {:?}", end.error);
        // Stored once, in order, whichever replica each upload went to.
        assert_eq!(survivor.stdout(id).await, printed(lines), "{id}");
    }
    // Positive control: agent `a` did move off the replica it started on.
    let moved = &via_a.routed()[before_kill..];
    assert!(
        moved.iter().any(|&port| port != replicas.at(0).port),
        "agent a never reconnected elsewhere: {moved:?}"
    );
    for agent in &agents {
        assert!(agent.containers().is_empty(), "{:?}", agent.containers());
    }
    drop(agents);
    drop(replicas);
    db.drop_database();
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_and_started_mid_run_loses_nothing_and_needs_no_operator() {
    if !require_docker() {
        return;
    }
    let Some(mut cluster) = PrivateCluster::require() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let replicas = Replicas::start(dir.path(), &cluster.url_text, 2, &[]).await;
    let admin = replicas.at(0).admin();
    let via_agent = replicas.balancer(&[0, 1]).await;
    let via_cli = replicas.balancer(&[1, 0]).await;
    admin.put_target(&spawned_target("db", 300)).await;
    let enrollment = admin.enrollment_token("default").await;
    let mut agent = AgentProcess::start(
        &via_agent,
        &dir.path().join("agent"),
        "agent",
        &["db"],
        Some(&enrollment),
        &[],
    )
    .await;
    agent.wait_connected(&admin, &["db"]).await;
    trust_target(replicas.at(0), &admin, "db").await;

    let lines = 40;
    let cli = Following::printing(&via_cli.cli(&admin.token), "db", lines);
    let (shown, said) = (cli.shown.clone(), cli.said.clone());
    shown.wait_for("line 5\n").await;
    // Down for 5 s: uploads, heartbeats and the follower's reads all fail
    // meanwhile.
    tokio::task::block_in_place(|| {
        cluster.stop_immediately();
        std::thread::sleep(Duration::from_secs(5));
        cluster.start();
    });

    let status = cli.finish().await;
    assert!(
        status.success(),
        "sealrun run: {status}: {}\n{}",
        said.text(),
        replicas.logs()
    );
    assert_eq!(shown.text(), printed(lines));
    // Positive control: the outage did reach every replica (the CLI's
    // stream may or may not have broken, depending on what it was doing).
    for server in &replicas.servers {
        assert!(
            server.log().contains("hint channel was lost"),
            "{}",
            server.log()
        );
    }
    let runs: serde_json::Value = admin.get("/v1/runs?target=db").await.ok().json();
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    let end = admin.wait_terminal(&id).await;
    assert_eq!(end.status, RunStatus::Succeeded, "{:?}", end.error);
    assert_eq!(admin.stdout(&id).await, printed(lines));

    // And afterwards, with nobody restarting anything, both replicas serve:
    // a run submitted on each is taken and finishes.
    for i in 0..2 {
        let out = replicas
            .at(i)
            .cli(&admin.token)
            .output(&["run", "--target", "db", "--", "echo", "after"]);
        assert_eq!(code(&out), 0, "replica {i}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "after\n");
    }
    assert!(agent.containers().is_empty(), "{:?}", agent.containers());
    drop(agent);
    drop(replicas);
    drop(cluster);
}

/// What the simulated agents saw: how often each run was handed out.
#[derive(Default)]
struct Executed {
    times: Mutex<HashMap<String, u32>>,
    finished: AtomicUsize,
}

/// A simulated agent: long-polls, "executes" each run by finishing it at
/// once, and records every assignment; forever (the test aborts it).
async fn simulated_agent(agent: FakeAgent, executed: Arc<Executed>) {
    loop {
        let answer = agent
            .client
            .post("/v1/agent/poll", serde_json::json!({}))
            .await;
        match answer.status.as_u16() {
            204 => continue,
            200 => {}
            other => panic!("agent {}: poll answered {other}: {}", agent.id, answer.text),
        }
        let a: Assignment = answer.parse();
        *executed
            .times
            .lock()
            .unwrap()
            .entry(a.run_id.clone())
            .or_default() += 1;
        let done = agent
            .finish(&a.run_id, RunStatus::Succeeded, Some(0), 0)
            .await;
        assert_eq!(
            done.status.as_u16(),
            204,
            "finish {}: {}",
            a.run_id,
            done.text
        );
        executed.finished.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_agents_on_three_replicas_execute_ten_thousand_runs_each_exactly_once() {
    const AGENTS: usize = 1_000;
    const RUNS: usize = 10_000;
    const SUBMITTERS: usize = 32;
    // A connection per agent, and the replicas' own.
    sealrun_testkit::raise_open_file_limit(4096);
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let replicas = Replicas::start(
        dir.path(),
        &db.url_text,
        3,
        &[
            "--max-agents-per-org",
            "2000",
            "--max-connections-per-client",
            "2000",
        ],
    )
    .await;
    let admin = replicas.at(0).admin();
    admin.declare_target("t").await;
    let enrollment: serde_json::Value = admin
        .post(
            "/v1/pools/default/enrollment-tokens",
            serde_json::json!({"unlimited": true}),
        )
        .await
        .ok()
        .json();
    let enrollment = enrollment["token"].as_str().unwrap().to_owned();
    // Every agent of a target holds its keypair (any 32 bytes make one).
    let seed = [7u8; 32];

    let executed = Arc::new(Executed::default());
    let mut agents = tokio::task::JoinSet::new();
    let mut joining = tokio::task::JoinSet::new();
    for i in 0..AGENTS {
        let replica = replicas.at(i % 3);
        let (url, http) = (replica.url().to_owned(), replica.http().clone());
        let enrollment = enrollment.clone();
        joining.spawn(async move {
            let server = Client::new(&url, http, "");
            let mut agent =
                FakeAgent::register_via(&server, &enrollment, &format!("sim-{i}")).await;
            agent
                .keys
                .push(("t".into(), TargetKeypair::from_secret_bytes(seed)));
            agent.connect().await.ok();
            agent
        });
    }
    while let Some(agent) = joining.join_next().await {
        agents.spawn(simulated_agent(agent.unwrap(), Arc::clone(&executed)));
    }

    let submitted = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = tokio::task::JoinSet::new();
    for s in 0..SUBMITTERS {
        let admin = replicas.at(s % 3).admin();
        let (submitted, next) = (Arc::clone(&submitted), Arc::clone(&next));
        submitters.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < RUNS {
                let created: RunCreated = admin
                    .post("/v1/runs", to_value(&run_request("t", &["true"])))
                    .await
                    .ok()
                    .parse();
                assert!(submitted.lock().unwrap().insert(created.id));
            }
        });
    }
    while let Some(done) = submitters.join_next().await {
        done.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(900);
    while executed.finished.load(Ordering::Relaxed) < RUNS {
        if let Some(Err(e)) = agents.try_join_next() {
            panic!("a simulated agent failed: {e}");
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {RUNS} runs finished",
            executed.finished.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A moment for a run handed out twice to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    agents.abort_all();

    let times = executed.times.lock().unwrap().clone();
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "runs executed more than once: {twice:?}");
    let submitted = submitted.lock().unwrap().clone();
    assert_eq!(submitted.len(), RUNS);
    let ran: HashSet<String> = times.keys().cloned().collect();
    assert_eq!(
        ran, submitted,
        "the runs executed are not the runs submitted"
    );
    // None stuck: nothing is left queued or running on any replica's view.
    for status in ["queued", "running"] {
        let left: serde_json::Value = replicas
            .at(2)
            .admin()
            .get(&format!("/v1/runs?status={status}"))
            .await
            .ok()
            .json();
        assert_eq!(
            left["runs"].as_array().unwrap().len(),
            0,
            "{status}: {left}"
        );
    }
    drop(replicas);
    db.drop_database();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_the_database_cannot_check_is_answered_503_not_401_while_postgres_is_down() {
    let Some(mut cluster) = PrivateCluster::require() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let replicas = Replicas::start(dir.path(), &cluster.url_text, 1, &[]).await;
    // A fresh client each time: a token verified before would be answered
    // from the replica's cache, whatever the database.
    let whoami = || async { replicas.at(0).admin().get("/v1/whoami").await };
    assert_eq!(whoami().await.status.as_u16(), 200);
    // The admin's token with another id: well formed, unknown.
    let admin_token = replicas.at(0).admin_token.clone();
    let mut parts = admin_token.splitn(3, '_');
    let (kind, id, secret) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let stranger = replicas
        .at(0)
        .client(&format!("{kind}_{}_{secret}", "0".repeat(id.len())));
    tokio::task::block_in_place(|| cluster.stop_immediately());
    // Not cached, and the database cannot say: "retry later", never "your
    // token is bad" (a 401 makes the CLI and agents give up).
    let down = stranger.get("/v1/whoami").await;
    assert_eq!(down.status.as_u16(), 503, "{}", down.text);
    assert!(down.text.contains("retry later"), "{}", down.text);
    tokio::task::block_in_place(|| cluster.start());
    // Positive control: the database back, the same unknown token is a 401,
    // and the admin's is accepted.
    let back = replicas.at(0).client(&stranger.token);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = back.get("/v1/whoami").await;
        if answer.status.as_u16() == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} {}",
            answer.status,
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(whoami().await.status.as_u16(), 200);
    drop(replicas);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journey_of_a_secret_run_needing_approval_crosses_two_replicas() {
    if !require_docker() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let mut spec = spawned_target("db", 300);
    spec.policy.approval = serde_json::from_value(
        serde_json::json!({"require": "ad_hoc", "approvals": 1, "from_groups": ["dba"]}),
    )
    .unwrap();
    // The agent polls replica 0; every person below talks to replica 1
    // except the approver.
    let Served {
        replicas,
        admin,
        agent,
        via_agent: _via_agent,
    } = Served::start(dir.path(), &db, &spec, &[0, 1]).await;
    trust_target(replicas.at(0), &admin, "db").await;
    // Replica 1 first; its CLIs share the first replica's HOME, whose trust
    // file `trust_target` wrote.
    let via_1 = replicas.balancer(&[1, 0]).await;
    let on_1 = via_1.cli(&admin.token);
    let alice = admin.token("alice", Role::Operator).await.token;
    let carol = admin.token("carol", Role::Operator).await.token;
    on_1.ok(&["group", "create", "dba", "--member", "alice"]);
    // Sealed on this machine, stored through replica 1.
    let secret = "s3cr3t-across-replicas-7f1c";
    on_1.set_secret("db", "DB_PASSWORD", secret);

    let run = Following::start(
        &on_1.with_token(&carol),
        &[
            "run",
            "--target",
            "db",
            "--secret",
            "DB_PASSWORD",
            "--",
            "sh",
            "-c",
            "echo \"pw: $DB_PASSWORD\"; printf %s \"$DB_PASSWORD\" | base64",
        ],
    );
    let (shown, said) = (run.shown.clone(), run.said.clone());
    said.wait_for("is waiting for approval").await;
    let id = announced_run(&said.text());
    // Approved on the other replica.
    replicas
        .at(0)
        .cli(&alice)
        .ok(&["approvals", "approve", &id, "--comment", "checked"]);
    let status = run.finish().await;
    assert!(status.success(), "{}", said.text());
    assert_eq!(shown.text(), "pw: ***\n***\n", "{}", said.text());

    // Either replica tells the same story: the masks counted, the approval,
    // one audit chain, verified, with the same head.
    let shown_0 = replicas.at(0).cli(&admin.token).ok(&["runs", "show", &id]);
    let shown_1 = on_1.ok(&["runs", "show", &id]);
    assert!(
        shown_0.contains("masked:    2 in stdout, 0 in stderr"),
        "{shown_0}"
    );
    assert_eq!(shown_0, shown_1);
    let mut heads = Vec::new();
    for i in 0..2 {
        let v: serde_json::Value = replicas
            .at(i)
            .admin()
            .get("/v1/audit/verify")
            .await
            .ok()
            .json();
        assert_eq!(v["ok"], true, "{v}");
        heads.push(v["head"].clone());
    }
    assert_eq!(heads[0], heads[1]);
    let trail: serde_json::Value = replicas
        .at(1)
        .admin()
        .get("/v1/audit?limit=1000")
        .await
        .ok()
        .json();
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == id.as_str())
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["run.approved", "run.started", "run.finished"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(agent.containers().is_empty(), "{:?}", agent.containers());
    drop(agent);
    drop(replicas);
    db.drop_database();
}

/// Two replicas on a database of their own and an agent of target `db`
/// talking to replica 0 only: a test's CLI then talks to replica 1 only, so
/// a run's input passes between them, through the database. `None`
/// (skipped, loudly) without Docker or PostgreSQL.
async fn input_between_replicas(dir: &std::path::Path) -> Option<(TestDatabase, Served)> {
    if !require_docker() {
        return None;
    }
    let db = require_postgres(&dir.join("pg"))?;
    let served = Served::start(dir, &db, &spawned_target("db", 300), &[0]).await;
    Some((db, served))
}

#[tokio::test(flavor = "multi_thread")]
async fn input_piped_into_sealrun_run_on_one_replica_reaches_the_command_run_through_another() {
    use sha2::{Digest as _, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let Some((db, served)) = input_between_replicas(dir.path()).await else {
        return;
    };
    let Served {
        replicas,
        admin,
        agent,
        via_agent: _via_agent,
    } = served;
    let data = varied_bytes(4 * 1024 * 1024);
    let cli = replicas.at(1).cli(&admin.token);
    let out = cli.output_with_stdin(
        &[
            "run",
            "--target",
            "db",
            "--",
            "sh",
            "-c",
            "cat >/tmp/input && wc -c </tmp/input && sha256sum </tmp/input",
        ],
        &data,
    );
    let said = text(&out.stderr);
    assert_eq!(code(&out), 0, "{said}\n{}", replicas.logs());
    let shown = text(&out.stdout);
    let mut lines = shown.lines();
    assert_eq!(lines.next().unwrap().trim(), data.len().to_string());
    assert_eq!(
        lines.next().unwrap(),
        format!("{}  -", hex::encode(Sha256::digest(&data)))
    );
    let run = cli.json(&["runs", "show", &announced_run(&said)]);
    assert_eq!(run["stdin_bytes"], data.len() as u64, "{run}");
    drop(agent);
    drop(replicas);
    db.drop_database();
}

#[tokio::test(flavor = "multi_thread")]
async fn input_whose_replica_is_killed_mid_feed_breaks_off_and_is_never_acted_on_in_part() {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, served)) = input_between_replicas(dir.path()).await else {
        return;
    };
    let Served {
        mut replicas,
        admin,
        agent,
        via_agent: _via_agent,
    } = served;
    let cli = replicas.at(1).cli(&admin.token);
    // The command takes its input's first line, says so, then acts on the
    // rest once the input has ended (`read` takes no byte past the line).
    let script = "read -r line; echo took the first line; cat >/tmp/rest; echo acted on $(wc -c </tmp/rest) more bytes";
    let args = ["run", "--target", "db", "--", "sh", "-c", script];
    let input_of = |rest: usize| [b"BEGIN;\n".as_slice(), &varied_bytes(rest)].concat();

    // Positive control: input that ends is acted on, whole.
    let whole = cli.output_with_stdin(&args, &input_of(10));
    assert_eq!(
        code(&whole),
        0,
        "{}\n{}",
        text(&whole.stderr),
        replicas.logs()
    );
    assert_eq!(
        text(&whole.stdout),
        "took the first line\nacted on 10 more bytes\n"
    );

    let mut child = cli.spawn_fed(&args);
    // Written from a thread of its own (a pipe's buffer is smaller than
    // the input), which hands the pipe back open.
    let mut input = child.stdin.take().unwrap();
    let feeding = Following::of(child);
    let (shown, said) = (&feeding.shown, &feeding.said);
    let writer = std::thread::spawn(move || {
        input.write_all(&input_of(64 * 1024)).unwrap();
        input
    });
    // The first line crossed from replica 1 to the command.
    shown.wait_for("took the first line\n").await;
    let id = announced_run(&said.text());
    let _input = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    // Positive control: input that pauses for longer than a silent
    // replica is given, its replica alive, is still waited for.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let paused = admin.run(&id).await;
    assert_eq!(paused.status, RunStatus::Running, "{paused:?}");

    replicas.at_mut(1).kill();
    // Replica 0 takes the input as broken once replica 1 has given no sign
    // of life for 30 s, and the agent kills the command.
    let end = admin
        .wait_terminal_within(&id, Duration::from_secs(120))
        .await;
    assert_eq!(end.status, RunStatus::Error, "{end:?}\n{}", replicas.logs());
    let error = end.error.clone().unwrap_or_default();
    assert!(error.contains("input broke off"), "{error}");
    // Broken for that reason (not, say, because the run ended).
    let why = replicas.at(0).log();
    assert!(why.contains("gave no sign of life"), "{why}");
    assert_eq!(admin.stdout(&id).await, "took the first line\n", "{error}");
    drop(feeding);
    assert!(agent.containers().is_empty(), "{:?}", agent.containers());
    drop(agent);
    drop(replicas);
    db.drop_database();
}
