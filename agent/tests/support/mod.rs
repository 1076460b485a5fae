//! Helpers for the agent's tests against a real Docker engine: connect (or skip
//! loudly), make sure the local busybox image exists, build jobs, and collect a
//! run's redacted output in memory with the control plane's acknowledgement
//! semantics.
#![allow(dead_code, clippy::unwrap_used)]

use sealrun_agent::client::CallError;
use sealrun_agent::control::RunControl;
use sealrun_agent::docker::DockerRuntime;
use sealrun_agent::executor::{Job, Outcome, execute};
use sealrun_agent::runtime::Runtime;
use sealrun_agent::upload::LogSink;
use sealrun_vault::TargetKeypair;
use sealrun_wire::agent::{AssignedSecret, Assignment, FinishRequest, ResourceLimits};
use sealrun_wire::log::{LogChunk, LogUploadAck, StreamKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

pub const IMAGE: &str = "sealrun/busybox:latest";
pub const TARGET: &str = "test-target";

/// The Docker engine, or `None` after printing `SKIPPED: no Docker engine` (a
/// failure instead when `SEALRUN_REQUIRE_DOCKER` is set, as in CI).
pub async fn docker() -> Option<DockerRuntime> {
    let connected = match DockerRuntime::connect(None, &init_binary()).await {
        Ok(rt) => rt
            .client()
            .ping()
            .await
            .map(|_| rt)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match connected {
        Ok(rt) => {
            ensure_image();
            Some(rt)
        }
        Err(e) if std::env::var_os("SEALRUN_REQUIRE_DOCKER").is_some() => {
            panic!("SEALRUN_REQUIRE_DOCKER is set but no Docker engine answers: {e}")
        }
        Err(e) => {
            eprintln!("\n\n*** SKIPPED: no Docker engine ({e}) ***\n");
            None
        }
    }
}

/// The static `sealrun-init` shim, built by `scripts/build-init.sh` (a no-op
/// when it is up to date, as after `scripts/test.sh`'s build step).
pub fn init_binary() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-init.sh");
        let out = std::process::Command::new(script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(out.status.success(), "{script} failed: {:?}", out.status);
        let path = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        sealrun_agent::init::check(&path).unwrap();
        path
    })
    .clone()
}

/// Builds `sealrun/busybox:latest` locally (never pulled) if it is missing.
pub fn ensure_image() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/build-busybox-image.sh"
        );
        let status = std::process::Command::new(script).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "{IMAGE} is missing and {script} could not build it: {status:?}"
        );
    });
}

/// A unique agent id per test, so tests running in parallel never see (or
/// remove) each other's containers.
pub fn agent_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "test-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A job running `argv` in the busybox image with default limits.
pub fn job(argv: &[&str]) -> Job {
    let agent_id = agent_id();
    Job {
        assignment: Assignment {
            run_id: format!("run-{agent_id}"),
            target: TARGET.into(),
            image: IMAGE.into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: Default::default(),
            secrets: vec![],
            timeout_secs: 60,
            limits: ResourceLimits::default(),
            network: None,
            user: None,
        },
        agent_id,
        keypair: Arc::new(TargetKeypair::generate()),
        max_timeout: None,
        cancel_grace: Duration::from_millis(500),
        max_chunk_bytes: 64 * 1024,
    }
}

/// Adds a secret, sealed to the job's target key as the CLI would.
pub fn with_secret(mut job: Job, name: &str, value: &str) -> Job {
    let sealed =
        sealrun_vault::seal(&job.keypair.public_key(), name, TARGET, value.as_bytes()).unwrap();
    job.assignment.secrets.push(AssignedSecret {
        name: name.into(),
        sealed,
    });
    job
}

/// Stores chunks as the control plane does (idempotent by seq, no gaps). Uploads
/// wait for a permit while the sink is "stalled" (see [`MemorySink::stall`]).
#[derive(Default)]
pub struct MemorySink {
    pub chunks: Mutex<Vec<LogChunk>>,
    gate: Option<Arc<Semaphore>>,
}

impl MemorySink {
    pub fn new() -> Arc<MemorySink> {
        Arc::new(MemorySink::default())
    }

    /// A sink whose uploads block until [`Semaphore::add_permits`] is called on the
    /// returned gate: a control plane that stopped answering.
    pub fn stalled() -> (Arc<MemorySink>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (
            Arc::new(MemorySink {
                chunks: Mutex::default(),
                gate: Some(Arc::clone(&gate)),
            }),
            gate,
        )
    }

    pub fn stream(&self, kind: StreamKind) -> Vec<u8> {
        let chunks = self.chunks.lock().unwrap();
        chunks
            .iter()
            .filter(|c| c.stream == kind)
            .flat_map(|c| c.data.0.iter().copied())
            .collect()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stream(StreamKind::Stdout)).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stream(StreamKind::Stderr)).into_owned()
    }
}

impl LogSink for MemorySink {
    async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, CallError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
            gate.add_permits(1);
        }
        let mut stored = self.chunks.lock().unwrap();
        for c in chunks {
            if c.seq == stored.len() as u64 {
                stored.push(c.clone());
            }
        }
        Ok(LogUploadAck {
            next_seq: stored.len() as u64,
            truncated: false,
            cancel: false,
        })
    }
}

/// Runs `job` to its end and returns what would be reported, and the output.
pub async fn run(rt: &DockerRuntime, job: Job) -> (FinishRequest, Arc<MemorySink>) {
    let sink = MemorySink::new();
    let finish = run_with(rt, job, Arc::clone(&sink), RunControl::new()).await;
    (finish, sink)
}

pub async fn run_with(
    rt: &DockerRuntime,
    job: Job,
    sink: Arc<MemorySink>,
    control: RunControl,
) -> FinishRequest {
    let agent_id = job.agent_id.clone();
    let outcome = execute(rt, job, sink, control).await;
    assert_no_container_left(rt, &agent_id).await;
    match outcome {
        Outcome::Report(f) => f,
        Outcome::Abandoned => panic!("run was abandoned"),
    }
}

/// Starts `job` in the background and returns once its stdout contains `ready`.
pub async fn start_until(
    rt: &DockerRuntime,
    job: Job,
    ready: &str,
) -> (
    tokio::task::JoinHandle<FinishRequest>,
    Arc<MemorySink>,
    RunControl,
) {
    let sink = MemorySink::new();
    let control = RunControl::new();
    let task = {
        let (rt, sink, control) = (rt.clone(), Arc::clone(&sink), control.clone());
        tokio::spawn(async move { run_with(&rt, job, sink, control).await })
    };
    let probe = Arc::clone(&sink);
    wait_until(30, ready, || probe.stdout().contains(ready)).await;
    (task, sink, control)
}

/// Asserts that no container labeled with `agent_id` exists any more.
pub async fn assert_no_container_left(rt: &DockerRuntime, agent_id: &str) {
    let left = rt.list(agent_id).await.unwrap();
    assert!(
        left.is_empty(),
        "containers left behind by {agent_id}: {left:?}"
    );
}

/// Waits until `cond` holds, polling every 20 ms, for at most `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
