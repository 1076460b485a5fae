//! `/metrics` costs the same whatever the number of runs: a real control
//! plane (in process, over loopback) scraped on its metrics address with
//! 1,000 runs in its store, then again with 100,000. The run counts are
//! kept by the store as runs change status, so a scrape reads a handful of
//! rows instead of scanning `runs`.
//!
//! Reports the p50 and p99 scrape latency at each size and their ratio
//! (100k over 1k: the baseline is the same scrape, measured in the same run,
//! on the smaller store), next to `GET /health` on the same address at each
//! size (the floor: the same HTTP round trip, answering from a cached
//! verdict). A scan of the runs table would grow a hundredfold.
//!
//! `cargo bench -p sealrun-api --bench metrics` (about a minute: filling the
//! store is most of it).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use sealrun_api::{MetricsAccess, ServerConfig, Settings};
use sealrun_testkit::{ControlPlane as _, InProcessServer};
use std::time::{Duration, Instant};

const SMALL: usize = 1_000;
const LARGE: usize = 100_000;
const SCRAPES: usize = 2_000;
const SUBMITTERS: usize = 32;

/// Submits runs until the store holds `total`.
async fn fill_to(server: &InProcessServer, already: usize, total: usize) {
    server.submit_many("db", total - already, SUBMITTERS).await;
}

/// p50 and p99 of `SCRAPES` sequential GETs of `url` (after some to warm
/// up); checks each answer contains `expected`.
async fn measure(url: &str, expected: &str) -> (Duration, Duration) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        client.get(url).send().await.unwrap().text().await.unwrap();
    }
    let mut times = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let text = client.get(url).send().await.unwrap().text().await.unwrap();
        times.push(started.elapsed());
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    times.sort();
    (times[SCRAPES / 2], times[SCRAPES * 99 / 100])
}

/// `/health` (the floor), then `/metrics` counting `runs` queued runs.
async fn phase(base: &str, runs: usize) -> [(Duration, Duration); 2] {
    // Let the writes of the filling settle (the last fsyncs, the sweeper).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = measure(&format!("{base}/health"), "ok").await;
    let queued = format!("sealrun_runs{{status=\"queued\"}} {runs}\n");
    let metrics = measure(&format!("{base}/metrics"), &queued).await;
    [health, metrics]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let port = sealrun_testkit::free_port();
    let server = InProcessServer::start_config(ServerConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        org_name: "acme".into(),
        admin_token_file: Some(dir.path().join("admin.token")),
        // The default sweep interval (1 s), as a deployed server runs.
        settings: Settings::default(),
        metrics: MetricsAccess {
            listen: Some(([127, 0, 0, 1], port).into()),
            ..MetricsAccess::default()
        },
        ..ServerConfig::default()
    })
    .await;
    server.admin().declare_target("db").await;
    let base = format!("http://127.0.0.1:{port}");

    let filling = Instant::now();
    fill_to(&server, 0, SMALL).await;
    let secs = filling.elapsed().as_secs_f64();
    println!("filled {SMALL} runs in {secs:.1} s");
    let small = phase(&base, SMALL).await;

    let filling = Instant::now();
    fill_to(&server, SMALL, LARGE).await;
    let secs = filling.elapsed().as_secs_f64();
    println!("filled {LARGE} runs in {secs:.1} s");
    let large = phase(&base, LARGE).await;

    println!("latency of {SCRAPES} sequential requests on the metrics address:");
    for (what, i) in [("/health (floor)", 0), ("/metrics", 1)] {
        for (runs, (p50, p99)) in [(SMALL, small[i]), (LARGE, large[i])] {
            println!(
                "  {what:<16} {runs:>7} runs: p50 {}  p99 {}",
                ms(p50),
                ms(p99)
            );
        }
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  /metrics, {LARGE} runs over {SMALL} runs: p50 {:.2}x  p99 {:.2}x",
        ratio(large[1].0, small[1].0),
        ratio(large[1].1, small[1].1)
    );
    server.stop().await;
}
