//! One run, from assignment to outcome: open its secrets, build its redactor,
//! create its container, stream its output, stop it when told to or when it
//! runs out of time, remove it whatever happens, and say how it ended.
//!
//! ```text
//! open secrets ─▶ redactor ─▶ pull image ─▶ bundle ─▶ warm unit, or prepare one ─▶ attach+deliver ─▶ wait ─┬─▶ output drained ─▶ remove ∥ uploads acked ─▶ outcome
//!                                                         │               │
//!                                   timeout / cancel: SIGTERM, grace, SIGKILL
//!                                   shutdown / failure / abandon: SIGKILL
//! ```
//!
//! Every string this module reports about a run goes through the run's redactor
//! first: an image-pull error that quotes a registry token is masked like output.

use crate::control::{RunControl, Stop, is_abandoned};
use crate::output::{self, PumpEnd, redact_message};
use crate::pool::Pool;
use crate::runtime::{
    CommandInput, ContainerId, ExitState, RunSpec, Runtime, Shape, Started, StdinBundle,
    StopSignal, UnitSpec,
};
use crate::upload::{LogSink, UploadEnd, upload_all};
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sealrun_init::{EXIT_INIT_FAILED, EXIT_NOT_FOUND, ShimNonce};
use sealrun_redactor::Redactor;
use sealrun_vault::{Secret, TargetKeypair};
use sealrun_wire::agent::{Assignment, FinishRequest};
use sealrun_wire::run::Redactions;
use sealrun_wire::run::RunStatus;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Output held between the container and the uploader, at most (the bound that
/// turns a slow control plane into backpressure on the command).
pub const CHANNEL_BYTES: usize = 4 * 1024 * 1024;

/// How long past a run's timeout and stop grace its container ends itself
/// (the shim's deadline) and may be swept by any agent on the engine: long
/// enough that a live agent always stops the run first, and reports it as
/// timed out.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// How long the shim of a unit prepared for one run waits for its bundle:
/// the executor delivers it right after, so only a dead agent leaves it
/// waiting this long.
pub const COLD_IDLE: Duration = Duration::from_secs(120);

/// Everything needed to execute one assignment.
pub struct Job {
    /// The assignment as the control plane sent it.
    pub assignment: Assignment,
    /// This agent's id (labels the container).
    pub agent_id: String,
    /// The keypair of the assignment's target.
    pub keypair: Arc<TargetKeypair>,
    /// Agent-side cap on the run's timeout.
    pub max_timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when canceling or timing out.
    pub cancel_grace: Duration,
    /// Largest chunk of output the control plane accepts.
    pub max_chunk_bytes: usize,
    /// The run's input, for a run given some: opened once the command has
    /// started, and written to its stdin after the bundle.
    pub input: Option<OpenInput>,
    /// The images this agent's configuration allows for the target, if it
    /// restricts them ([`crate::TargetConfig::allowed_images`]): checked on
    /// top of the target's list the assignment carries.
    pub allowed_images: Option<Vec<String>>,
    /// The agent's warm pools, if it keeps any: a run of the target's own
    /// image takes a ready unit from its target's pool.
    pub pool: Option<Arc<Pool>>,
}

/// The run's input as it arrives: chunks in order, or why it broke off.
pub type InputStream = BoxStream<'static, Result<Bytes, String>>;

/// Opens the run's input (for the agent: the request to the control plane),
/// called once the command has started.
pub type OpenInput =
    Box<dyn FnOnce() -> BoxFuture<'static, Result<InputStream, String>> + Send + Sync>;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("run_id", &self.assignment.run_id)
            .field("target", &self.assignment.target)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// The run's timeout after the agent-side cap.
    pub fn timeout(&self) -> Duration {
        let asked = Duration::from_secs(self.assignment.timeout_secs);
        self.max_timeout.map_or(asked, |cap| asked.min(cap))
    }
}

/// How a run ended, from the agent's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Report this to the control plane.
    Report(FinishRequest),
    /// The run was abandoned: report nothing (the control plane would refuse it).
    Abandoned,
}

impl Outcome {
    /// An `error` outcome with `message` (already redacted by the caller).
    pub fn error(message: String, next_seq: u64) -> Outcome {
        Outcome::Report(FinishRequest {
            status: RunStatus::Error,
            exit_code: None,
            error: Some(message),
            oom_killed: false,
            next_seq,
            redactions: Redactions::default(),
            report: None,
        })
    }
}

/// Opens every secret of the assignment with the target's key. Errors name the
/// secret and say why; they never contain a value.
fn open_secrets(keypair: &TargetKeypair, a: &Assignment) -> Result<Vec<(String, Secret)>, String> {
    let mut seen = HashSet::new();
    let mut opened = Vec::with_capacity(a.secrets.len());
    for s in &a.secrets {
        if !seen.insert(s.name.as_str()) {
            return Err(format!("secret {} is assigned twice", s.name));
        }
        if a.env.contains_key(&s.name) {
            return Err(format!(
                "{} is both a secret and a plain environment variable",
                s.name
            ));
        }
        let secret = sealrun_vault::open(keypair, &s.name, &a.target, &s.sealed)
            .map_err(|e| format!("secret {} could not be opened: {e}", s.name))?;
        opened.push((s.name.clone(), secret));
    }
    Ok(opened)
}

fn build_redactor(secrets: &[(String, Secret)]) -> Result<Redactor, String> {
    if secrets.is_empty() {
        return Ok(Redactor::empty());
    }
    Redactor::new(secrets.iter().map(|(_, s)| s.expose())).map_err(|e| {
        // The redactor's errors describe the rule (e.g. a minimum length), never the value.
        let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
        format!("cannot mask secrets ({}): {e}", names.join(", "))
    })
}

/// Whether the run's image is allowed: by the target's list the assignment
/// carries (which the control plane also checked at submit), and by this
/// agent's own list for the target when it has one. `Err` says which refused.
fn check_image(a: &Assignment, own: Option<&[String]>) -> Result<(), String> {
    use sealrun_wire::image::allows;
    let image = &a.image;
    if a.allowed_images.is_empty() {
        return Err(format!(
            "image {image} refused: the control plane sent no allowed images for target {} (is it older than this agent?); nothing was pulled",
            a.target
        ));
    }
    if !allows(&a.allowed_images, image).map_err(|e| e.to_string())? {
        return Err(format!(
            "image {image} is not allowed on target {}: it allows {}; nothing was pulled",
            a.target,
            a.allowed_images.join(", ")
        ));
    }
    if let Some(own) = own {
        if !allows(own, image).map_err(|e| e.to_string())? {
            return Err(format!(
                "image {image} is not allowed on target {} by this agent's configuration (allowed_images: {}); nothing was pulled",
                a.target,
                own.join(", ")
            ));
        }
    }
    Ok(())
}

/// What the control plane wants reported if a stop was requested before the
/// container exists.
fn early_outcome(control: &RunControl) -> Option<Outcome> {
    let status = |status| {
        Some(Outcome::Report(FinishRequest {
            status,
            exit_code: None,
            error: None,
            oom_killed: false,
            next_seq: 0,
            redactions: Redactions::default(),
            report: None,
        }))
    };
    match control.current()? {
        Stop::Cancel => status(RunStatus::Canceled),
        // Nobody requests a timeout from outside today; were one requested, it
        // would be reported as what it says.
        Stop::Timeout => status(RunStatus::TimedOut),
        Stop::Shutdown => Some(Outcome::error(
            "the agent shut down before the command started".into(),
            0,
        )),
        Stop::Fail(message) => Some(Outcome::error(message, 0)),
        Stop::Abandon => Some(Outcome::Abandoned),
    }
}

/// Executes `job` on `runtime`, streaming its redacted output to `sink`, and
/// returns how it ended. Never panics and never leaves the container behind.
pub async fn execute<R: Runtime, S: LogSink>(
    runtime: &R,
    mut job: Job,
    sink: Arc<S>,
    control: RunControl,
) -> Outcome {
    let input = job.input.take();
    let a = &job.assignment;
    let began = Instant::now();
    if let Some(outcome) = early_outcome(&control) {
        return outcome;
    }
    let secrets = match open_secrets(&job.keypair, a) {
        Ok(s) => s,
        Err(message) => return Outcome::error(message, 0),
    };
    let redactor = match build_redactor(&secrets) {
        Ok(r) => Arc::new(r),
        Err(message) => return Outcome::error(message, 0),
    };
    let redact = |message: String| redact_message(&redactor, &message);

    // Before anything is pulled: a name the target (or this agent) does not
    // allow could make the engine dial any host (`10.0.0.5:6379/x`).
    if let Err(message) = check_image(a, job.allowed_images.as_deref()) {
        return Outcome::error(redact(message), 0);
    }
    // A pull can take long: a cancel, shutdown or abandonment must not wait for it.
    let mut stop = control.subscribe();
    let pulled = tokio::select! {
        r = runtime.ensure_image(&a.image) => Some(r),
        _ = stop.wait_for(Option::is_some) => None,
    };
    if let Some(outcome) = early_outcome(&control) {
        return outcome;
    }
    let imaged = Instant::now();
    let image_id = match pulled {
        Some(Ok(id)) => id,
        Some(Err(e)) => return Outcome::error(redact(e.to_string()), 0),
        // Only a stop ends the select early, and `early_outcome` saw it.
        None => return Outcome::error("the run was stopped before its image was ready".into(), 0),
    };
    // Drawn per run: the shim signs its error line with it, and a command
    // cannot (see `sealrun_init::ShimNonce`).
    let nonce = {
        use rand::RngCore as _;
        let mut bytes = [0u8; sealrun_init::NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ShimNonce::from_bytes(bytes)
    };
    let deadline = job.timeout() + job.cancel_grace + DEADLINE_MARGIN;
    let run = RunSpec {
        argv: a.argv.clone(),
        env: a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        secrets,
        stdin: input.is_some(),
        deadline,
        nonce: nonce.clone(),
    };
    // The opened secrets go into the bundle and are dropped (zeroized): this
    // task holds their only copy until `deliver` writes it to the unit.
    let bundle = match run.bundle() {
        Ok(bundle) => bundle,
        Err(e) => return Outcome::error(redact(e.to_string()), 0),
    };
    let shape = Shape {
        image_id,
        limits: a.limits.clone(),
        network: a.network.clone(),
        user: a.user.clone(),
    };
    // Only runs of the target's own image (the first of the allowed ones)
    // use, and shape, the target's pool: a per-run image gets a cold unit.
    // `_refill` refills the pool when this function returns: after the run.
    let (warm, _refill) = match job.pool.as_ref() {
        Some(pool) if a.allowed_images.first() == Some(&a.image) => {
            pool.take(&a.target, &shape, deadline)
        }
        _ => (None, None),
    };
    // A member can have stopped since it was made (an engine restart, a
    // `docker kill`): it would end the run before its command starts. One
    // inspect, then a cold unit instead.
    let warm = match warm {
        Some(id) if runtime.is_running(&id).await => Some(id),
        Some(id) => {
            tracing::warn!(run = %a.run_id, container = %id, "a pool member was no longer running; removing it and preparing a container for the run");
            if let Err(e) = runtime.remove(&id).await {
                tracing::error!(container = %id, error = %e, "could not remove a stopped pool member; it will be removed when the agent restarts");
            }
            None
        }
        None => None,
    };
    let warmed = warm.is_some();
    let id = match warm {
        Some(id) => {
            tracing::info!(run = %a.run_id, container = %id, "took a warm container from the pool");
            id
        }
        None => {
            let unit = UnitSpec {
                shape,
                agent_id: job.agent_id.clone(),
                run_id: Some(a.run_id.clone()),
                pool: None,
                idle: COLD_IDLE,
                // Its run is delivered right after it is prepared: the run's
                // deadline is the unit's (an agent that died before
                // delivering leaves a unit with nothing in it to protect).
                deadline,
            };
            match runtime.prepare(unit).await {
                Ok(id) => {
                    tracing::info!(run = %a.run_id, container = %id, "container prepared");
                    id
                }
                Err(e) => return Outcome::error(redact(e.to_string()), 0),
            }
        }
    };

    let unit_ready = Instant::now();
    let driven = drive(
        runtime,
        &id,
        StdinPlan {
            bundle,
            input,
            nonce,
        },
        &job,
        Arc::clone(&redactor),
        sink,
        &control,
    )
    .await;

    // Whatever happened, the container goes now: its output has been read in full
    // (or the run was abandoned), and its exit state is known. The last
    // uploads are acknowledged meanwhile: neither waits for the other.
    let removal = async {
        if let Err(e) = runtime.remove(&id).await {
            tracing::error!(run = %a.run_id, container = %id, error = %e, "could not remove the container; it will be removed when the agent restarts");
        }
    };
    let uploads = async {
        match driven.uploader {
            Some(mut uploader) => tokio::select! {
                end = &mut uploader => end.unwrap_or_default(),
                _ = stop.wait_for(is_abandoned) => {
                    uploader.abort();
                    UploadEnd::default()
                }
            },
            None => UploadEnd::default(),
        }
    };
    let ((), upload_end) = tokio::join!(removal, uploads);
    let driven_times = driven.times;
    let outcome = conclude(driven.result, driven.pump, &upload_end, &control, redact);
    // Where the run's time went, for operators and the end-to-end benchmark.
    let us = |from: Instant, to: Option<Instant>| {
        to.map_or(0, |to| {
            u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
        })
    };
    let ended = Instant::now();
    let delivered = driven_times.delivered;
    tracing::info!(
        run = %a.run_id,
        outcome = ?summary(&outcome),
        warm = warmed,
        setup_us = us(began, Some(imaged)),
        unit_us = us(imaged, Some(unit_ready)),
        deliver_us = us(unit_ready, delivered),
        command_us = delivered.map_or(0, |d| us(d, driven_times.exited)),
        teardown_us = driven_times.exited.map_or(0, |e| us(e, Some(ended))),
        "run ended"
    );
    outcome
}

fn summary(outcome: &Outcome) -> (&'static str, Option<i64>) {
    match outcome {
        Outcome::Report(f) => (f.status.as_str(), f.exit_code),
        Outcome::Abandoned => ("abandoned", None),
    }
}

/// When a run's stages ended, as `drive` saw them.
#[derive(Clone, Copy, Default)]
struct Times {
    /// The bundle was written.
    delivered: Option<Instant>,
    /// The command's exit was seen and its output read.
    exited: Option<Instant>,
}

struct Driven {
    times: Times,
    /// How the command ended, or why it could not run.
    result: Result<(ExitState, Option<Stop>), String>,
    pump: Option<PumpEnd>,
    uploader: Option<tokio::task::JoinHandle<UploadEnd>>,
}

/// What a container reads on stdin: the bundle, then the run's input if any;
/// and the run's nonce, which the bundle carries to the shim.
struct StdinPlan {
    bundle: StdinBundle,
    input: Option<OpenInput>,
    nonce: ShimNonce,
}

/// Delivers the run to the prepared unit (the bundle, then the run's input)
/// and supervises it until it exits and its output is read.
async fn drive<R: Runtime, S: LogSink>(
    runtime: &R,
    id: &ContainerId,
    stdin: StdinPlan,
    job: &Job,
    redactor: Arc<Redactor>,
    sink: Arc<S>,
    control: &RunControl,
) -> Driven {
    let Started {
        output,
        input: mut command_input,
    } = match runtime.deliver(id, stdin.bundle).await {
        Ok(started) => started,
        Err(e) => {
            return Driven {
                times: Times::default(),
                result: Err(e.to_string()),
                pump: None,
                uploader: None,
            };
        }
    };
    let delivered = Instant::now();
    let max_chunk = job.max_chunk_bytes.max(1);
    let (tx, rx) = mpsc::channel((CHANNEL_BYTES / max_chunk).max(2));
    let truncated = Arc::new(AtomicBool::new(false));
    let mut pump = tokio::spawn(output::pump(
        output,
        redactor,
        tx,
        max_chunk,
        Arc::clone(&truncated),
        stdin.nonce,
    ));
    let uploader = {
        let control = control.clone();
        tokio::spawn(async move { upload_all(&*sink, rx, &control, &truncated).await })
    };

    let deadline = Instant::now() + job.timeout();
    let grace = job.cancel_grace;
    let mut stop = control.subscribe();
    let mut stopped: Option<Stop> = None;
    let mut kill_at: Option<Instant> = None;
    let mut pump_end: Option<PumpEnd> = None;
    let wait = runtime.wait(id);
    tokio::pin!(wait);
    // Forwarding the run's input runs beside the command until the input
    // ends, the command stops reading, or the command exits (then it is
    // dropped, which ends the request for the rest of the input).
    let mut feed = stdin
        .input
        .map(|open| Box::pin(forward_input(open, command_input.as_mut())));

    let exit = loop {
        // Escalations that need a signal; computed in the select arms, sent after.
        let mut send: Option<StopSignal> = None;
        tokio::select! {
            exit = &mut wait => break exit,
            fed = async { feed.as_mut()?.as_mut().await.err() }, if feed.is_some() => {
                feed = None;
                if let Some(message) = fed {
                    // The command must not go on with part of its input.
                    tracing::warn!(run = %job.assignment.run_id, "the run's input broke off; killing the command");
                    stopped = Stop::escalate(stopped, Stop::Fail(message));
                    send = Some(StopSignal::Kill);
                    kill_at = None;
                }
            }
            () = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                tracing::info!(run = %job.assignment.run_id, timeout = ?job.timeout(), "run timed out; stopping it");
                stopped = Some(Stop::Timeout);
                send = Some(StopSignal::Terminate);
                kill_at = Some(Instant::now() + grace);
            }
            () = sleep_until_opt(kill_at) => {
                send = Some(StopSignal::Kill);
                kill_at = None;
            }
            end = &mut pump, if pump_end.is_none() => {
                let end = end.unwrap_or_else(|e| PumpEnd { error: Some(crate::runtime::RuntimeError::Engine { operation: "output", message: e.to_string() }), ..PumpEnd::default() });
                if let Some(e) = &end.error {
                    // Without its output stream the run cannot be observed: end it.
                    stopped = Stop::escalate(stopped, Stop::Fail(format!("lost the command's output: {e}")));
                    send = Some(StopSignal::Kill);
                    kill_at = None;
                }
                pump_end = Some(end);
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    continue;
                }
                let request = stop.borrow_and_update().clone();
                match request {
                    // A polite stop, unless the run is already being stopped.
                    Some(polite @ (Stop::Cancel | Stop::Timeout)) if stopped.is_none() => {
                        tracing::info!(run = %job.assignment.run_id, "run canceled; stopping it");
                        stopped = Some(polite);
                        send = Some(StopSignal::Terminate);
                        kill_at = Some(Instant::now() + grace);
                    }
                    None | Some(Stop::Cancel | Stop::Timeout) => {}
                    Some(hard @ (Stop::Shutdown | Stop::Fail(_) | Stop::Abandon)) => {
                        stopped = Stop::escalate(stopped, hard);
                        send = Some(StopSignal::Kill);
                        kill_at = None;
                    }
                }
            }
        }
        if let Some(signal) = send {
            if let Err(e) = runtime.signal(id, signal).await {
                tracing::warn!(run = %job.assignment.run_id, error = %e, ?signal, "could not signal the container");
            }
        }
    };

    // The command has exited: the rest of its input, if any, is not needed.
    drop(feed);
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            // The engine lost track of the container: kill it so that removal and
            // the output stream's end are not waiting on a command that still runs.
            let _ = runtime.signal(id, StopSignal::Kill).await;
            pump.abort();
            return Driven {
                times: Times {
                    delivered: Some(delivered),
                    exited: None,
                },
                result: Err(e.to_string()),
                pump: pump_end,
                uploader: Some(uploader),
            };
        }
    };

    // The command has exited; read the rest of its output, however long the
    // control plane takes to accept it, unless the run is abandoned.
    if pump_end.is_none() {
        pump_end = tokio::select! {
            end = &mut pump => end.ok(),
            _ = stop.wait_for(is_abandoned) => {
                pump.abort();
                stopped = Stop::escalate(stopped, Stop::Abandon);
                None
            }
        };
    }
    Driven {
        times: Times {
            delivered: Some(delivered),
            exited: Some(Instant::now()),
        },
        result: Ok((exit, stopped)),
        pump: pump_end,
        uploader: Some(uploader),
    }
}

/// Writes the run's input to the command's stdin, then closes it. `Err`
/// when the input broke off (or could not be had): the caller then kills the
/// command. A command that stops reading (closes its stdin or exits) ends
/// forwarding quietly, as with `docker run -i`.
async fn forward_input(open: OpenInput, sink: Option<&mut CommandInput>) -> Result<(), String> {
    let Some(sink) = sink else {
        return Err("the container runtime gave no way to write the command's input".into());
    };
    let mut input = open()
        .await
        .map_err(|e| format!("could not get the run's input: {e}"))?;
    let mut sent = 0u64;
    while let Some(chunk) = input.next().await {
        let chunk =
            chunk.map_err(|e| format!("the run's input broke off after {sent} bytes: {e}"))?;
        if sink.write_all(&chunk).await.is_err() {
            return Ok(());
        }
        sent += chunk.len() as u64;
    }
    // Its end reached the command: it reads end-of-file next. Failing to say
    // so means the command is gone already.
    let _ = sink.close().await;
    Ok(())
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn conclude(
    result: Result<(ExitState, Option<Stop>), String>,
    pump: Option<PumpEnd>,
    upload: &UploadEnd,
    control: &RunControl,
    redact: impl Fn(String) -> String,
) -> Outcome {
    if is_abandoned(&control.current()) {
        return Outcome::Abandoned;
    }
    let next_seq = pump.as_ref().map_or(upload.acked, |p| p.next_seq);
    // What the redactor masked is reported whatever the outcome.
    let redactions = pump.as_ref().map(|p| p.redactions).unwrap_or_default();
    let (exit, stopped) = match result {
        Ok(r) => r,
        Err(message) => {
            let mut outcome = Outcome::error(redact(message), next_seq);
            if let Outcome::Report(report) = &mut outcome {
                report.redactions = redactions;
            }
            return outcome;
        }
    };
    // A failure raised after the command exited (e.g. the last upload refused).
    let stopped = match control.current() {
        Some(failed @ Stop::Fail(_)) => Stop::escalate(stopped, failed),
        _ => stopped,
    };
    // The init shim exits 125-127 after one line on stderr, signed with the
    // run's nonce, when the command never ran (it is not there, it cannot be
    // executed). A command can print the same text and exit 125, but cannot
    // sign it: unsigned, it is the command's own failure. (A bundle the shim
    // could not read gave it no nonce: that line is unsigned too.)
    let init_error = pump
        .as_ref()
        .and_then(|p| p.init_error.as_ref())
        .filter(|_| {
            let shim_codes = i64::from(EXIT_INIT_FAILED)..=i64::from(EXIT_NOT_FOUND);
            shim_codes.contains(&exit.exit_code) && !exit.oom_killed
        });
    let (status, error) = match stopped {
        Some(Stop::Abandon) => return Outcome::Abandoned,
        Some(Stop::Fail(m)) => (RunStatus::Error, Some(redact(m))),
        Some(Stop::Shutdown) => (
            RunStatus::Error,
            Some("killed: the agent shut down and the command outlived its grace period".into()),
        ),
        Some(Stop::Timeout) => (RunStatus::TimedOut, None),
        Some(Stop::Cancel) => (RunStatus::Canceled, None),
        None if exit.oom_killed => (RunStatus::Failed, Some("OOM killed".into())),
        None if init_error.is_some() => (
            RunStatus::Error,
            init_error.map(|line| redact(format!("the command did not run: {}", line.trim_end()))),
        ),
        None if exit.exit_code == 0 => (RunStatus::Succeeded, None),
        None => (RunStatus::Failed, None),
    };
    if upload.gap {
        tracing::error!(
            next_seq,
            acked = upload.acked,
            "finishing a run whose stored log has a gap"
        );
    }
    Outcome::Report(FinishRequest {
        status,
        exit_code: Some(exit.exit_code),
        error,
        oom_killed: exit.oom_killed,
        next_seq,
        redactions,
        report: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_cap_shortens_a_runs_timeout_but_never_lengthens_it() {
        let job = |secs, cap: Option<u64>| Job {
            assignment: Assignment {
                run_id: "r".into(),
                target: "t".into(),
                image: "i".into(),
                allowed_images: vec!["i".into()],
                argv: vec!["true".into()],
                env: Default::default(),
                secrets: vec![],
                timeout_secs: secs,
                limits: Default::default(),
                network: None,
                user: None,
                stdin: false,
                authority: None,
            },
            agent_id: "a".into(),
            keypair: Arc::new(TargetKeypair::generate()),
            max_timeout: cap.map(Duration::from_secs),
            cancel_grace: Duration::from_secs(1),
            max_chunk_bytes: 1024,
            input: None,
            allowed_images: None,
            pool: None,
        };
        assert_eq!(job(60, Some(10)).timeout(), Duration::from_secs(10));
        assert_eq!(job(5, Some(10)).timeout(), Duration::from_secs(5));
        assert_eq!(job(60, None).timeout(), Duration::from_secs(60));
    }

    fn assignment(image: &str, allowed: &[&str]) -> Assignment {
        Assignment {
            run_id: "r".into(),
            target: "t".into(),
            image: image.into(),
            allowed_images: allowed.iter().map(|s| (*s).to_owned()).collect(),
            argv: vec!["true".into()],
            env: Default::default(),
            secrets: vec![],
            timeout_secs: 60,
            limits: Default::default(),
            network: None,
            user: None,
            stdin: false,
            authority: None,
        }
    }

    #[test]
    fn an_image_needs_the_targets_list_and_the_agents_own_to_allow_it() {
        let a = assignment("postgres:16", &["sealrun/busybox:latest", "postgres:16"]);
        assert_eq!(check_image(&a, None), Ok(()));
        assert_eq!(
            check_image(&a, Some(&["postgres:*".to_owned()][..])).map_err(|_| ()),
            Err(())
        );
        let own = ["docker.io/library/postgres:16".to_owned()];
        assert_eq!(check_image(&a, Some(&own)), Ok(()));
        let err = check_image(&a, Some(&["postgres:17".to_owned()])).unwrap_err();
        assert!(err.contains("by this agent's configuration"), "{err}");
        let err = check_image(&assignment("x:1", &["y:1"]), None).unwrap_err();
        assert!(
            err.contains("not allowed on target t: it allows y:1"),
            "{err}"
        );
        // A control plane that sends no list gets nothing pulled.
        let err = check_image(&assignment("x:1", &[]), None).unwrap_err();
        assert!(err.contains("sent no allowed images"), "{err}");
    }

    fn conclude_with_stderr(code: i64, first_line: Option<&str>) -> FinishRequest {
        let pump = PumpEnd {
            init_error: first_line.map(str::to_owned),
            ..PumpEnd::default()
        };
        let exit = ExitState {
            exit_code: code,
            oom_killed: false,
        };
        let outcome = conclude(
            Ok((exit, None)),
            Some(pump),
            &UploadEnd::default(),
            &RunControl::new(),
            |m| m,
        );
        let Outcome::Report(f) = outcome else {
            panic!("abandoned")
        };
        f
    }

    #[test]
    fn a_shim_failure_is_an_error_quoting_the_shim() {
        let line = "sealrun-init: error: invalid bundle on stdin: bad magic";
        for code in [125, 126, 127] {
            let f = conclude_with_stderr(code, Some(line));
            assert_eq!((f.status, f.exit_code), (RunStatus::Error, Some(code)));
            assert_eq!(
                f.error.as_deref(),
                Some(
                    "the command did not run: sealrun-init: error: invalid bundle on stdin: bad magic"
                )
            );
        }
    }

    #[test]
    fn the_shims_line_with_another_exit_code_is_the_commands_output() {
        let line = "sealrun-init: error: printed by the command";
        assert_eq!(
            conclude_with_stderr(0, Some(line)).status,
            RunStatus::Succeeded
        );
        let f = conclude_with_stderr(1, Some(line));
        assert_eq!((f.status, f.error), (RunStatus::Failed, None));
        let f = conclude_with_stderr(125, None);
        assert_eq!((f.status, f.error), (RunStatus::Failed, None));
    }

    #[test]
    fn an_oom_kill_is_a_failure_that_says_so() {
        let exit = ExitState {
            exit_code: 137,
            oom_killed: true,
        };
        let outcome = conclude(
            Ok((exit, None)),
            None,
            &UploadEnd::default(),
            &RunControl::new(),
            |m| m,
        );
        let Outcome::Report(f) = outcome else {
            panic!("abandoned")
        };
        assert_eq!(f.status, RunStatus::Failed);
        assert_eq!(f.error.as_deref(), Some("OOM killed"));
        assert!(f.oom_killed);
        assert_eq!(f.exit_code, Some(137));
    }

    #[test]
    fn a_cancel_reports_canceled_with_the_exit_code() {
        let exit = ExitState {
            exit_code: 143,
            oom_killed: false,
        };
        let outcome = conclude(
            Ok((exit, Some(Stop::Cancel))),
            None,
            &UploadEnd::default(),
            &RunControl::new(),
            |m| m,
        );
        let Outcome::Report(f) = outcome else {
            panic!("abandoned")
        };
        assert_eq!((f.status, f.exit_code), (RunStatus::Canceled, Some(143)));
    }

    #[test]
    fn an_abandoned_run_reports_nothing() {
        let c = RunControl::new();
        c.request(Stop::Abandon);
        let exit = ExitState {
            exit_code: 0,
            oom_killed: false,
        };
        assert_eq!(
            conclude(Ok((exit, None)), None, &UploadEnd::default(), &c, |m| m),
            Outcome::Abandoned
        );
    }

    #[test]
    fn error_messages_pass_the_redactor() {
        let outcome = conclude(
            Err("pull failed: token abc".into()),
            None,
            &UploadEnd::default(),
            &RunControl::new(),
            |m| m.replace("abc", "***"),
        );
        let Outcome::Report(f) = outcome else {
            panic!("abandoned")
        };
        assert_eq!(f.error.as_deref(), Some("pull failed: token ***"));
    }
}
