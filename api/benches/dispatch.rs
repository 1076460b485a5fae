//! Dispatch benchmark: a real control plane over loopback HTTPS, agents
//! simulated in-process (tasks long-polling with reqwest and finishing each
//! run at once: a no-op runtime), and submitters that each keep one run in
//! flight.
//!
//! Reports runs dispatched per second and the p50/p99 latency from sending
//! `POST /v1/runs` to the agent holding the assignment, next to a baseline
//! measured in the same run: `GET /health` round trips over the same HTTPS
//! stack at the same concurrency.
//!
//! Signed runs are measured against unsigned ones in the same run: each
//! submission then carries a run signed as `sealrun run` signs it (the
//! signing is timed as part of the submission), the control plane checks it
//! and relays the signatures, and each simulated agent authorizes every
//! assignment as the real agent's gate does
//! (`sealrun_wire::authority::authorize`); the time that takes per run is
//! reported too.
//!
//! The same phases run on PostgreSQL, with one control plane and with three
//! replicas of one database (agents and submitters spread over them), when
//! `SEALRUN_TEST_DATABASE_URL` names a cluster (see `testkit/src/postgres.rs`;
//! `scripts/provision.sh` makes one): their rates are reported as ratios of
//! the SQLite figure measured in the same run. Then the floor: PostgreSQL
//! driven straight, without the control plane, doing only the writes a
//! dispatch cannot skip (see `floor_phase`), on sealrun's `runs` table and on
//! a table of three columns. Each 16-in-flight phase and the floor report the
//! machine's CPU time a run (every process counted, from `/proc/stat`), and
//! of it this process's (clients and servers) and PostgreSQL's.
//!
//! `cargo bench -p sealrun-api --bench dispatch` (about a minute).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use reqwest::StatusCode;
use sealrun_api::Settings;
use sealrun_testkit::{InProcessServer, TestDatabase};
use sealrun_wire::agent::Assignment;
use sealrun_wire::authority::{RunIntent, authorize};
use sealrun_wire::trust::{SigningKey, TargetCertificate, UserCertificate};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const AGENTS: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);

struct Env {
    url: String,
    ca: reqwest::Certificate,
    admin: String,
    /// Set when runs are signed.
    signing: Option<Arc<Signing>>,
}

/// What signed runs need: the admin's key (it certified itself, the target,
/// and signs the runs), the names a run binds, and the agents' clock of the
/// time spent authorizing.
struct Signing {
    key: SigningKey,
    org: String,
    user: String,
    target_key: String,
    verify_nanos: AtomicU64,
    verified: AtomicU64,
}

impl Signing {
    /// The body of `POST /v1/runs` for `true` on `bench`, signed.
    fn body(&self) -> serde_json::Value {
        let now = now_ms();
        let signed = self.key.sign(&RunIntent {
            org: self.org.clone(),
            target: "bench".into(),
            argv: vec!["true".into()],
            env: Default::default(),
            secrets: vec![],
            image: "busybox".into(),
            timeout_secs: 3600,
            stdin: false,
            submitter: self.user.clone(),
            break_glass: None,
            nonce: RunIntent::fresh_nonce(),
            issued_at_ms: now,
            expires_at_ms: now + 3_600_000,
            runbook: None,
        });
        json!({"target": "bench", "argv": ["true"], "signed": signed})
    }

    /// Authorizes `a` as the agent's gate does, counting the time.
    fn authorize(&self, a: &Assignment) {
        let t0 = Instant::now();
        let authority = a.authority.as_ref().expect("a signed run");
        authorize(
            &a.execution(),
            authority,
            &[self.key.public_key()],
            &self.target_key,
            now_ms(),
        )
        .expect("the run is authorized");
        let took = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.verify_nanos.fetch_add(took, Ordering::Relaxed);
        self.verified.fetch_add(1, Ordering::Relaxed);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Submits `body` as `sealrun run` does: with an idempotency key, sent again
/// with the same key when the answer is lost (a keep-alive connection the
/// server closed as the request went out: it closes the longest-idle one
/// of a client at its per-client cap, and every simulated client here is
/// one address), so the run is submitted once. The run's id.
async fn submit(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    body: &serde_json::Value,
) -> String {
    static KEYS: AtomicU64 = AtomicU64::new(0);
    let key = format!(
        "bench-{}-{}",
        now_ms(),
        KEYS.fetch_add(1, Ordering::Relaxed)
    );
    for attempt in 1.. {
        let sent = http
            .post(format!("{url}/v1/runs"))
            .bearer_auth(admin)
            .header("Idempotency-Key", &key)
            .json(body)
            .send()
            .await;
        let created: serde_json::Value = match sent {
            Ok(resp) => resp.json().await.unwrap(),
            Err(e) if attempt < 5 => {
                eprintln!("bench submitter: {e:?}; sending again with the same idempotency key");
                continue;
            }
            Err(e) => panic!("submission failed five times: {e:?}"),
        };
        return created["id"].as_str().unwrap().to_owned();
    }
    unreachable!("the loop returns or panics")
}

/// The body of one submission: signed when `signing` is set.
fn run_body(signing: Option<&Signing>) -> serde_json::Value {
    match signing {
        Some(s) => s.body(),
        None => json!({"target": "bench", "argv": ["true"]}),
    }
}

impl Env {
    /// A client with its own connections. Unlike the kit's `https_client`, it
    /// sets no request timeout: a timer per request would be measured too.
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(self.ca.clone())
            .build()
            .unwrap()
    }
}

/// Who is waiting for which run to be assigned; assignments that arrive
/// before their submitter asks are parked.
#[derive(Default)]
struct Rendezvous {
    waiting: HashMap<String, oneshot::Sender<Instant>>,
    arrived: HashMap<String, Instant>,
}

type Shared = Arc<Mutex<Rendezvous>>;

fn assigned(rv: &Shared, run: String, at: Instant) {
    let mut rv = rv.lock().unwrap();
    match rv.waiting.remove(&run) {
        Some(tx) => {
            let _ = tx.send(at);
        }
        None => {
            rv.arrived.insert(run, at);
        }
    }
}

async fn wait_assigned(rv: &Shared, run: &str) -> Instant {
    let rx = {
        let mut rv = rv.lock().unwrap();
        if let Some(at) = rv.arrived.remove(run) {
            return at;
        }
        let (tx, rx) = oneshot::channel();
        rv.waiting.insert(run.to_owned(), tx);
        rx
    };
    rx.await.unwrap()
}

async fn start_agent(
    env: &Env,
    enrollment: &str,
    i: usize,
    key: &sealrun_vault::TargetKeypair,
) -> (reqwest::Client, String) {
    let http = env.client();
    let reg: serde_json::Value = http
        .post(format!("{}/v1/agent/register", env.url))
        .bearer_auth(enrollment)
        .json(&json!({"name": format!("bench-{i}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reg["agent_token"].as_str().unwrap().to_owned();
    // Proof of possession, as the real agent gives it.
    let targets = json!([{"name": "bench", "public_key": key.public_key().to_base64()}]);
    let challenges: sealrun_wire::agent::Challenges = http
        .post(format!("{}/v1/agent/challenge", env.url))
        .bearer_auth(&token)
        .json(&json!({ "targets": targets }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let proof = challenges.challenges[0].answer(key).unwrap();
    let resp = http
        .post(format!("{}/v1/agent/connect", env.url))
        .bearer_auth(&token)
        .json(
            &json!({"version": "bench", "max_concurrency": 1, "targets": targets,
                      "proofs": [proof]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    (http, token)
}

/// Polls, reports the assignment, finishes the run at once; until `stop`.
async fn agent_loop(
    url: String,
    http: reqwest::Client,
    token: String,
    rv: Shared,
    stop: Arc<AtomicBool>,
    signing: Option<Arc<Signing>>,
) {
    // As the real agent does: one id per poll until it is answered.
    let new_poll_id = || format!("{:032x}", rand::random::<u128>());
    let mut poll_id = new_poll_id();
    while !stop.load(Ordering::Relaxed) {
        let resp = match http
            .post(format!("{url}/v1/agent/poll"))
            .bearer_auth(&token)
            .json(&json!({ "poll_id": poll_id }))
            .send()
            .await
        {
            Ok(resp) => resp,
            // The server closing connections at the end of the run.
            Err(_) if stop.load(Ordering::Relaxed) => return,
            // As the real agent does: say so, and poll again (a run handed
            // out in the lost answer waits for its lease, which shows in
            // the figures).
            Err(e) => {
                eprintln!("bench agent: poll failed ({e:?}); polling again");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if resp.status() == StatusCode::NO_CONTENT {
            poll_id = new_poll_id();
            continue;
        }
        if resp.status() != StatusCode::OK {
            // As the real agent does: say so, wait a little, poll again.
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            eprintln!("bench agent: poll answered {status}: {body}; polling again");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let a: Assignment = resp.json().await.unwrap();
        poll_id = new_poll_id();
        if let Some(s) = &signing {
            s.authorize(&a);
        }
        assigned(&rv, a.run_id.clone(), Instant::now());
        // As the real agent does, a finish whose answer was lost is sent
        // again (a run's finish is idempotent).
        let mut attempts = 0;
        let done = loop {
            attempts += 1;
            match http
                .post(format!("{url}/v1/agent/runs/{}/finish", a.run_id))
                .bearer_auth(&token)
                .json(&json!({"status": "succeeded", "exit_code": 0, "error": null, "next_seq": 0}))
                .send()
                .await
            {
                Ok(done) => break done,
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(e) if attempts < 5 => {
                    eprintln!("bench agent: finish failed ({e:?}); sending it again");
                }
                Err(e) => panic!("finish failed five times: {e}"),
            }
        };
        // A control plane shutting down at the end of a phase answers 503.
        if stop.load(Ordering::Relaxed) {
            return;
        }
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
    }
}

struct Measured {
    per_sec: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
    /// CPU time spent during the measurement.
    cpu: Cpu,
}

impl Measured {
    /// `cpu` per thing measured (run, request), in milliseconds.
    fn cpu_each(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1000.0 / self.n.max(1) as f64
    }
}

/// CPU time spent so far: by the whole machine (every process, other
/// tenants' too), by this process (the bench's clients and the servers it
/// runs in process), and by PostgreSQL's processes.
#[derive(Clone, Copy, Default)]
struct Cpu {
    machine: Duration,
    this: Duration,
    postgres: Duration,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;

    fn sub(self, before: Cpu) -> Cpu {
        Cpu {
            machine: self.machine.saturating_sub(before.machine),
            this: self.this.saturating_sub(before.this),
            postgres: self.postgres.saturating_sub(before.postgres),
        }
    }
}

/// USER_HZ, the unit of `/proc`'s CPU times: 100 on every Linux this runs on.
const TICK: Duration = Duration::from_millis(10);

/// [`Cpu`] now, from `/proc`; zero where it cannot be read.
fn cpu_now() -> Cpu {
    // The first line of /proc/stat: user nice system idle iowait irq
    // softirq steal ..., every CPU together; busy is all but idle and wait.
    let machine = std::fs::read_to_string("/proc/stat").map_or(0, |stat| {
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        ticks.iter().take(8).sum::<u64>()
            - ticks.get(3).copied().unwrap_or(0)
            - ticks.get(4).copied().unwrap_or(0)
    });
    let this = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| process_ticks(&stat))
        .map_or(0, |(_, own, _)| own);
    // Every `postgres` process, with its reaped children's time: a backend
    // that ended during the measurement is then counted in its parent's.
    let postgres = std::fs::read_dir("/proc").map_or(0, |procs| {
        procs
            .flatten()
            .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
            .filter_map(|stat| process_ticks(&stat))
            .filter(|(name, _, _)| name == "postgres")
            .map(|(_, own, children)| own + children)
            .sum()
    });
    let ticks = |n: u64| TICK * u32::try_from(n).unwrap_or(u32::MAX);
    Cpu {
        machine: ticks(machine),
        this: ticks(this),
        postgres: ticks(postgres),
    }
}

/// A process's name, its own CPU ticks (user + system) and its reaped
/// children's, from its `/proc/<pid>/stat`.
fn process_ticks(stat: &str) -> Option<(String, u64, u64)> {
    // The name is in parentheses and may hold spaces: fields count from
    // the last `)`.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|t| t.parse().ok())
        .collect();
    (f.len() == 4).then(|| (name, f[0] + f[1], f[2] + f[3]))
}

fn summarize(mut lat: Vec<Duration>, elapsed: Duration) -> Measured {
    lat.sort();
    let pick = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Measured {
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p90: pick(0.90),
        p99: pick(0.99),
        max: lat[lat.len() - 1],
        n: lat.len(),
        cpu: Cpu::default(),
    }
}

/// `submitters` tasks each submit a run and wait until an agent holds it.
/// Submitter `i` talks to `envs[i % envs.len()]` (the replicas in turn).
async fn dispatch_phase(
    envs: &[Env],
    rv: &Shared,
    submitters: usize,
    length: Duration,
    database: Option<&TestDatabase>,
) -> Measured {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..submitters {
        let env = &envs[i % envs.len()];
        let (http, url, admin, rv, signing) = (
            env.client(),
            env.url.clone(),
            env.admin.clone(),
            Arc::clone(rv),
            env.signing.clone(),
        );
        let (counting, stop) = (Arc::clone(&counting), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let body = run_body(signing.as_deref());
                let id = submit(&http, &url, &admin, &body).await;
                let at = wait_assigned(&rv, &id).await;
                if counting.load(Ordering::Relaxed) {
                    lat.push(at.duration_since(t0));
                }
            }
            lat
        }));
    }
    tokio::time::sleep(WARMUP).await;
    if let Some(database) = database {
        // The planner's statistics as autovacuum keeps them on a live
        // installation (see `TestDatabase::analyze`).
        tokio::task::block_in_place(|| database.analyze());
    }
    measure(tasks, &counting, &stop, length).await
}

/// Counts what `tasks` time for `length` (they push a latency while
/// `counting` is set), then stops them (`stop`) and summarizes, with the
/// CPU time spent over that window.
async fn measure(
    tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
    counting: &AtomicBool,
    stop: &AtomicBool,
    length: Duration,
) -> Measured {
    counting.store(true, Ordering::Relaxed);
    let (started, cpu) = (Instant::now(), cpu_now());
    tokio::time::sleep(length).await;
    counting.store(false, Ordering::Relaxed);
    let (elapsed, cpu) = (started.elapsed(), cpu_now() - cpu);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    Measured {
        cpu,
        ..summarize(lat, elapsed)
    }
}

/// The same shape of load with `GET /health` (one round trip, one read).
async fn health_phase(env: &Env, clients: usize, length: Duration) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url) = (env.client(), env.url.clone());
        let (counting, stop) = (Arc::clone(&counting), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = http.get(format!("{url}/health")).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.bytes().await.unwrap();
                if counting.load(Ordering::Relaxed) {
                    lat.push(t0.elapsed());
                }
            }
            lat
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measure(tasks, &counting, &stop, length).await
}

/// Most open-loop submissions outstanding at once: past it the generator
/// itself would collapse (a TLS handshake per extra connection), so further
/// submissions are counted as shed instead of sent.
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 128;

/// Open loop: submissions at a fixed `rate` whatever the answers, each timed
/// to its assignment. Reports the rate of assignments achieved within the
/// window, and how many submissions had to be shed.
/// Submissions go to the replicas in turn.
async fn open_loop_phase(
    envs: &[Env],
    rv: &Shared,
    rate: u32,
    length: Duration,
) -> (Measured, usize) {
    const TICK: Duration = Duration::from_millis(1);
    let per_tick = (rate / 1000).max(1);
    let clients: Vec<reqwest::Client> = envs.iter().map(Env::client).collect();
    let mut next = 0usize;
    let slots = Arc::new(tokio::sync::Semaphore::new(OPEN_LOOP_MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let begin = Instant::now();
    let (from, to) = (begin + WARMUP, begin + WARMUP + length);
    let mut tasks = Vec::new();
    let mut shed = 0;
    while Instant::now() < to {
        tick.tick().await;
        for _ in 0..per_tick {
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                shed += usize::from(Instant::now() >= from);
                continue;
            };
            let (env, http) = (&envs[next % envs.len()], &clients[next % envs.len()]);
            next += 1;
            let (http, url, admin, rv, signing) = (
                http.clone(),
                env.url.clone(),
                env.admin.clone(),
                Arc::clone(rv),
                env.signing.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _slot = slot;
                let t0 = Instant::now();
                let body = run_body(signing.as_deref());
                let id = submit(&http, &url, &admin, &body).await;
                let at = wait_assigned(&rv, &id).await;
                (t0, at)
            }));
        }
    }
    let mut lat = Vec::new();
    let mut assigned_in_window = 0usize;
    for t in tasks {
        let (t0, at) = t.await.unwrap();
        if t0 >= from && t0 < to {
            lat.push(at.duration_since(t0));
        }
        if at >= from && at < to {
            assigned_in_window += 1;
        }
    }
    let mut m = summarize(lat, length);
    m.per_sec = assigned_in_window as f64 / length.as_secs_f64();
    (m, shed)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A running control plane with its simulated agents.
struct Bench {
    /// One per replica; the first is where the bench is set up.
    envs: Vec<Env>,
    rv: Shared,
    servers: Vec<InProcessServer>,
    /// The other replicas' directories.
    _dirs: Vec<tempfile::TempDir>,
    stop_agents: Arc<AtomicBool>,
    agents: Vec<tokio::task::JoinHandle<()>>,
}

fn env_of(server: &InProcessServer) -> Env {
    Env {
        url: server.url.clone(),
        ca: reqwest::Certificate::from_pem(&std::fs::read(&server.ca_cert).unwrap()).unwrap(),
        admin: server.admin_token.clone(),
        signing: None,
    }
}

impl Bench {
    /// One control plane on SQLite.
    async fn start(durable_commits: bool, signed: bool) -> Bench {
        let settings = Settings {
            max_agents_per_org: 1000,
            durable_commits,
            ..Settings::default()
        };
        let server = InProcessServer::start_with(settings).await;
        Bench::set_up(vec![server], Vec::new(), signed).await
    }

    /// `replicas` control planes on one PostgreSQL database; `None` without
    /// a cluster.
    async fn start_postgres(replicas: usize) -> Option<Bench> {
        let settings = || Settings {
            max_agents_per_org: 1000,
            ..Settings::default()
        };
        let first = InProcessServer::start_on_postgres(settings()).await?;
        let mut servers = vec![first];
        let mut dirs = Vec::new();
        for _ in 1..replicas {
            let dir = tempfile::tempdir().unwrap();
            let replica = servers[0].start_replica(dir.path(), settings()).await?;
            servers.push(replica);
            dirs.push(dir);
        }
        Some(Bench::set_up(servers, dirs, false).await)
    }

    /// Target `bench` and the agents, spread over the servers.
    async fn set_up(
        servers: Vec<InProcessServer>,
        dirs: Vec<tempfile::TempDir>,
        signed: bool,
    ) -> Bench {
        let mut envs: Vec<Env> = servers.iter().map(env_of).collect();
        let env = &envs[0];
        let admin = env.client();
        let put = admin
            .put(format!("{}/v1/targets/bench", env.url))
            .bearer_auth(&env.admin)
            .json(&json!({"name": "bench", "image": "busybox"}))
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        let enrollment: serde_json::Value = admin
            .post(format!("{}/v1/pools/default/enrollment-tokens", env.url))
            .bearer_auth(&env.admin)
            .json(&json!({"unlimited": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let enrollment = enrollment["token"].as_str().unwrap().to_owned();
        let key = sealrun_vault::TargetKeypair::generate();
        let rv: Shared = Arc::default();
        let stop_agents = Arc::new(AtomicBool::new(false));
        let mut agents = Vec::new();
        let mut connected = Vec::new();
        for i in 0..AGENTS {
            let env = &envs[i % envs.len()];
            connected.push((i, start_agent(env, &enrollment, i, &key).await));
        }
        if signed {
            let signing = Arc::new(certify(&envs[0], &admin, &key).await);
            for env in &mut envs {
                env.signing = Some(Arc::clone(&signing));
            }
        }
        for (i, (http, token)) in connected {
            let env = &envs[i % envs.len()];
            agents.push(tokio::spawn(agent_loop(
                env.url.clone(),
                http,
                token,
                Arc::clone(&rv),
                Arc::clone(&stop_agents),
                env.signing.clone(),
            )));
        }
        Bench {
            envs,
            rv,
            servers,
            _dirs: dirs,
            stop_agents,
            agents,
        }
    }

    async fn stop(self) {
        self.stop_agents.store(true, Ordering::Relaxed);
        let stopped = async {
            for s in self.servers {
                s.stop().await;
            }
        };
        let agents = async {
            for a in self.agents {
                let _ = a.await;
            }
        };
        let ((), ()) = tokio::join!(stopped, agents);
    }
}

/// Certifies, with a new admin key, the admin user's own key and target
/// `bench` (pinned to `key` by now), as `sealrun user certify` and
/// `sealrun target trust` do.
async fn certify(env: &Env, http: &reqwest::Client, key: &sealrun_vault::TargetKeypair) -> Signing {
    let get = |path: &str| {
        http.get(format!("{}{path}", env.url))
            .bearer_auth(&env.admin)
            .send()
    };
    let me: serde_json::Value = get("/v1/whoami").await.unwrap().json().await.unwrap();
    let target: sealrun_wire::admin::TargetView = get("/v1/targets/bench")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (org, user) = (
        me["org"].as_str().unwrap().to_owned(),
        me["user"].as_str().unwrap().to_owned(),
    );
    let admin = SigningKey::generate();
    let now = now_ms();
    let user_cert = admin.sign(&UserCertificate {
        org: org.clone(),
        user: user.clone(),
        role: sealrun_wire::admin::Role::Admin,
        groups: vec![],
        public_key: admin.public_key().to_string(),
        passkeys: Vec::new(),
        issued_at_ms: now,
        expires_at_ms: now + 3_600_000,
    });
    let pinned = target.public_key.unwrap();
    let target_cert = admin.sign(&TargetCertificate {
        org: org.clone(),
        target: "bench".into(),
        public_key: pinned.key.clone(),
        key_id: pinned.key_id.0.clone(),
        spec: target.spec,
        report_key: None,
        issued_at_ms: now,
        expires_at_ms: now + 3_600_000,
    });
    for (path, body) in [
        (format!("/v1/users/{user}/certificate"), json!(user_cert)),
        (
            "/v1/targets/bench/certificate".to_owned(),
            json!(target_cert),
        ),
    ] {
        let put = http
            .put(format!("{}{path}", env.url))
            .bearer_auth(&env.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            put.status().is_success(),
            "{path}: {}",
            put.text().await.unwrap()
        );
    }
    Signing {
        key: admin,
        org,
        user,
        target_key: key.public_key().to_base64(),
        verify_nanos: AtomicU64::new(0),
        verified: AtomicU64::new(0),
    }
}

/// Where the floor phase queues its runs.
#[derive(Clone, Copy)]
enum FloorTable {
    /// sealrun's `runs`: its columns, indexes and triggers.
    Runs,
    /// A table of three columns and the one index a queue needs.
    Lean,
}

/// Runs a floor-phase transaction holds.
const FLOOR_BATCH: usize = 8;

/// Connections of the floor phase.
const FLOOR_WORKERS: usize = 4;

/// What PostgreSQL can dispatch at most on this machine: the three writes
/// no design of a run's dispatch does without (the run queued, claimed
/// `SKIP LOCKED`, finished), sent straight from [`FLOOR_WORKERS`]
/// connections with every CPU to PostgreSQL and them (no HTTPS, no control
/// plane, no idempotency key, audit entry, agent or wake-up), each
/// transaction holding [`FLOOR_BATCH`] runs as the control plane's writers
/// batch their jobs, each commit durable. Latency: from a run's batch
/// starting to its finish committed. The database is `database_url`'s,
/// with target `bench`.
async fn floor_phase(database_url: &str, table: FloorTable, length: Duration) -> Measured {
    let connect = || async {
        let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let setup = connect().await;
    let (insert, claim, finish) = match table {
        FloorTable::Runs => (
            "INSERT INTO runs (id, org_id, target_id, target, argv, env, secrets, image,
                               timeout_secs, source, submitter, status, created_ms, stdin,
                               spec_digest, submitter_user_id)
             SELECT $1, org_id, id, name, '[\"true\"]', '{}', '[]', 'busybox', 3600, 'cli',
                    'admin', 'queued', $2, 0, 'floor', NULL
             FROM targets WHERE name = 'bench'",
            "UPDATE runs SET status = 'running', agent_id = 'floor', agent_name = 'floor',
                             lease_expires_ms = $1, started_ms = $1, poll_id = 'floor'
             WHERE n = (SELECT n FROM runs
                        WHERE target_id = (SELECT id FROM targets WHERE name = 'bench')
                          AND status = 'queued'
                        ORDER BY n LIMIT 1 FOR UPDATE SKIP LOCKED)
               AND status = 'queued'
             RETURNING id",
            "UPDATE runs SET status = 'succeeded', exit_code = 0, finished_ms = $2,
                             lease_expires_ms = NULL
             WHERE id = $1",
        ),
        FloorTable::Lean => {
            setup
                .batch_execute(
                    "CREATE TABLE floor_queue (
                         n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                         id TEXT NOT NULL UNIQUE,
                         status TEXT NOT NULL);
                     CREATE INDEX floor_queue_queued ON floor_queue (n)
                         WHERE status = 'queued'",
                )
                .await
                .unwrap();
            (
                "INSERT INTO floor_queue (id, status) SELECT $1, 'queued' WHERE $2::BIGINT > 0",
                "UPDATE floor_queue SET status = 'running'
                 WHERE n = (SELECT n FROM floor_queue WHERE status = 'queued'
                            ORDER BY n LIMIT 1 FOR UPDATE SKIP LOCKED)
                   AND status = 'queued' AND $1::BIGINT > 0
                 RETURNING id",
                "UPDATE floor_queue SET status = 'succeeded' WHERE id = $1 AND $2::BIGINT > 0",
            )
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..FLOOR_WORKERS {
        let mut client = connect().await;
        let (stop, counting) = (Arc::clone(&stop), Arc::clone(&counting));
        tasks.push(tokio::spawn(async move {
            let insert = client.prepare(insert).await.unwrap();
            let claim = client.prepare(claim).await.unwrap();
            let finish = client.prepare(finish).await.unwrap();
            let mut lat = Vec::new();
            for batch in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t0 = Instant::now();
                let now = now_ms();
                let tx = client.transaction().await.unwrap();
                for i in 0..FLOOR_BATCH {
                    let id = format!("floor-{worker}-{batch}-{i}");
                    tx.execute(&insert, &[&id, &now]).await.unwrap();
                }
                tx.commit().await.unwrap();
                // Another worker may have claimed these; any queued run will
                // do, as for an agent.
                let tx = client.transaction().await.unwrap();
                let mut ids = Vec::with_capacity(FLOOR_BATCH);
                for _ in 0..FLOOR_BATCH {
                    if let Some(row) = tx.query_opt(&claim, &[&now]).await.unwrap() {
                        ids.push(row.get::<_, String>(0));
                    }
                }
                tx.commit().await.unwrap();
                let tx = client.transaction().await.unwrap();
                for id in &ids {
                    tx.execute(&finish, &[id, &now]).await.unwrap();
                }
                tx.commit().await.unwrap();
                if counting.load(Ordering::Relaxed) {
                    lat.extend(std::iter::repeat_n(t0.elapsed(), ids.len()));
                }
            }
            lat
        }));
    }
    tokio::time::sleep(WARMUP).await;
    measure(tasks, &counting, &stop, length).await
}

/// The floor phases (see [`floor_phase`]), on a database of their own with
/// target `bench`; `None` without a cluster.
async fn floor_phases() -> Option<(Measured, Measured)> {
    let server = InProcessServer::start_on_postgres(Settings::default()).await?;
    let put = server
        .http
        .put(format!("{}/v1/targets/bench", server.url))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "bench", "image": "busybox"}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let url = server.database.as_ref().unwrap().url_text.clone();
    let runs = floor_phase(&url, FloorTable::Runs, Duration::from_secs(3)).await;
    row(
        &format!("PostgreSQL floor: runs table, {FLOOR_BATCH} a transaction"),
        &runs,
    );
    let lean = floor_phase(&url, FloorTable::Lean, Duration::from_secs(3)).await;
    row(
        &format!("PostgreSQL floor: lean table, {FLOOR_BATCH} a transaction"),
        &lean,
    );
    server.stop().await;
    Some((runs, lean))
}

/// `fdatasync` latency of 4 KiB appends in `dir`: what a durable commit
/// waits for at least once.
fn fsync_baseline(dir: &std::path::Path, length: Duration) -> Measured {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut lat = Vec::new();
    let started = Instant::now();
    while started.elapsed() < length {
        f.write_all(&[0u8; 4096]).unwrap();
        let t0 = Instant::now();
        f.sync_data().unwrap();
        lat.push(t0.elapsed());
    }
    std::fs::remove_file(&path).unwrap();
    summarize(lat, started.elapsed())
}

fn header() {
    println!(
        "{:<48} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "phase", "per sec", "p50", "p90", "p99", "max", "n"
    );
}

fn row(name: &str, m: &Measured) {
    println!(
        "{:<48} {:>8.0} {:>9} {:>9} {:>9} {:>9} {:>6}",
        name,
        m.per_sec,
        ms(m.p50),
        ms(m.p90),
        ms(m.p99),
        ms(m.max),
        m.n
    );
}

/// The dispatch phases against one server: closed loops at 1 and 16 runs in
/// flight, then 2000 runs/s offered.
async fn dispatch_phases(b: &Bench, label: &str) -> (Measured, Measured, Measured) {
    let database = b.servers[0].database.as_ref();
    let one = dispatch_phase(&b.envs, &b.rv, 1, Duration::from_secs(3), database).await;
    row(&format!("{label}: 1 in flight (closed loop)"), &one);
    let many = dispatch_phase(&b.envs, &b.rv, 16, Duration::from_secs(3), database).await;
    row(&format!("{label}: 16 in flight (closed loop)"), &many);
    let (open, shed) = open_loop_phase(&b.envs, &b.rv, 2000, Duration::from_secs(3)).await;
    row(&format!("{label}: 2000/s offered (open loop)"), &open);
    if shed > 0 {
        println!("  ({shed} submissions shed: {OPEN_LOOP_MAX_IN_FLIGHT} already outstanding)");
    }
    (one, many, open)
}

#[tokio::main]
async fn main() {
    println!(
        "sealrun-api dispatch benchmark: {AGENTS} agents (no-op runtime), HTTPS on loopback, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("submit -> assign: from sending POST /v1/runs to the agent holding the assignment");
    println!();
    header();
    let durable = Bench::start(true, false).await;
    let fsync = fsync_baseline(&durable.servers[0].data_dir, Duration::from_secs(2));
    row("baseline: fdatasync of a 4 KiB append", &fsync);
    let health_1 = health_phase(&durable.envs[0], 1, Duration::from_secs(2)).await;
    row("baseline: GET /health, 1 client", &health_1);
    let health_16 = health_phase(&durable.envs[0], 16, Duration::from_secs(2)).await;
    row("baseline: GET /health, 16 clients", &health_16);
    let (d1, d16, dopen) = dispatch_phases(&durable, "durable").await;
    durable.stop().await;
    let mut postgres = Vec::new();
    for replicas in [1, 3] {
        let Some(bench) = Bench::start_postgres(replicas).await else {
            println!("PostgreSQL: not measured (set SEALRUN_TEST_DATABASE_URL to a cluster)");
            break;
        };
        let label = format!(
            "PostgreSQL, {replicas} replica{}",
            if replicas > 1 { "s" } else { "" }
        );
        postgres.push((label.clone(), dispatch_phases(&bench, &label).await));
        bench.stop().await;
    }
    let floor = if postgres.is_empty() {
        None
    } else {
        floor_phases().await
    };
    let relaxed = Bench::start(false, false).await;
    let (r1, r16, ropen) = dispatch_phases(&relaxed, "durable_commits=false").await;
    relaxed.stop().await;
    let signed = Bench::start(true, true).await;
    let (s1, s16, _) = dispatch_phases(&signed, "durable, signed runs").await;
    let signing = signed.envs[0].signing.clone().unwrap();
    let verified = signing.verified.load(Ordering::Relaxed).max(1);
    let verify_us = signing.verify_nanos.load(Ordering::Relaxed) as f64 / verified as f64 / 1000.0;
    signed.stop().await;

    println!();
    println!(
        "max dispatch rate (16 in flight): durable {:.2} x, relaxed {:.2} x the /health rate at 16 clients",
        d16.per_sec / health_16.per_sec,
        r16.per_sec / health_16.per_sec
    );
    println!(
        "unloaded submit -> assign p50: durable {:.1} x, relaxed {:.1} x a /health round trip; durable p99 = {:.1} x the fdatasync p99",
        d1.p50.as_secs_f64() / health_1.p50.as_secs_f64(),
        r1.p50.as_secs_f64() / health_1.p50.as_secs_f64(),
        d1.p99.as_secs_f64() / fsync.p99.as_secs_f64()
    );
    println!(
        "signed runs: {:.2} x the unsigned dispatch rate at 16 in flight ({:.0} vs {:.0}/s), unloaded p50 {:.2} x; the agent's authorization takes {verify_us:.0} us a run ({verified} runs)",
        s16.per_sec / d16.per_sec,
        s16.per_sec,
        d16.per_sec,
        s1.p50.as_secs_f64() / d1.p50.as_secs_f64(),
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu = |m: &Measured| {
        format!(
            "{:.2} ms CPU a run ({:.0}% of the CPUs busy; this process {:.2} ms, PostgreSQL {:.2} ms)",
            m.cpu_each(m.cpu.machine),
            m.cpu.machine.as_secs_f64() / (m.n as f64 / m.per_sec) / cpus * 100.0,
            m.cpu_each(m.cpu.this),
            m.cpu_each(m.cpu.postgres),
        )
    };
    println!("SQLite at 16 in flight: {}", cpu(&d16));
    for (label, (one, many, open)) in &postgres {
        println!(
            "{label}: {:.0} runs/s at 16 in flight = {:.2} x SQLite's ({:.0}/s), p99 {}, {}; unloaded p50 {} = {:.2} x SQLite's; at 2000/s offered {:.0}/s = {:.2} x SQLite's, p99 {} (goal for 3 replicas: >= 0.5 x, p99 < 25 ms)",
            many.per_sec,
            many.per_sec / d16.per_sec,
            d16.per_sec,
            ms(many.p99),
            cpu(many),
            ms(one.p50),
            one.p50.as_secs_f64() / d1.p50.as_secs_f64(),
            open.per_sec,
            open.per_sec / dopen.per_sec,
            ms(open.p99),
        );
    }
    if let Some((runs, lean)) = &floor {
        let goal = 0.5 * d16.per_sec;
        println!(
            "PostgreSQL floor (queue, claim, finish; no HTTPS, no control plane): runs table {:.0} runs/s = {:.2} x SQLite's whole dispatch, {}; lean table {:.0} runs/s = {:.2} x, {}; the goal ({goal:.0} runs/s) leaves {:.2} ms of CPU a run for all of it",
            runs.per_sec,
            runs.per_sec / d16.per_sec,
            cpu(runs),
            lean.per_sec,
            lean.per_sec / d16.per_sec,
            cpu(lean),
            cpus / goal * 1000.0,
        );
    }
    println!(
        "at 2000 runs/s offered: durable {:.0}/s p99 {}, relaxed {:.0}/s p99 {} (goal: >= 2000/s, p99 < 10 ms)",
        dopen.per_sec,
        ms(dopen.p99),
        ropen.per_sec,
        ms(ropen.p99)
    );
}
