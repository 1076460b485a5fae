//! Input benchmark: how fast a run's piped input reaches its agent, through
//! one control plane (SQLite; PostgreSQL) and between two replicas of one
//! PostgreSQL database (sent to one, read from the other: sealed, passed
//! through the database, opened), in the same run.
//!
//! Each pass sends 64 MiB in 64 KiB chunks (as `sealrun run` does) to
//! `PUT /v1/runs/{id}/stdin` while an in-process agent reads
//! `GET /v1/agent/runs/{id}/stdin` to its end, over HTTPS on loopback; it
//! is timed from the first byte sent to the last read. Reports the median
//! MiB/s of three passes (after one to warm up), and each as a ratio of the
//! single control plane on SQLite. The PostgreSQL phases need
//! `SEALRUN_TEST_DATABASE_URL` (see `testkit/src/postgres.rs`).
//!
//! `cargo bench -p sealrun-api --bench input`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use sealrun_api::Settings;
use sealrun_testkit::{ControlPlane as _, FakeAgent, InProcessServer, run_request};
use sealrun_wire::run::RunStatus;
use std::time::{Duration, Instant};

const SIZE: usize = 64 << 20;
const CHUNK: usize = 64 << 10;
const PASSES: usize = 3;

/// One pass: a run submitted through `feeder`, its input sent there, read
/// by `agent` (connected wherever it is).
async fn pass(feeder: &InProcessServer, target: &str, agent: &FakeAgent) -> Duration {
    let admin = feeder.admin();
    let mut request = run_request(target, &["cat"]);
    request.stdin = true;
    let id = admin.submit_request(&request).await;
    assert_eq!(agent.next_run().await.run_id, id);
    let chunks = (0..SIZE / CHUNK).map(|i| Ok::<_, std::io::Error>(vec![i as u8; CHUNK]));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let path = format!("/v1/runs/{id}/stdin");
    let start = Instant::now();
    let (sent, (_, read)) = tokio::join!(admin.put_body(&path, body), agent.read_stdin(&id));
    let took = start.elapsed();
    sent.ok();
    assert_eq!(read.unwrap().len(), SIZE, "the input arrived whole");
    agent
        .finish(&id, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    took
}

/// The median rate of [`PASSES`] passes, in MiB/s, on a target of its own
/// (`name`, served by an agent of that name connected to `reader`).
async fn phase(feeder: &InProcessServer, reader: &InProcessServer, name: &str) -> f64 {
    feeder.admin().declare_target(name).await;
    let agent = FakeAgent::enroll(reader, &reader.admin(), name, &[name]).await;
    pass(feeder, name, &agent).await;
    let mut rates = Vec::new();
    for _ in 0..PASSES {
        let took = pass(feeder, name, &agent).await;
        rates.push(SIZE as f64 / (1 << 20) as f64 / took.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[PASSES / 2]
}

fn row(label: &str, rate: f64, baseline: f64) {
    println!("| {label} | {rate:.1} | {:.2}x |", rate / baseline);
}

#[tokio::main]
async fn main() {
    println!(
        "sealrun-api input benchmark: {} MiB piped into a run and read by its agent, HTTPS on loopback, {} CPUs",
        SIZE >> 20,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| phase | MiB/s (median of {PASSES}) | / SQLite |");
    println!("|---|---:|---:|");
    let sqlite = InProcessServer::start_with(Settings::default()).await;
    let baseline = phase(&sqlite, &sqlite, "sqlite").await;
    sqlite.stop().await;
    row("SQLite, one control plane", baseline, baseline);
    let Some(first) = InProcessServer::start_on_postgres(Settings::default()).await else {
        println!("PostgreSQL: not measured (set SEALRUN_TEST_DATABASE_URL to a cluster)");
        return;
    };
    let one = phase(&first, &first, "one-replica").await;
    row("PostgreSQL, one replica", one, baseline);
    let dir = tempfile::tempdir().unwrap();
    let second = first
        .start_replica(dir.path(), Settings::default())
        .await
        .unwrap();
    let two = phase(&first, &second, "two-replicas").await;
    row(
        "PostgreSQL, two replicas (sent to one, read from the other)",
        two,
        baseline,
    );
    second.stop().await;
    first.stop().await;
}
