//! End-to-end figures of the agent, through the real `sealrun server` and
//! `sealrun agent` processes and the real Docker engine:
//!
//! 1. latency of one run of `true`, submit -> terminal status (followed log),
//!    against plain `docker run --rm sealrun/busybox:latest true`, interleaved in
//!    the same process so both see the same machine; reports the ratio (goal <= 1.10);
//! 2. streaming throughput of a command printing 256 MiB (goal >= 100 MB/s
//!    stored), and the agent's peak RSS meanwhile (VmHWM, goal < 64 MB);
//! 3. the idle agent's RSS (goal < 15 MB);
//! 4. input throughput: a 256 MiB file piped into `sealrun run -- sh -c 'cat
//!    >/dev/null'`, against the same file into `docker run -i --rm`.
//!
//! Run: `cargo bench -p sealrun --bench agent_e2e` (optionally `-- --runs 30`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use sealrun_testkit::{ControlPlane as _, SpawnedWorld, World, WorldOptions, require_docker};
use sealrun_wire::run::RunStatus;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STREAM_BYTES: u64 = 256 * 1024 * 1024;

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p90 = samples[(samples.len() * 9 / 10).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (median, mean, p90)
}

fn docker_run_true() -> Duration {
    let start = Instant::now();
    let ok = Command::new("docker")
        .args(["run", "--rm", sealrun_testkit::IMAGE, "true"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "docker run failed");
    start.elapsed()
}

fn docker_stream(script: &str) -> Duration {
    let start = Instant::now();
    let ok = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--log-driver",
            "none",
            "-a",
            "stdout",
            sealrun_testkit::IMAGE,
            "sh",
            "-c",
            script,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "docker run failed");
    start.elapsed()
}

/// How long `docker run -i --rm` takes to read `input` to its end.
fn docker_input(input: &std::path::Path) -> Duration {
    let start = Instant::now();
    let ok = Command::new("docker")
        .args([
            "run",
            "-i",
            "--rm",
            "--log-driver",
            "none",
            sealrun_testkit::IMAGE,
            "sh",
            "-c",
            "cat >/dev/null",
        ])
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "docker run -i failed");
    start.elapsed()
}

/// How long `sealrun run` takes to hand `input` to a command that reads it
/// to its end, and the bytes recorded as relayed.
fn sealrun_input(world: &SpawnedWorld, input: &std::path::Path) -> Duration {
    let cli = world.server.cli(world.server.admin_token());
    let start = Instant::now();
    let out = cli
        .command(&[
            "run",
            "--target",
            &world.target,
            "--",
            "sh",
            "-c",
            "cat >/dev/null",
        ])
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

async fn sealrun_true(world: &SpawnedWorld) -> Duration {
    let start = Instant::now();
    let id = world.submit(&["true"]).await;
    let end = world.admin.follow(&id).await;
    let elapsed = start.elapsed();
    assert_eq!(end.status, RunStatus::Succeeded);
    elapsed
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    if !require_docker() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let options = WorldOptions {
            server_args: vec!["--max-log-bytes".into(), (2 * STREAM_BYTES).to_string()],
            ..Default::default()
        };
        let world = World::spawned_with(options).await;
        let agent_pid = world.agent.pid();

        // 3. Idle RSS first, before any run has grown the heap.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (idle_rss, idle_hwm) = memory_kib(agent_pid);

        // 1. Latency, interleaved, after one warm-up of each.
        docker_run_true();
        sealrun_true(&world).await;
        let (mut docker, mut sealrun) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            docker.push(tokio::task::block_in_place(docker_run_true));
            sealrun.push(sealrun_true(&world).await);
        }
        let (d_med, d_mean, d_p90) = stats(docker);
        let (s_med, s_mean, s_p90) = stats(sealrun);

        // 2. Streaming: 256 MiB of log-like text (no secrets to mask).
        let script = format!("yes 'INFO 2026-01-01T00:00:00Z request handled path=/api/v1/items status=200' | head -c {STREAM_BYTES}");
        let start = Instant::now();
        let id = world.submit(&["sh", "-c", &script]).await;
        // Polled, not followed: a follower would make the server send the 256 MiB
        // back out while it stores them.
        let run = world.admin.wait_terminal(&id).await;
        let elapsed = start.elapsed();
        assert_eq!(run.status, RunStatus::Succeeded);
        let stored = world.admin.run(&id).await.log_bytes;
        assert_eq!(stored, STREAM_BYTES, "not every byte was stored");
        let (_, stream_hwm) = memory_kib(agent_pid);
        let mb_per_s = STREAM_BYTES as f64 / 1e6 / elapsed.as_secs_f64();
        // Baseline in the same run: the same output through `docker run -a
        // stdout` into /dev/null, i.e. what Docker's attach stream alone gives.
        let docker_elapsed = tokio::task::block_in_place(|| docker_stream(&script));
        let docker_mb_per_s = STREAM_BYTES as f64 / 1e6 / docker_elapsed.as_secs_f64();

        // 4. Input: the same file through each, alternating, best of three.
        let input = world.dir.path().join("input.bin");
        {
            use std::io::Write as _;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
            let line = b"INSERT INTO items VALUES (42, 'a row of a migration file', now());\n";
            let mut written = 0u64;
            while written < STREAM_BYTES {
                let n = line.len().min((STREAM_BYTES - written) as usize);
                f.write_all(&line[..n]).unwrap();
                written += n as u64;
            }
        }
        let (mut d_in, mut s_in) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            d_in = d_in.min(tokio::task::block_in_place(|| docker_input(&input)));
            s_in = s_in.min(tokio::task::block_in_place(|| sealrun_input(&world, &input)));
        }
        let in_mb = |d: Duration| STREAM_BYTES as f64 / 1e6 / d.as_secs_f64();

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("agent_e2e ({runs} interleaved runs each; Docker engine {})", docker_version());
        println!("  docker run --rm {} true : median {:7.1} ms  mean {:7.1} ms  p90 {:7.1} ms", sealrun_testkit::IMAGE, ms(d_med), ms(d_mean), ms(d_p90));
        println!("  sealrun submit -> end (true)         : median {:7.1} ms  mean {:7.1} ms  p90 {:7.1} ms", ms(s_med), ms(s_mean), ms(s_p90));
        println!("  ratio sealrun / docker run            : median {:.3}x  mean {:.3}x  (goal <= 1.10x)", ms(s_med) / ms(d_med), ms(s_mean) / ms(d_mean));
        println!("  streaming 256 MiB stored              : {:.2} s, {mb_per_s:.0} MB/s (goal >= 100 MB/s)", elapsed.as_secs_f64());
        println!("  docker run -a stdout, same 256 MiB    : {:.2} s, {docker_mb_per_s:.0} MB/s; sealrun / docker = {:.2}x", docker_elapsed.as_secs_f64(), mb_per_s / docker_mb_per_s);
        println!("  agent peak RSS (VmHWM) after stream   : {:.1} MB (goal < 64 MB)", stream_hwm as f64 / 1024.0);
        println!("  idle agent RSS (VmRSS / VmHWM)        : {:.1} MB / {:.1} MB (goal < 15 MB)", idle_rss as f64 / 1024.0, idle_hwm as f64 / 1024.0);
        println!("  input 256 MiB, sealrun run < file     : {:.2} s, {:.0} MB/s (best of 3)", s_in.as_secs_f64(), in_mb(s_in));
        println!("  input 256 MiB, docker run -i < file   : {:.2} s, {:.0} MB/s; sealrun / docker = {:.2}x", d_in.as_secs_f64(), in_mb(d_in), in_mb(s_in) / in_mb(d_in));
    });
}

fn docker_version() -> String {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
