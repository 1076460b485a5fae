//! `sealrun run`: submit, stream the redacted output live, exit with the
//! command's own exit code.

use super::seg;
use crate::cli::RunArgs;
use crate::client::{Client, Refused, Unreachable};
use crate::output::{self, ChunkWriter, is_broken_pipe, outln, safe};
use crate::signal::Interrupts;
use anyhow::{Context as _, Result, anyhow, bail};
use futures_util::StreamExt as _;
use reqwest::Method;
use sealrun_wire::approval::APPROVAL_EXPIRED;
use sealrun_wire::log::{LogEvent, RunEnd};
use sealrun_wire::run::{RunCreated, RunRequest, RunStatus, RunView, RunbookCall};
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Exit status when the run timed out (as timeout(1)).
pub const EXIT_TIMED_OUT: u8 = 124;
/// Exit status when sealrun could not run the command (as docker run).
pub const EXIT_ERROR: u8 = 125;
/// Exit status when the run was lost (EX_TEMPFAIL: check, then resubmit).
pub const EXIT_LOST: u8 = 75;
/// Exit status when the run was canceled (as a shell after Ctrl-C).
pub const EXIT_CANCELED: u8 = 130;
/// Exit status when sealrun lost contact with the control plane while
/// following: the run's state is unknown (EX_IOERR).
pub const EXIT_DISCONNECTED: u8 = 74;
/// Exit status when the reader of the output went away (`| head`), as for a
/// process killed by SIGPIPE (128 + 13).
pub const EXIT_SIGPIPE: u8 = 141;
/// How long a follower keeps reconnecting to a control plane it cannot
/// reach before it gives up (the run may still be going).
pub const RECONNECT_FOR: Duration = Duration::from_secs(600);

/// Following lost contact with the control plane for longer than
/// [`RECONNECT_FOR`].
#[derive(Debug)]
pub struct Disconnected {
    id: String,
    cause: String,
}

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lost contact with the control plane while following run {} ({}); it may still be going: sealrun runs logs {} --follow",
            self.id, self.cause, self.id
        )
    }
}

impl std::error::Error for Disconnected {}

/// How following a run stopped (errors aside).
#[derive(Debug)]
pub enum Followed {
    /// The run ended so.
    Ended(RunEnd),
    /// The reader of the output went away (a closed pipe).
    ReaderGone,
}

/// Exit status when the run expired in the queue: no agent took it in time
/// and it never ran (EX_UNAVAILABLE).
pub const EXIT_EXPIRED: u8 = 69;

/// `--param NAME=VALUE`s as a map; a name given twice is a mistake, not
/// "the last one wins".
fn runbook_params(
    pairs: Vec<(String, String)>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut params = std::collections::BTreeMap::new();
    for (name, value) in pairs {
        if params.contains_key(&name) {
            bail!("--param {name} is given twice");
        }
        params.insert(name, value);
    }
    Ok(params)
}

pub async fn run(a: RunArgs) -> Result<ExitCode> {
    let client = Client::from_args(&a.client)?;
    // A runbook's command reads no input of the caller's (the control plane
    // refuses it): its behaviour is the template's alone.
    let forward_stdin =
        a.runbook.is_none() && !a.no_stdin && !a.detach && crate::input::stdin_has_input();
    let runbook = match a.runbook {
        Some(name) => Some(RunbookCall {
            name,
            params: runbook_params(a.params)?,
        }),
        None => None,
    };
    let target = a.target.unwrap_or_default();
    let mut req = RunRequest {
        target: target.clone(),
        argv: a.argv,
        env: a.env.into_iter().collect(),
        secrets: a.secrets,
        timeout_secs: a.timeout,
        image: a.image,
        require_agent: a.no_wait,
        stdin: forward_stdin,
        break_glass: a.break_glass,
        runbook,
        signed: None,
    };
    let signing = match super::sign::sign_run(&client, &req).await {
        Ok(signing) => signing,
        Err(e) => {
            eprintln!("sealrun: cannot sign the run: {}", safe(&format!("{e:#}")));
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    req.signed = signing.signed.clone();
    let created: RunCreated = match submit(&client, &req).await {
        Ok(created) => created,
        Err(e) => {
            // Refused (bad input, unknown target or secret, permission, no
            // agent with --no-wait) or unreachable: nothing runs.
            eprintln!("sealrun: {}", safe(&format!("{e:#}")));
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    signing.explain();
    if let Some(approval) = &created.approval {
        eprintln!(
            "sealrun: run {} is waiting for approval ({} of {} from {}) — `sealrun approvals show {}`",
            created.id,
            approval.approved,
            approval.required,
            safe(&approval.approvers),
            created.id
        );
    } else if !created.served {
        let wait = created
            .expires_at_ms
            .map(|at| {
                let secs = (at - output::now_ms()).max(0) / 1000;
                format!(" for up to {}m{:02}s", secs / 60, secs % 60)
            })
            .unwrap_or_default();
        eprintln!(
            "sealrun: no connected agent serves target {} right now: run {} waits in the queue{wait}, then expires \
             (--no-wait refuses instead; `sealrun runs cancel {}` withdraws it)",
            if target.is_empty() {
                "(the runbook's)"
            } else {
                &target
            },
            created.id,
            created.id
        );
    }
    if a.detach {
        if a.client.json {
            crate::output::json(&created)?;
        } else {
            outln!("{}", created.id)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !std::io::stderr().is_terminal() {
        // No spinner shows the id without a terminal: a CI log must still
        // say which run to look up.
        eprintln!(
            "sealrun: run {} submitted (sealrun runs show {} / sealrun runs logs {} --follow)",
            created.id, created.id, created.id
        );
    }
    let feeding = forward_stdin.then(|| tokio::spawn(feed(client.clone(), created.id.clone())));
    let out = ChunkWriter::for_flags(a.client.json, a.sanitize);
    let followed = follow(&client, &created.id, Interrupt::CancelRun, out).await;
    if let Some(feeding) = feeding {
        // The run has ended (or following stopped): the rest of the input,
        // if any, is not needed.
        feeding.abort();
    }
    Ok(followed_exit_code(&created.id, followed))
}

/// How long `sealrun run` waits before each new attempt at a submission
/// whose fate it does not know (about half a minute in all: long enough to
/// ride out a control plane restarting).
const SUBMIT_RETRY_DELAYS: [Duration; 6] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
];

/// Submits `req`, at most once: with one idempotency key for this
/// invocation, sent again (saying so on stderr) while the answer is unknown
/// (the control plane unreachable, or a 5xx saying the submission may or
/// may not have been applied), so a retry answers the run the first attempt
/// queued instead of queueing a second one.
async fn submit(client: &Client, req: &RunRequest) -> Result<RunCreated> {
    let key = format!("cli-{:032x}", rand::random::<u128>());
    let mut delays = SUBMIT_RETRY_DELAYS.iter();
    loop {
        let error = match client.post_once("/v1/runs", req, &key).await {
            Ok(created) => return Ok(created),
            Err(e) => e,
        };
        let unknown = error.downcast_ref::<Unreachable>().is_some()
            || error
                .downcast_ref::<Refused>()
                .is_some_and(Refused::is_retryable);
        match delays.next() {
            Some(delay) if unknown => {
                eprintln!(
                    "sealrun: submission not confirmed ({}); sending it again in {}s with the same idempotency key, so it runs at most once",
                    safe(&format!("{error:#}")),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(*delay).await;
            }
            _ => return Err(error),
        }
    }
}

/// Sends this process's stdin to run `id`. If that fails while the run is
/// still going, says so and cancels the run: its command would otherwise
/// wait for input that never comes (or act on part of it).
async fn feed(client: Client, id: String) {
    let Err(e) = crate::input::send(&client, &id).await else {
        return;
    };
    let ended = client
        .get::<RunView>(&format!("/v1/runs/{}", seg(&id)))
        .await
        .is_ok_and(|run| run.status.is_terminal());
    if ended {
        // A command that exited without reading all of its input.
        return;
    }
    eprintln!(
        "sealrun: could not send the input of run {id}: {}; canceling it",
        safe(&format!("{e:#}"))
    );
    let _ = client
        .send(
            Method::POST,
            &format!("/v1/runs/{}/cancel", seg(&id)),
            None::<&()>,
        )
        .await;
}

/// The exit status of a command that followed run `id`: how the run ended,
/// or why following stopped (saying so on stderr).
pub fn followed_exit_code(id: &str, followed: Result<Followed>) -> ExitCode {
    match followed {
        Ok(Followed::Ended(end)) => exit_code_for(id, &end),
        // The reader went away (`| head`): stop quietly, as a command killed
        // by SIGPIPE would; the run goes on.
        Ok(Followed::ReaderGone) => ExitCode::from(EXIT_SIGPIPE),
        Err(e) => {
            eprintln!("sealrun: {}", safe(&format!("{e:#}")));
            if e.downcast_ref::<Disconnected>().is_some() {
                ExitCode::from(EXIT_DISCONNECTED)
            } else if e.downcast_ref::<Refused>().is_some() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// What Ctrl-C does while following.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Cancel the remote run, keep following until it ends.
    CancelRun,
    /// Just stop following.
    Detach,
}

/// How the line the init shim writes when the command could not start
/// begins (`sealrun_init::ERROR_PREFIX`); the agent quotes it as the run's
/// error.
const SHIM_ERROR: &str = "sealrun-init: error: ";

/// Maps how a run ended to this process's exit status, saying why on stderr
/// when it is not the command's own code.
pub fn exit_code_for(id: &str, end: &RunEnd) -> ExitCode {
    let why = end
        .error
        .as_deref()
        .map(|e| format!(": {}", safe(e)))
        .unwrap_or_default();
    match end.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Failed => match end.exit_code {
            Some(code) => {
                if !why.is_empty() {
                    eprintln!("sealrun: run {id} failed{why}");
                }
                ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
            }
            None => {
                eprintln!("sealrun: run {id} failed{why}");
                ExitCode::FAILURE
            }
        },
        RunStatus::TimedOut => {
            eprintln!("sealrun: run {id} timed out{why}");
            ExitCode::from(EXIT_TIMED_OUT)
        }
        RunStatus::Canceled => {
            eprintln!("sealrun: run {id} was canceled");
            ExitCode::from(EXIT_CANCELED)
        }
        RunStatus::Lost => {
            // Its stored error reads "lost: <reason>": "lost" is said once.
            let why = why.replacen(": lost: ", ": ", 1);
            eprintln!(
                "sealrun: run {id} was lost: its agent stopped answering, so it may or may not have run{why}"
            );
            ExitCode::from(EXIT_LOST)
        }
        RunStatus::Error => {
            if end.error.as_deref().is_some_and(|e| e.contains(SHIM_ERROR)) {
                // The shim's line ("sealrun-init: error: cannot execute ...")
                // is the first line of the run's stderr, just printed with
                // its output (and in --json's chunks and end): not repeated.
                eprintln!(
                    "sealrun: run {id} could not run: its command did not start (the sealrun-init line of its output says why)"
                );
            } else {
                eprintln!("sealrun: run {id} could not run{why}");
            }
            match end.exit_code {
                // The command could not be executed (126) or was not found
                // (127), as the shim and Docker report it: the same code a
                // shell would give, and the one stored with the run.
                Some(code @ (126 | 127)) => {
                    ExitCode::from(u8::try_from(code).unwrap_or(EXIT_ERROR))
                }
                _ => ExitCode::from(EXIT_ERROR),
            }
        }
        RunStatus::Expired
            if end
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(APPROVAL_EXPIRED)) =>
        {
            eprintln!(
                "sealrun: run {id} expired waiting for approval: it was not approved in time, and it never ran"
            );
            ExitCode::from(EXIT_ERROR)
        }
        RunStatus::Expired => {
            eprintln!(
                "sealrun: run {id} expired in the queue: no agent took it in time, and it never ran"
            );
            ExitCode::from(EXIT_EXPIRED)
        }
        RunStatus::Rejected => {
            // Its stored error reads "rejected by <user>: <reason>".
            eprintln!(
                "sealrun: run {id} was {}; it never ran",
                end.error
                    .as_deref()
                    .map(safe)
                    .map_or_else(|| "rejected".to_owned(), |e| e.to_string())
            );
            ExitCode::from(EXIT_ERROR)
        }
        RunStatus::PendingApproval | RunStatus::Queued | RunStatus::Running => {
            eprintln!("sealrun: run {id} has not ended");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Streams a run's output to stdout/stderr until it ends, reconnecting if the
/// stream breaks (the control plane restarting, say) without repeating or
/// skipping a chunk, through `out` (raw, `--sanitize` or `--json`).
pub async fn follow(
    client: &Client,
    id: &str,
    interrupt: Interrupt,
    mut out: ChunkWriter,
) -> Result<Followed> {
    let followed = follow_into(client, id, interrupt, &mut out).await;
    let finished = match (out.finish(), &followed) {
        (Ok(()), Ok(end)) => out.end(end),
        (finished, _) => finished,
    };
    match followed {
        Err(e) if is_broken_pipe(&e) => Ok(Followed::ReaderGone),
        Err(e) => Err(e),
        Ok(end) => match finished {
            Err(e) if is_broken_pipe(&e) => Ok(Followed::ReaderGone),
            Err(e) => Err(e),
            Ok(()) => Ok(Followed::Ended(end)),
        },
    }
}

async fn follow_into(
    client: &Client,
    id: &str,
    interrupt: Interrupt,
    out: &mut ChunkWriter,
) -> Result<RunEnd> {
    let spinner = Spinner::start(client.clone(), id.to_owned());
    let mut next_seq = 0u64;
    let mut failures = 0u32;
    let mut canceling = false;
    let mut failing_since = None::<std::time::Instant>;
    let mut interrupts = Interrupts::new().context("cannot handle SIGINT/SIGTERM/SIGHUP")?;
    loop {
        let attempt = stream_once(client, id, &mut next_seq, &spinner, out);
        tokio::pin!(attempt);
        let outcome = loop {
            tokio::select! {
                outcome = &mut attempt => break outcome,
                why = interrupts.recv() => {
                    spinner.stop();
                    if interrupt == Interrupt::Detach || canceling {
                        bail!("{why}; the run goes on: sealrun runs logs {id} --follow");
                    }
                    canceling = true;
                    eprintln!("\nsealrun: {why}: canceling run {id} (Ctrl-C again to stop waiting)");
                    client
                        .send::<()>(Method::POST, &format!("/v1/runs/{}/cancel", seg(id)), None)
                        .await
                        .context("cannot cancel the run")?;
                }
            }
        };
        match outcome {
            Ok(Some(end)) => {
                spinner.stop();
                return Ok(end);
            }
            Ok(None) => {
                // A clean end of a stream without End (a restarting control
                // plane): reconnect.
                failures = 0;
                failing_since = None;
            }
            Err(e) => {
                // Asking again cannot help (the run is gone, the token was
                // revoked...), and a closed reader will not come back.
                let permanent = e
                    .downcast_ref::<Refused>()
                    .is_some_and(Refused::is_permanent);
                if permanent || is_broken_pipe(&e) {
                    spinner.stop();
                    return Err(e);
                }
                failures += 1;
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if failures == 1 {
                    spinner.stop();
                    eprintln!(
                        "sealrun: {}; reconnecting for up to {} min",
                        safe(&format!("{e:#}")),
                        RECONNECT_FOR.as_secs() / 60
                    );
                }
                if since.elapsed() >= RECONNECT_FOR {
                    spinner.stop();
                    return Err(Disconnected {
                        id: id.to_owned(),
                        cause: format!("{e:#}"),
                    }
                    .into());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
    }
}

/// One follow request: `Ok(Some(end))` when the run ended, `Ok(None)` when the
/// stream closed early, `Err` on a transport failure.
async fn stream_once(
    client: &Client,
    id: &str,
    next_seq: &mut u64,
    spinner: &Spinner,
    out: &mut ChunkWriter,
) -> Result<Option<RunEnd>> {
    let resp = client
        .request::<()>(
            Method::GET,
            &format!("/v1/runs/{}/logs?follow=true&after={next_seq}", seg(id)),
            None,
        )
        .await?;
    let mut body = resp.bytes_stream();
    let mut line = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| anyhow!("log stream broke: {e}"))?;
        for &b in piece.iter() {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let event: LogEvent =
                serde_json::from_slice(&line).context("unexpected line in the log stream")?;
            line.clear();
            match event {
                LogEvent::Chunk(chunk) => {
                    // A reconnect may replay what we already printed.
                    if chunk.seq < *next_seq {
                        continue;
                    }
                    spinner.stop();
                    *next_seq = chunk.seq + 1;
                    out.write(&chunk)?;
                }
                LogEvent::End(end) => return Ok(Some(end)),
            }
        }
    }
    Ok(None)
}

/// A status line on a terminal while the run waits for its first output.
struct Spinner {
    stopped: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn start(client: Client, id: String) -> Spinner {
        let stopped = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Spinner {
                stopped,
                task: None,
            };
        }
        let flag = stopped.clone();
        let task = tokio::spawn(async move {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut status = "queued".to_owned();
            for tick in 0u64.. {
                if tick % 10 == 0 {
                    if let Ok(v) = client
                        .get::<RunView>(&format!("/v1/runs/{}", seg(&id)))
                        .await
                    {
                        status = v.status.to_string();
                    }
                }
                if flag.load(Ordering::Acquire) {
                    break;
                }
                let frame = FRAMES[(tick % 10) as usize];
                eprint!("\r{frame} run {id}: {status}  ");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Spinner {
            stopped,
            task: Some(task),
        }
    }

    fn stop(&self) {
        if !self.stopped.swap(true, Ordering::AcqRel) && self.task.is_some() {
            // Clear the status line before real output is written.
            eprint!("\r\x1b[2K");
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
