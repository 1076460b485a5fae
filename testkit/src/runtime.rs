//! The agent's executor against the real Docker engine, with no control
//! plane: jobs in the base image, and a [`MemorySink`] that stores a run's
//! redacted output with the control plane's acknowledgement semantics.

use crate::docker::{IMAGE, require_docker};
use crate::wait::wait_until;
use sealrun_agent::client::CallError;
use sealrun_agent::control::RunControl;
use sealrun_agent::docker::DockerRuntime;
use sealrun_agent::executor::{Job, Outcome, execute};
use sealrun_agent::runtime::Runtime as _;
use sealrun_agent::upload::LogSink;
use sealrun_vault::TargetKeypair;
use sealrun_wire::agent::{AssignedSecret, Assignment, FinishRequest, ResourceLimits};
use sealrun_wire::log::{LogChunk, LogUploadAck, StreamKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The target every [`job`] runs on.
pub const TARGET: &str = "test-target";

/// The agent's Docker runtime with the kit's static shim, or `None` when
/// [`require_docker`] says to skip.
pub async fn docker_runtime() -> Option<DockerRuntime> {
    if !require_docker() {
        return None;
    }
    let rt = DockerRuntime::connect(None, crate::init_binary())
        .await
        .unwrap_or_else(|e| panic!("the Docker engine answered, then refused the agent: {e}"));
    Some(rt)
}

/// A unique agent id per test, so tests running in parallel never see (or
/// remove) each other's containers.
pub fn unique_agent_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .subsec_nanos();
    format!(
        "test-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A job running `argv` in [`IMAGE`] on [`TARGET`] with default limits, a
/// 60 s timeout, a 500 ms cancel grace and a fresh agent id and keypair.
pub fn job(argv: &[&str]) -> Job {
    let agent_id = unique_agent_id();
    Job {
        assignment: Assignment {
            run_id: format!("run-{agent_id}"),
            target: TARGET.into(),
            image: IMAGE.into(),
            allowed_images: vec![IMAGE.into()],
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: Default::default(),
            secrets: vec![],
            timeout_secs: 60,
            limits: ResourceLimits::default(),
            network: None,
            user: None,
            stdin: false,
            authority: None,
        },
        agent_id,
        keypair: Arc::new(TargetKeypair::generate()),
        max_timeout: None,
        cancel_grace: Duration::from_millis(500),
        max_chunk_bytes: 64 * 1024,
        input: None,
        allowed_images: None,
        pool: None,
    }
}

/// The job, in `image`, which its target then allows too (a job's target
/// allows only [`IMAGE`]).
pub fn in_image(mut job: Job, image: &str) -> Job {
    job.assignment.image = image.to_owned();
    job.assignment.allowed_images.push(image.to_owned());
    job
}

/// Adds a secret, sealed to the job's target key as the CLI would.
pub fn with_secret(mut job: Job, name: &str, value: &str) -> Job {
    let sealed = sealrun_vault::seal(&job.keypair.public_key(), name, TARGET, value.as_bytes())
        .expect("sealing succeeds");
    job.assignment.secrets.push(AssignedSecret {
        name: name.into(),
        sealed,
    });
    job
}

/// Stores chunks as the control plane does (idempotent by seq, no gaps).
/// Uploads wait for a permit while the sink is stalled (see
/// [`MemorySink::stalled`]).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// The stored chunks, in order.
    pub chunks: Mutex<Vec<LogChunk>>,
    gate: Option<Arc<Semaphore>>,
}

impl MemorySink {
    /// An empty sink that stores every upload at once.
    pub fn new() -> Arc<MemorySink> {
        Arc::new(MemorySink::default())
    }

    /// A sink whose uploads block until [`Semaphore::add_permits`] is called
    /// on the returned gate: a control plane that stopped answering.
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

    /// The stored bytes of one stream.
    pub fn stream(&self, kind: StreamKind) -> Vec<u8> {
        let chunks = self.chunks.lock().expect("the sink's lock");
        chunks
            .iter()
            .filter(|c| c.stream == kind)
            .flat_map(|c| c.data.0.iter().copied())
            .collect()
    }

    /// The stored stdout, as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stream(StreamKind::Stdout)).into_owned()
    }

    /// The stored stderr, as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stream(StreamKind::Stderr)).into_owned()
    }
}

impl LogSink for MemorySink {
    async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, CallError> {
        if let Some(gate) = &self.gate {
            gate.acquire()
                .await
                .expect("the gate is never closed")
                .forget();
            gate.add_permits(1);
        }
        let mut stored = self.chunks.lock().expect("the sink's lock");
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

/// Runs `job` to its end with `sink` and `control`; asserts that no container
/// of the job is left, and returns what would be reported.
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
    let left = rt
        .list(agent_id)
        .await
        .unwrap_or_else(|e| panic!("listing the containers of {agent_id}: {e}"));
    assert!(
        left.is_empty(),
        "containers left behind by {agent_id}: {left:?}"
    );
}
