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
//! `cargo bench -p sealrun-api --bench dispatch` (about 20 s).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use reqwest::StatusCode;
use sealrun_api::{Server, ServerConfig, Settings};
use sealrun_wire::agent::Assignment;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const AGENTS: usize = 16;
const WARMUP: Duration = Duration::from_secs(1);

struct Env {
    url: String,
    ca: reqwest::Certificate,
    admin: String,
}

impl Env {
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
    key: &str,
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
    let resp = http
        .post(format!("{}/v1/agent/connect", env.url))
        .bearer_auth(&token)
        .json(&json!({"version": "bench", "max_concurrency": 1,
                      "targets": [{"name": "bench", "public_key": key}]}))
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
) {
    while !stop.load(Ordering::Relaxed) {
        let resp = http
            .post(format!("{url}/v1/agent/poll"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::NO_CONTENT {
            continue;
        }
        let a: Assignment = resp.json().await.unwrap();
        assigned(&rv, a.run_id.clone(), Instant::now());
        let done = http
            .post(format!("{url}/v1/agent/runs/{}/finish", a.run_id))
            .bearer_auth(&token)
            .json(&json!({"status": "succeeded", "exit_code": 0, "error": null, "next_seq": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
    }
}

struct Measured {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    n: usize,
}

fn summarize(mut lat: Vec<Duration>, elapsed: Duration) -> Measured {
    lat.sort();
    let pick = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Measured {
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        n: lat.len(),
    }
}

/// `submitters` tasks each submit a run and wait until an agent holds it.
async fn dispatch_phase(env: &Env, rv: &Shared, submitters: usize, length: Duration) -> Measured {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..submitters {
        let (http, url, admin, rv) = (
            env.client(),
            env.url.clone(),
            env.admin.clone(),
            Arc::clone(rv),
        );
        let (counting, stop) = (Arc::clone(&counting), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let created: serde_json::Value = http
                    .post(format!("{url}/v1/runs"))
                    .bearer_auth(&admin)
                    .json(&json!({"target": "bench", "argv": ["true"]}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let at = wait_assigned(&rv, created["id"].as_str().unwrap()).await;
                if counting.load(Ordering::Relaxed) {
                    lat.push(at.duration_since(t0));
                }
            }
            lat
        }));
    }
    tokio::time::sleep(WARMUP).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(length).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    summarize(lat, elapsed)
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
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(length).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    summarize(lat, elapsed)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    let server = Server::bind(ServerConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token_file: Some(token_file.clone()),
        settings: Settings {
            max_agents_per_org: 1000,
            ..Settings::default()
        },
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let env = Env {
        url: format!("https://localhost:{}", server.local_addr().port()),
        ca: reqwest::Certificate::from_pem(&std::fs::read(server.ca_cert_path().unwrap()).unwrap())
            .unwrap(),
        admin: std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned(),
    };
    let (stop_server, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

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
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let enrollment = enrollment["token"].as_str().unwrap().to_owned();
    let key = sealrun_vault::TargetKeypair::generate()
        .public_key()
        .to_base64();

    let rv: Shared = Arc::default();
    let stop_agents = Arc::new(AtomicBool::new(false));
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let (http, token) = start_agent(&env, &enrollment, i, &key).await;
        agents.push(tokio::spawn(agent_loop(
            env.url.clone(),
            http,
            token,
            Arc::clone(&rv),
            Arc::clone(&stop_agents),
        )));
    }

    println!(
        "sealrun-api dispatch benchmark: {AGENTS} agents (no-op runtime), HTTPS on loopback, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>8}",
        "phase", "per sec", "p50", "p99", "n"
    );
    let mut rows = Vec::new();
    for (label, clients) in [("1 client", 1usize), ("16 clients", 16)] {
        let health = health_phase(&env, clients, Duration::from_secs(2)).await;
        let dispatch = dispatch_phase(&env, &rv, clients, Duration::from_secs(4)).await;
        for (name, m) in [
            (format!("baseline GET /health, {label}"), &health),
            (format!("submit -> assign, {label} in flight"), &dispatch),
        ] {
            println!(
                "{:<44} {:>10.0} {:>10} {:>10} {:>8}",
                name,
                m.per_sec,
                ms(m.p50),
                ms(m.p99),
                m.n
            );
        }
        rows.push((label, health, dispatch));
    }
    println!();
    for (label, health, dispatch) in &rows {
        println!(
            "{label}: dispatch rate = {:.2} x /health rate; p50 latency = {:.1} x /health p50",
            dispatch.per_sec / health.per_sec,
            dispatch.p50.as_secs_f64() / health.p50.as_secs_f64()
        );
    }

    stop_agents.store(true, Ordering::Relaxed);
    let _ = stop_server.send(());
    for a in agents {
        let _ = a.await;
    }
    serving.await.unwrap().unwrap();
}
