//! The web console's runs list with 10,000 runs in the store: server time
//! (the `Server-Timing` the console sets, the handler's time from request to
//! response) and wall time of `GET /ui/runs`, unfiltered (the newest 50) and
//! with filters that match nothing (the worst case: every run is looked at),
//! against the same listing as JSON (`GET /v1/runs?limit=51`, what the page
//! reads) measured in the same run; and the page weight: the HTML of the
//! list and every asset a console page loads.
//!
//! `cargo bench -p sealrun-api --bench console` (about 30 s: filling the
//! store is most of it). Goal (issue 17): under 100 ms server time; no page
//! loads more than 100 KB of assets.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use sealrun_testkit::console::Console;
use sealrun_testkit::{ControlPlane as _, InProcessServer};
use std::time::{Duration, Instant};

const RUNS: usize = 10_000;
const REQUESTS: usize = 300;

/// p50 and p99 of `REQUESTS` sequential requests: (server time, wall time).
async fn measure<F, Fut>(mut get: F) -> ((Duration, Duration), (Duration, Duration))
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Option<Duration>, usize)>,
{
    for _ in 0..30 {
        get().await;
    }
    let (mut server, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let (timing, _) = get().await;
        wall.push(started.elapsed());
        if let Some(t) = timing {
            server.push(t);
        }
    }
    let pct = |v: &mut Vec<Duration>| {
        v.sort();
        if v.is_empty() {
            (Duration::ZERO, Duration::ZERO)
        } else {
            (v[v.len() / 2], v[v.len() * 99 / 100])
        }
    };
    (pct(&mut server), pct(&mut wall))
}

/// The duration in a `Server-Timing: app;dur=MS` header.
fn server_timing(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get("server-timing")?.to_str().ok()?;
    let ms: f64 = v.split("dur=").nth(1)?.parse().ok()?;
    Some(Duration::from_secs_f64(ms / 1000.0))
}

fn ms(d: Duration) -> String {
    format!("{:7.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = InProcessServer::start().await;
    server.admin().declare_target("db").await;
    let filling = Instant::now();
    server.submit_many("db", RUNS, 32).await;
    println!(
        "filled {RUNS} runs in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut console = Console::new(&server.url, &server.ca_cert);
    console.sign_in(&server.admin_token).await;

    let mut rows = Vec::new();
    for (label, path) in [
        ("/ui/runs (newest 50)", "/ui/runs"),
        (
            "/ui/runs?submitter=nobody (scans all)",
            "/ui/runs?submitter=nobody",
        ),
        (
            "/ui/runs?status=failed&target=db",
            "/ui/runs?status=failed&target=db",
        ),
    ] {
        let c = console.clone();
        let result = measure(|| {
            let c = c.clone();
            async move {
                let page = c.get(path).await;
                assert_eq!(page.status, reqwest::StatusCode::OK);
                (server_timing(&page.headers), page.text.len())
            }
        })
        .await;
        rows.push((label, result));
    }
    // Baseline: the same listing as JSON, wall time (no Server-Timing there).
    let (http, url, token) = (
        server.http.clone(),
        format!("{}/v1/runs?limit=51", server.url),
        server.admin_token.clone(),
    );
    let json = measure(|| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
            let len = r.bytes().await.unwrap().len();
            (None, len)
        }
    })
    .await;

    println!("{REQUESTS} sequential requests each, {RUNS} runs in the store (release build):");
    println!(
        "  {:<40} {:>22} {:>22}",
        "", "server p50 / p99", "wall p50 / p99"
    );
    for (label, ((sp50, sp99), (wp50, wp99))) in &rows {
        println!(
            "  {label:<40} {} {} {} {}",
            ms(*sp50),
            ms(*sp99),
            ms(*wp50),
            ms(*wp99)
        );
    }
    let ((_, _), (jp50, jp99)) = json;
    println!(
        "  {:<40} {:>22} {} {}",
        "GET /v1/runs?limit=51 (JSON baseline)",
        "",
        ms(jp50),
        ms(jp99)
    );
    let ((_, _), (wp50, _)) = rows[0].1;
    println!(
        "  /ui/runs wall p50 over the JSON listing's: {:.2}x",
        wp50.as_secs_f64() / jp50.as_secs_f64()
    );

    let html = console.get("/ui/runs").await.text.len();
    let css = console.get("/ui/assets/console.css").await.text.len();
    let js = console.get("/ui/assets/console.js").await.text.len();
    println!(
        "page weight: /ui/runs HTML {:.1} KB (50 runs); assets every page loads: console.css {:.1} KB + console.js {:.1} KB = {:.1} KB (limit 100 KB)",
        html as f64 / 1000.0,
        css as f64 / 1000.0,
        js as f64 / 1000.0,
        (css + js) as f64 / 1000.0
    );
}
