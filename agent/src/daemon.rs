//! The agent process: enroll, connect, then poll for runs while free slots last,
//! heartbeat the runs in progress, and on shutdown let them finish (within the
//! grace period) before deregistering.
//!
//! ```text
//! start ─▶ keys ─▶ identity (register once) ─▶ remove orphans ─▶ connect
//!   ─▶ loop { free slot? ─▶ poll ─▶ spawn run }      heartbeat every interval
//!   ─▶ shutdown: stop polling ─▶ grace ─▶ SIGKILL + report ─▶ give up ─▶ deregister
//! ```
//!
//! `connect` happens once per process: the control plane marks the runs an agent
//! held before a connect as `lost`, which is right after a crash and wrong after a
//! mere network blip. So a lost connection is retried call by call, never by
//! reconnecting.

use crate::backoff::Backoff;
use crate::client::{CallError, ControlPlane};
use crate::config::AgentConfig;
use crate::control::{RunControl, Stop, is_abandoned};
use crate::docker::DockerRuntime;
use crate::error::Error;
use crate::executor::{Job, OpenInput, Outcome, execute};
use crate::gate::Gate;
use crate::pool::Pool;
use crate::runtime::Runtime;
use crate::state::{Identity, StateDir};
use crate::upload::ControlPlaneSink;
use crate::witness::{CheckError, Witness};
use futures_util::StreamExt as _;
use sealrun_vault::TargetKeypair;
use sealrun_wire::agent::{
    AgentSettings, Assignment, ChallengeRequest, Challenges, ConnectRequest, FinishRequest,
    Heartbeat, Proof, RegisterRequest, ServedTarget,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// After the grace period, how long killed runs get to report before the agent
/// gives up on them (abandons them) and exits.
const REPORT_WINDOW: Duration = Duration::from_secs(10);
/// How long deregistration is attempted on the way out.
const DEREGISTER_WINDOW: Duration = Duration::from_secs(5);

/// Runs in progress, by run id: what heartbeats report and what they can stop.
type Runs = Arc<Mutex<HashMap<String, RunControl>>>;

fn lock(runs: &Runs) -> std::sync::MutexGuard<'_, HashMap<String, RunControl>> {
    // A panic while holding this lock cannot leave the map half-updated (every
    // critical section is a single insert, remove or clone), so a poisoned lock is
    // still consistent.
    runs.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Retries `call` with backoff while its errors are retryable, until it succeeds,
/// fails for good, or `stop` is cancelled (then `None`).
async fn retry<T, F, Fut>(
    what: &str,
    stop: &CancellationToken,
    mut call: F,
) -> Option<Result<T, CallError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut backoff = Backoff::default();
    loop {
        let result = tokio::select! {
            r = call() => r,
            () = stop.cancelled() => return None,
        };
        match result {
            Err(e) if e.is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "{what} failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return None,
                }
            }
            other => return Some(other),
        }
    }
}

/// The agent's main function; see [`crate::run`].
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let stopping = CancellationToken::new();
    {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested");
            stopping.cancel();
        });
    }
    config.validate()?;
    // Before anything is created on disk: without the shim no run can start.
    let init_binary = crate::init::locate(config.init_binary.as_deref())?;
    tracing::info!(init_binary = %init_binary.display(), "runs start with this init shim");
    // Locks the state directory (before keys are loaded or orphans removed)
    // until this function returns: `state` lives to its end.
    let state = StateDir::open(&config.state_dir)?;
    let keys = load_keys(&config, &state)?;
    let runtime =
        Arc::new(DockerRuntime::connect(config.docker_host.as_deref(), &init_binary).await?);
    let client = ControlPlane::new(&config.server_url, config.ca_cert.as_deref())?;

    let Some(identity) = identity(&config, &state, &keys, &client, &stopping).await? else {
        return Ok(());
    };
    let agent_id = identity.agent_id.clone();
    let client = Arc::new(client.with_token(Zeroizing::new(identity.agent_token.clone())));
    drop(identity);

    let removed = runtime.remove_orphans(&agent_id).await?;
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed containers left behind by an earlier agent process"
        );
    }
    // Containers of agents that died under another identity (a killed
    // `sealrun dev`, a host re-provisioned with a fresh state directory):
    // any agent on the engine removes them once their deadline has passed,
    // now and every SWEEP_INTERVAL.
    sweep_expired(&*runtime).await;
    let sweeper = {
        let (runtime, stopping) = (Arc::clone(&runtime), stopping.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => sweep_expired(&*runtime).await,
                    () = stopping.cancelled() => return,
                }
            }
        })
    };
    let _sweeper = AbortOnDrop(sweeper);

    let connect = || async {
        // Fresh challenges on every attempt: each is answered once.
        let targets = served(&keys);
        let challenges = client
            .challenge(&ChallengeRequest {
                targets: targets.clone(),
            })
            .await?;
        let request = ConnectRequest {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            max_concurrency: config.concurrency,
            targets,
            proofs: answer_challenges(&keys, &challenges),
        };
        client.connect(&request).await
    };
    let settings = match retry("connect", &stopping, connect).await {
        None => return Ok(()),
        Some(r) => r.map_err(|source| Error::Api {
            during: "connect",
            source,
        })?,
    };
    tracing::info!(agent = %agent_id, targets = keys.len(), concurrency = config.concurrency, "connected");
    match &config.trusted_admins {
        Some(keys) => {
            let admins: Vec<String> = keys.iter().map(|k| k.fingerprint()).collect();
            tracing::info!(
                ?admins,
                "runs must be signed by users these admins certified"
            );
        }
        None => tracing::warn!(
            "no trust file: this agent runs whatever the control plane hands it, unsigned runs included; set trust_file to the admins' keys so that a compromised control plane cannot run commands here"
        ),
    }

    let pool = Pool::new(
        &agent_id,
        config
            .targets
            .iter()
            .map(|t| (t.name.clone(), t.pool))
            .collect(),
    );
    if let Some(pool) = &pool {
        match state.load_pool_shapes() {
            Ok(shapes) => {
                for (target, shape) in shapes {
                    pool.remember(&target, shape);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the pools' shapes; they warm after a run")
            }
        }
    }
    Supervisor {
        runtime,
        client,
        settings,
        keys: Arc::new(keys),
        // The agent's own say on images, where its configuration has one.
        allowed_images: Arc::new(
            config
                .targets
                .iter()
                .filter_map(|t| Some((t.name.clone(), t.allowed_images.clone()?)))
                .collect(),
        ),
        agent_id,
        max_run_timeout: config.max_run_timeout,
        shutdown_grace: config.shutdown_grace,
        runs: Arc::default(),
        pool,
        slots: Arc::new(Semaphore::new(config.concurrency as usize)),
        tasks: JoinSet::new(),
        state: state.clone(),
        witness: Witness::load(state.clone())?,
        gate: match config.trusted_admins.clone() {
            Some(trusted) => Some(Gate::load(trusted, state.clone(), now_ms())?),
            None => None,
        },
    }
    .run(stopping)
    .await
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The targets of `keys`, with their public keys, as the agent presents them.
/// Proves possession of each target's private key ([`Challenge::answer`]).
/// A challenge that does not open is left unanswered, and the control plane
/// refuses the connect naming the target.
fn answer_challenges(
    keys: &HashMap<String, Arc<TargetKeypair>>,
    challenges: &Challenges,
) -> Vec<Proof> {
    challenges
        .challenges
        .iter()
        .filter_map(|c| {
            let keypair = keys.get(&c.target)?;
            match c.answer(keypair) {
                Ok(proof) => Some(proof),
                Err(e) => {
                    tracing::warn!(target = %c.target, error = %e, "a connect challenge does not open with this target's key: not answered");
                    None
                }
            }
        })
        .collect()
}

fn served(keys: &HashMap<String, Arc<TargetKeypair>>) -> Vec<ServedTarget> {
    keys.iter()
        .map(|(name, kp)| ServedTarget {
            name: name.clone(),
            public_key: kp.public_key().to_base64(),
            report_key: Some(crate::report::key(kp).public_key().to_string()),
        })
        .collect()
}

fn load_keys(
    config: &AgentConfig,
    state: &StateDir,
) -> Result<HashMap<String, Arc<TargetKeypair>>, Error> {
    let mut keys = HashMap::new();
    for target in &config.targets {
        let path = match &target.key_file {
            Some(p) => p.clone(),
            None => state.key_path(&target.name)?,
        };
        let (keypair, created) =
            TargetKeypair::load_or_generate(&path).map_err(|source| Error::Key {
                target: target.name.clone(),
                source,
            })?;
        tracing::info!(
            target = %target.name,
            key_id = %keypair.key_id(),
            created,
            path = %path.display(),
            "target key loaded"
        );
        keys.insert(target.name.clone(), Arc::new(keypair));
    }
    Ok(keys)
}

/// The stored identity, or a new one from registering with the enrollment token.
/// `None` when shutdown was requested while the control plane was unreachable.
async fn identity(
    config: &AgentConfig,
    state: &StateDir,
    keys: &HashMap<String, Arc<TargetKeypair>>,
    client: &ControlPlane,
    stopping: &CancellationToken,
) -> Result<Option<Identity>, Error> {
    if let Some(identity) = state.load_identity()? {
        if identity.server_url != config.server_url {
            return Err(Error::Config(format!(
                "{} holds an identity issued by {}, not {}: use another state directory, or delete the file to enroll again",
                state.identity_path().display(),
                identity.server_url,
                config.server_url
            )));
        }
        return Ok(Some(identity));
    }
    let Some(enrollment) = config.enrollment_token.as_deref() else {
        return Err(Error::Config(format!(
            "not enrolled yet ({} does not exist): pass an enrollment token",
            state.identity_path().display()
        )));
    };
    // With the targets and their keys, so that an agent the control plane
    // would refuse on connect (a key mismatch) is refused before it is
    // enrolled, using up nothing of the enrollment token.
    let request = RegisterRequest {
        name: config.name.clone(),
        targets: served(keys),
    };
    let registered = match retry("register", stopping, || {
        client.register(enrollment, &request)
    })
    .await
    {
        None => return Ok(None),
        Some(r) => r.map_err(|source| Error::Api {
            during: "register",
            source,
        })?,
    };
    let identity = Identity {
        agent_id: registered.agent_id.clone(),
        agent_token: registered.agent_token.clone(),
        server_url: config.server_url.clone(),
    };
    drop(Zeroizing::new(registered.agent_token));
    state.store_identity(&identity)?;
    tracing::info!(agent = %identity.agent_id, name = %config.name, "registered");
    Ok(Some(identity))
}

struct Supervisor<R: Runtime> {
    runtime: Arc<R>,
    client: Arc<ControlPlane>,
    settings: AgentSettings,
    keys: Arc<HashMap<String, Arc<TargetKeypair>>>,
    /// Targets whose images this agent's configuration restricts.
    allowed_images: Arc<HashMap<String, Vec<String>>>,
    agent_id: String,
    max_run_timeout: Option<Duration>,
    shutdown_grace: Duration,
    runs: Runs,
    /// The warm pools, when a target has one.
    pool: Option<Arc<Pool>>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    /// The state directory (locked for the process): the pools remember
    /// their shapes there.
    state: StateDir,
    /// What the agent saw of the org's audit history.
    witness: Witness,
    /// Checks each run's signatures, with a trust file; `None` without.
    gate: Option<Gate>,
}

impl<R: Runtime> Supervisor<R> {
    async fn run(mut self, stopping: CancellationToken) -> Result<(), Error> {
        // Set when the control plane refuses the agent's token: nothing more can
        // be reported, so the agent stops like on shutdown and exits with an error.
        let revoked = CancellationToken::new();
        let heartbeats_done = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat_loop(
            Arc::clone(&self.client),
            Arc::clone(&self.runs),
            Duration::from_millis(self.settings.heartbeat_interval_ms.max(100)),
            heartbeats_done.clone(),
            revoked.clone(),
        ));

        // The pools stop when polling does: no run can take a member after
        // that (runs in progress hold theirs), so refilling would only make
        // containers to remove.
        let pools_stop = CancellationToken::new();
        let pools = self.pool.clone().map(|pool| {
            tokio::spawn(pool.keep_warm(
                Arc::clone(&self.runtime),
                Some(self.state.clone()),
                pools_stop.clone(),
            ))
        });
        let fatal = self.poll_loop(&stopping, &revoked).await;
        pools_stop.cancel();
        let revoked_error = revoked.is_cancelled().then(|| {
            Error::Revoked(
                "the control plane refused the agent's token (revoked, or the agent was deleted)"
                    .into(),
            )
        });
        // Only a refused token makes reporting impossible: a run refused
        // on the way out (a rewritten history) must still be reported.
        self.drain(revoked.is_cancelled()).await;
        let error = fatal.or(revoked_error);
        if let Some(pools) = pools {
            // It removes every member (within a bound) before it returns.
            if let Err(e) = pools.await {
                tracing::error!(error = %e, "the pools' task failed; their members will be removed when the agent restarts");
            }
        }
        heartbeats_done.cancel();
        let _ = heartbeat.await;

        if let Some(error) = error {
            return Err(error);
        }
        match tokio::time::timeout(DEREGISTER_WINDOW, self.client.deregister()).await {
            Ok(Ok(())) => tracing::info!("deregistered"),
            Ok(Err(e)) => tracing::warn!(error = %e, "deregistration failed"),
            Err(_) => tracing::warn!("deregistration timed out"),
        }
        Ok(())
    }

    /// Polls while slots are free, until shutdown. Returns a fatal error if the
    /// control plane refuses to talk to this agent any more.
    async fn poll_loop(
        &mut self,
        stopping: &CancellationToken,
        revoked: &CancellationToken,
    ) -> Option<Error> {
        let hold = Duration::from_millis(self.settings.poll_timeout_ms);
        let mut backoff = Backoff::default();
        // One id per poll until it is answered: a poll that failed (an
        // error after the control plane claimed a run for it, a cut
        // connection) is asked again with the same id and gets that run,
        // which would otherwise stay held by nobody until its lease lapsed.
        let new_poll_id = || format!("{:032x}", rand::random::<u128>());
        let mut poll_id = new_poll_id();
        loop {
            // Reap finished run tasks so the JoinSet does not grow.
            while self.tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = Arc::clone(&self.slots).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return None,
                },
                () = stopping.cancelled() => return None,
                () = revoked.cancelled() => return None,
            };
            // No work is asked for unless the history the control plane
            // shows extends what this agent saw.
            match self.witness.check(&self.client).await {
                Ok(()) => {}
                Err(CheckError::Rewritten(e)) => return Some(Error::AuditRewritten(e)),
                Err(CheckError::Call(e)) if matches!(e.status(), Some(401 | 403)) => {
                    revoked.cancel();
                    return None;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "cannot check the audit history; no work is asked for until it is checked");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopping.cancelled() => return None,
                    }
                    continue;
                }
            }
            // A poll in flight when shutdown comes is abandoned; if the control plane
            // assigned a run in that instant, the run ends `lost` (never run twice).
            let polled = tokio::select! {
                r = self.client.poll(hold, &poll_id) => r,
                () = stopping.cancelled() => return None,
                () = revoked.cancelled() => return None,
            };
            if polled.is_ok() {
                poll_id = new_poll_id();
            }
            match polled {
                Ok(Some(assignment)) => {
                    backoff.reset();
                    // History may have been rewritten while the poll was
                    // held: checked again before anything of the run is
                    // opened or created.
                    match self.check_before_run().await {
                        Ok(()) => {
                            let refusal = self.gate_refusal(&assignment);
                            self.spawn_run(assignment, permit, refusal);
                        }
                        Err(CheckError::Rewritten(e)) => {
                            tracing::error!(run = %assignment.run_id, error = %e, "the control plane's audit history was rewritten: refusing this run and all work");
                            let why =
                                format!("refused by agent: {e}; the agent takes no more work");
                            self.spawn_run(assignment, permit, Some(why));
                            return Some(Error::AuditRewritten(e));
                        }
                        Err(e) => {
                            let why = format!(
                                "refused by agent: it could not check the control plane's audit history before the run ({e})"
                            );
                            self.spawn_run(assignment, permit, Some(why));
                        }
                    }
                }
                Ok(None) => backoff.reset(),
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "poll failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopping.cancelled() => return None,
                    }
                }
                Err(e) if matches!(e.status(), Some(401 | 403)) => {
                    revoked.cancel();
                    return None;
                }
                Err(source) => {
                    return Some(Error::Api {
                        during: "poll",
                        source,
                    });
                }
            }
        }
    }

    /// Why the gate refuses `assignment`, if it does (no gate: none).
    fn gate_refusal(&mut self, assignment: &Assignment) -> Option<String> {
        let gate = self.gate.as_mut()?;
        let keypair = self.keys.get(&assignment.target)?;
        match gate.admit(assignment, keypair, now_ms()) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(run = %assignment.run_id, error = %e, "refusing the run: its signatures do not authorize it");
                Some(format!("refused by agent: {e}"))
            }
        }
    }

    /// [`Witness::check`], tried a few times on transport errors.
    async fn check_before_run(&mut self) -> Result<(), CheckError> {
        let mut attempt = 0;
        loop {
            match self.witness.check(&self.client).await {
                Err(CheckError::Call(e)) if e.is_retryable() && attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Runs `assignment` in a task of its own; with `refusal`, reports it as
    /// an error with that message instead, having opened and created
    /// nothing.
    fn spawn_run(
        &mut self,
        assignment: Assignment,
        permit: OwnedSemaphorePermit,
        refusal: Option<String>,
    ) {
        let run_id = assignment.run_id.clone();
        let control = RunControl::new();
        {
            let mut runs = lock(&self.runs);
            if runs.contains_key(&run_id) {
                tracing::error!(run = %run_id, "control plane assigned a run this agent is already executing; ignoring");
                return;
            }
            runs.insert(run_id.clone(), control.clone());
        }
        tracing::info!(run = %run_id, target = %assignment.target, image = %assignment.image, "run assigned");
        let runtime = Arc::clone(&self.runtime);
        let client = Arc::clone(&self.client);
        let runs = Arc::clone(&self.runs);
        let keypair = self.keys.get(&assignment.target).cloned();
        let report_key = keypair.as_deref().map(crate::report::key);
        let subject = crate::report::Subject {
            target: assignment.target.clone(),
            run_id: run_id.clone(),
            secrets: assignment.secrets.iter().map(|s| s.name.clone()).collect(),
            nonce: assignment.nonce(),
        };
        let started = refusal.is_none();
        let allowed_images = self.allowed_images.get(&assignment.target).cloned();
        let pool = self.pool.clone();
        let job_settings = (
            self.agent_id.clone(),
            self.max_run_timeout,
            Duration::from_millis(self.settings.cancel_grace_ms),
            usize::try_from(self.settings.max_chunk_bytes).unwrap_or(usize::MAX),
        );
        self.tasks.spawn(async move {
            let (agent_id, max_timeout, cancel_grace, max_chunk_bytes) = job_settings;
            let outcome = match (refusal, keypair) {
                (Some(why), _) => Outcome::error(why, 0),
                (None, None) => Outcome::error(
                    format!("this agent does not serve target {}", assignment.target),
                    0,
                ),
                (None, Some(keypair)) => {
                    let sink = Arc::new(ControlPlaneSink::new(Arc::clone(&client), run_id.clone()));
                    let input = assignment
                        .stdin
                        .then(|| open_input(Arc::clone(&client), run_id.clone()));
                    let job = Job {
                        assignment,
                        agent_id,
                        keypair,
                        max_timeout,
                        cancel_grace,
                        max_chunk_bytes,
                        input,
                        allowed_images,
                        pool,
                    };
                    execute(&*runtime, job, sink, control.clone()).await
                }
            };
            if let Outcome::Report(mut finish) = outcome {
                if let Some(key) = &report_key {
                    finish.report = Some(crate::report::sign(
                        key,
                        &subject,
                        &finish,
                        started,
                        now_ms(),
                    ));
                }
                report(&client, &run_id, &finish, &control).await;
            }
            // Only now stop heartbeating the run: its lease must outlive the report.
            lock(&runs).remove(&run_id);
            drop(permit);
        });
    }

    /// Lets runs in progress finish within the grace period, then kills them and
    /// lets them report, then abandons what is left.
    async fn drain(&mut self, revoked: bool) {
        if self.tasks.is_empty() {
            return;
        }
        let phases: [(Duration, Option<Stop>); 3] = if revoked {
            // Nothing can be reported any more: kill and remove at once.
            [
                (Duration::ZERO, None),
                (Duration::ZERO, None),
                (Duration::from_secs(60), Some(Stop::Abandon)),
            ]
        } else {
            [
                (self.shutdown_grace, None),
                (REPORT_WINDOW, Some(Stop::Shutdown)),
                (Duration::from_secs(60), Some(Stop::Abandon)),
            ]
        };
        for (window, request) in phases {
            if let Some(request) = request {
                let controls: Vec<RunControl> = lock(&self.runs).values().cloned().collect();
                if !controls.is_empty() {
                    tracing::warn!(
                        runs = controls.len(),
                        ?request,
                        "stopping runs still in progress"
                    );
                }
                for c in controls {
                    c.request(request.clone());
                }
            } else if !window.is_zero() {
                tracing::info!(runs = self.tasks.len(), grace = ?window, "waiting for runs in progress");
            }
            let all_done = tokio::time::timeout(window, async {
                while self.tasks.join_next().await.is_some() {}
            });
            if all_done.await.is_ok() {
                return;
            }
        }
        // Removal of abandoned containers hangs only if Docker does: give up.
        tracing::error!(runs = self.tasks.len(), "runs did not end; exiting anyway");
        self.tasks.abort_all();
    }
}

/// Reports a run's end, retrying until the control plane takes it, refuses it,
/// or the run is abandoned.
async fn report(client: &ControlPlane, run_id: &str, finish: &FinishRequest, control: &RunControl) {
    let abandoned = CancellationToken::new();
    let watcher = {
        let abandoned = abandoned.clone();
        let mut stop = control.subscribe();
        tokio::spawn(async move {
            if stop.wait_for(is_abandoned).await.is_ok() {
                abandoned.cancel();
            }
        })
    };
    match retry("finish", &abandoned, || client.finish(run_id, finish)).await {
        Some(Ok(())) => tracing::info!(run = %run_id, status = %finish.status, "run reported"),
        Some(Err(e)) if e.is_run_gone() => {
            tracing::warn!(run = %run_id, error = %e, "control plane no longer holds the run")
        }
        Some(Err(e)) => {
            tracing::error!(run = %run_id, error = %e, "control plane refused the run's outcome")
        }
        None => tracing::warn!(run = %run_id, "gave up reporting the run"),
    }
    watcher.abort();
}

async fn heartbeat_loop(
    client: Arc<ControlPlane>,
    runs: Runs,
    interval: Duration,
    done: CancellationToken,
    revoked: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = done.cancelled() => return,
        }
        let running: Vec<String> = lock(&runs).keys().cloned().collect();
        let beat = Heartbeat { running };
        // A heartbeat that takes longer than the interval is superseded by the next.
        let answer = tokio::select! {
            r = tokio::time::timeout(interval.max(Duration::from_secs(2)), client.heartbeat(&beat)) => r,
            () = done.cancelled() => return,
        };
        match answer {
            Ok(Ok(ack)) => {
                let runs = lock(&runs);
                for id in &ack.cancel {
                    if let Some(c) = runs.get(id) {
                        tracing::info!(run = %id, "cancel requested");
                        c.request(Stop::Cancel);
                    }
                }
                for id in &ack.abandon {
                    if let Some(c) = runs.get(id) {
                        tracing::warn!(run = %id, "lease lost; abandoning the run");
                        c.request(Stop::Abandon);
                    }
                }
            }
            Ok(Err(e)) if matches!(e.status(), Some(401 | 403)) => {
                tracing::error!(error = %e, "heartbeat refused");
                revoked.cancel();
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat failed"),
            Err(_) => tracing::warn!("heartbeat timed out"),
        }
    }
}

/// How often an agent removes containers whose deadline has passed, of any
/// agent on its engine.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Removes expired containers of any agent on the engine, logging what it did.
async fn sweep_expired<R: Runtime>(runtime: &R) {
    match runtime.remove_expired().await {
        Ok(0) => {}
        Ok(removed) => tracing::warn!(
            removed,
            "removed containers past their deadline, left behind by an agent that is gone"
        ),
        Err(e) => tracing::warn!(error = %e, "could not sweep containers past their deadline"),
    }
}

/// Aborts a background task when dropped (when `run` returns, however).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The run's input from the control plane, requested when the executor
/// asks (once the command has started).
fn open_input(client: Arc<ControlPlane>, run_id: String) -> OpenInput {
    Box::new(move || {
        Box::pin(async move {
            let stream = client.stdin(&run_id).await.map_err(|e| e.to_string())?;
            Ok(stream.map(|r| r.map_err(|e| e.to_string())).boxed())
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sealrun_wire::agent::{Challenge, PROOF_NAME};

    fn challenge(sealed: sealrun_vault::SealedSecret) -> Challenges {
        Challenges {
            challenges: vec![Challenge {
                target: "db".into(),
                id: "ch_1".into(),
                sealed,
            }],
        }
    }

    #[test]
    fn a_challenge_is_answered_with_the_nonce_it_sealed() {
        let kp = Arc::new(TargetKeypair::generate());
        let keys = HashMap::from([("db".to_owned(), Arc::clone(&kp))]);
        let sealed = sealrun_vault::seal(&kp.public_key(), PROOF_NAME, "db", &[7u8; 32]).unwrap();
        let proofs = answer_challenges(&keys, &challenge(sealed));
        assert_eq!(proofs.len(), 1);
        assert_eq!(proofs[0].nonce, "07".repeat(32));
        assert_eq!(proofs[0].challenge_id, "ch_1");
    }

    #[test]
    fn a_challenge_that_is_really_a_sealed_secret_is_not_opened() {
        // A control plane sending one of the target's sealed secrets as a
        // "challenge" to have the agent open it gets nothing back.
        let kp = Arc::new(TargetKeypair::generate());
        let keys = HashMap::from([("db".to_owned(), Arc::clone(&kp))]);
        let secret = sealrun_vault::seal(&kp.public_key(), "PGPASSWORD", "db", b"hunter2").unwrap();
        assert!(answer_challenges(&keys, &challenge(secret)).is_empty());
    }
}
