//! The agent protocol (see `sealrun_wire::agent`): register, connect,
//! long-poll, heartbeat, upload output, finish, deregister.

use crate::caller::{Agent, Enroller};
use crate::dispatch::Handed;
use crate::error::Error;
use crate::logs;
use crate::possession;
use crate::queue::{self, Claim};
use crate::service::Control;
use crate::settings::millis;
use crate::store::tokens::TokenRecord;
use crate::store::{self, Tx, now_ms};
use crate::token::{self, TokenKind};
use sealrun_vault::PublicKey;
use sealrun_wire::agent::{
    AgentSettings, Assignment, AuditLinks, CHALLENGE_TTL_SECS, ChallengeRequest, Challenges,
    ConnectRequest, FinishRequest, HeartbeatAck, MAX_AUDIT_LINKS, RegisterRequest, Registered,
    ServedTarget,
};
use sealrun_wire::log::{LogChunk, LogUploadAck};
use sealrun_wire::names;
use serde_json::json;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Most runs one agent may execute at once.
const MAX_CONCURRENCY: u32 = 1024;
/// Most targets one agent may serve.
const MAX_TARGETS: usize = 1000;
/// Most chunks in one upload.
const MAX_CHUNKS: usize = 10_000;

/// A run handed to an agent by [`Control::poll`].
#[derive(Debug)]
pub struct Dispatched {
    /// What the agent runs.
    pub assignment: Box<Assignment>,
    /// How long the run was queued.
    pub waited_ms: u64,
    /// Whether a submission to this replica claimed it for this poll as
    /// it was queued, the poll waiting (see `HandOffs`), rather than the
    /// poll itself.
    pub handed_off: bool,
}

/// What a poll does after a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Reads whether to claim first (`queue::settle`).
    Look,
    /// Claims at once: woken by a run queued.
    Claim,
    /// Ends: the deadline passed, shutdown came or the agent was revoked.
    /// At the loop's top, after one last look: a claim made for the poll
    /// may have been under way (the one case the loop comes back for).
    End,
}

/// A run handed to `agent` in its poll, logged.
fn assigned(
    agent: &Agent,
    assignment: Box<Assignment>,
    waited_ms: u64,
    handed_off: bool,
) -> Dispatched {
    tracing::info!(run = %assignment.run_id, agent = %agent.name, waited_ms, handed_off, "run assigned");
    Dispatched {
        assignment,
        waited_ms,
        handed_off,
    }
}

/// A served target, checked.
struct Served {
    name: String,
    key: PublicKey,
    /// Its run-report key (`ed25519:...`), if the agent presented one.
    report_key: Option<String>,
}

fn check_connect(req: &ConnectRequest) -> Result<Vec<Served>, Error> {
    let bad = |m: String| Error::Invalid(m);
    names::label("agent version", &req.version).map_err(|e| bad(e.to_string()))?;
    if req.max_concurrency == 0 || req.max_concurrency > MAX_CONCURRENCY {
        return Err(bad(format!(
            "max_concurrency must be between 1 and {MAX_CONCURRENCY}"
        )));
    }
    if req.targets.is_empty() {
        return Err(bad(format!(
            "an agent serves between 1 and {MAX_TARGETS} targets"
        )));
    }
    parse_served(&req.targets)
}

/// The targets an agent says it serves, with their keys parsed.
fn parse_served(targets: &[ServedTarget]) -> Result<Vec<Served>, Error> {
    let bad = |m: String| Error::Invalid(m);
    if targets.len() > MAX_TARGETS {
        return Err(bad(format!(
            "an agent serves between 1 and {MAX_TARGETS} targets"
        )));
    }
    let mut seen = BTreeSet::new();
    targets
        .iter()
        .map(|t| {
            if !seen.insert(&t.name) {
                return Err(bad(format!("target {} is listed twice", t.name)));
            }
            let key = PublicKey::from_base64(&t.public_key)
                .map_err(|e| bad(format!("target {}: {e}", t.name)))?;
            let report_key = t
                .report_key
                .as_deref()
                .map(|k| {
                    sealrun_wire::trust::SignerKey::parse(k)
                        .map(|k| k.to_string())
                        .map_err(|e| bad(format!("target {}: report_key: {e}", t.name)))
                })
                .transpose()?;
            Ok(Served {
                name: t.name.clone(),
                key,
                report_key,
            })
        })
        .collect()
}

/// What a connect did (committed either way: a refused key or proof is
/// audited).
enum Connected {
    /// The settings, the runs it held (lost now), and the targets it
    /// serves by name and id.
    Ok(AgentSettings, Vec<String>, Vec<(String, i64)>),
    Refused(Error),
}

/// Served targets that passed [`check_served`], with their target ids; or
/// the refusal of a key mismatch (audited in the transaction).
type Checked<'s> = Result<Vec<(i64, &'s Served)>, Error>;

/// The served targets checked against what is declared: each is declared
/// in the agent's org and pool, and presents the key it is pinned to (or
/// awaits after a re-key), or it is not pinned yet. `Ok(Err(refusal))` for
/// a key mismatch, which is audited (in `tx`, which the caller commits):
/// this is what a stolen token with a swapped key (to read future secrets)
/// looks like.
fn check_served<'s>(
    tx: &Tx<'_>,
    org_id: i64,
    pool_id: i64,
    actor: &str,
    agent_name: &str,
    served: &'s [Served],
) -> Result<Checked<'s>, Error> {
    let mut resolved = Vec::with_capacity(served.len());
    let mut mismatches = Vec::new();
    for t in served {
        let Some((id, target_pool, pinned)) = store::targets::pool_and_key(tx, org_id, &t.name)?
        else {
            return Err(Error::Invalid(format!(
                "target {} is not declared: an admin must declare it first (PUT /v1/targets/{})",
                t.name, t.name
            )));
        };
        if target_pool != pool_id {
            return Err(Error::Forbidden(format!(
                "target {} belongs to another pool than this agent's",
                t.name
            )));
        }
        let presented = t.key.key_id();
        match pinned {
            Some(p) if p != presented.0 => mismatches.push((t.name.clone(), p, presented)),
            // Pinned to this key, awaited after a re-key, or new: `pin_key`
            // stores the key on connect if the target has none yet.
            _ => resolved.push((id, t)),
        }
    }
    if mismatches.is_empty() {
        return Ok(Ok(resolved));
    }
    let mut names = Vec::new();
    let mut commands = Vec::new();
    for (target, pinned, presented) in mismatches {
        store::audit::append(
            tx,
            org_id,
            actor,
            "target.key_mismatch",
            &target,
            json!({"agent": agent_name, "pinned_key_id": pinned, "presented_key_id": presented.0}),
        )?;
        names.push(format!(
            "target {target} is pinned to key {pinned} but this agent presented key {presented}"
        ));
        commands.push(format!(
            "`sealrun target rekey {target} --key-id {presented}`"
        ));
    }
    Ok(Err(Error::Conflict(format!(
        "refusing to connect: {}; keys are never replaced silently: if this agent's key is the intended replacement, an admin runs {}, then this agent is started again",
        names.join("; "),
        commands.join(" and ")
    ))))
}

fn connect_job(
    tx: &Tx<'_>,
    agent: &Agent,
    req: &ConnectRequest,
    served: &[Served],
    s: &crate::settings::Settings,
) -> Result<Connected, Error> {
    let now = now_ms();
    let resolved = match check_served(
        tx,
        agent.org_id,
        agent.pool_id,
        &agent.actor(),
        &agent.name,
        served,
    )? {
        Ok(resolved) => resolved,
        // Refused, but recorded.
        Err(refusal) => return Ok(Connected::Refused(refusal)),
    };
    let unproven = possession::check_proofs(
        tx,
        &agent.id,
        &req.proofs,
        served.iter().map(|t| (t.name.as_str(), &t.key)),
        now,
    )?;
    if !unproven.is_empty() {
        store::audit::append(
            tx,
            agent.org_id,
            &agent.actor(),
            "agent.proof_failed",
            &agent.id,
            json!({"name": agent.name, "targets": unproven}),
        )?;
        return Ok(Connected::Refused(Error::Forbidden(format!(
            "refusing to connect: agent {} did not prove it holds the private key of target {} (answer a fresh challenge from POST /v1/agent/challenge for each target, with the key it presents)",
            agent.name,
            unproven.join(", ")
        ))));
    }
    let since = s.connected_since(now);
    let others = store::agents::connected_others(tx, agent.org_id, &agent.id, since)?;
    if others >= i64::from(s.max_agents_per_org) {
        return Err(Error::LimitReached(format!(
            "the org already has {others} connected agents (the limit is {})",
            s.max_agents_per_org
        )));
    }
    let lost = queue::lose_held(tx, agent.org_id, &agent.id, "agent reconnected")?;
    store::agents::clear_targets(tx, &agent.id)?;
    for (target_id, t) in &resolved {
        if store::targets::pin_key(tx, *target_id, &t.key.to_base64(), &t.key.key_id().0)? {
            store::audit::append(
                tx,
                agent.org_id,
                &agent.actor(),
                "target.key_pinned",
                &t.name,
                json!({"agent": agent.name, "key_id": t.key.key_id().0}),
            )?;
        }
        if let Some(report_key) = &t.report_key {
            store::targets::set_report_key(tx, *target_id, &t.key.to_base64(), report_key)?;
        }
        store::agents::add_target(tx, &agent.id, *target_id)?;
    }
    store::agents::set_connected(tx, &agent.id, &req.version, req.max_concurrency, now)?;
    store::audit::append(
        tx,
        agent.org_id,
        &agent.actor(),
        "agent.connected",
        &agent.id,
        json!({
            "name": agent.name,
            "version": req.version,
            "max_concurrency": req.max_concurrency,
            "targets": served.iter().map(|t| &t.name).collect::<Vec<_>>(),
            "runs_lost": lost.len(),
        }),
    )?;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(Connected::Ok(
        AgentSettings {
            agent_id: agent.id.clone(),
            heartbeat_interval_ms: ms(s.heartbeat_interval),
            lease_ttl_ms: ms(s.lease_ttl),
            poll_timeout_ms: ms(s.poll_timeout),
            max_chunk_bytes: s.max_chunk_bytes,
            max_log_bytes: s.max_log_bytes,
            cancel_grace_ms: ms(s.cancel_grace),
        },
        lost,
        resolved
            .iter()
            .map(|(id, t)| (t.name.clone(), *id))
            .collect(),
    ))
}

/// Resolves when any of `waits` does, with its index; never if there are
/// none.
async fn any(waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>>) -> usize {
    if waits.is_empty() {
        std::future::pending().await
    } else {
        futures_util::future::select_all(waits).await.1
    }
}

impl Control {
    /// Enrolls an agent into the enrollment token's pool; returns its own
    /// token, shown once.
    ///
    /// The targets the agent will serve (if it names them) are checked as
    /// connecting checks them, so that an agent that would be refused (a
    /// key the target is not pinned to, an undeclared target) is refused
    /// here, before it is enrolled: a refused registration leaves no agent
    /// behind and does not count against the enrollment token's agents.
    /// Only a registration that succeeds counts one (atomically with it).
    pub async fn register_agent(
        &self,
        enroller: &Enroller,
        req: RegisterRequest,
    ) -> Result<Registered, Error> {
        names::object("agent", &req.name).map_err(|e| Error::Invalid(e.to_string()))?;
        let served = parse_served(&req.targets)?;
        let enroller = enroller.clone();
        let registered = self
            .db
            .write(move |tx| {
                let now = now_ms();
                if store::agents::name_taken(tx, enroller.org_id, &req.name)? {
                    return Err(Error::Conflict(format!(
                        "an agent named {:?} is already enrolled; pick another name or revoke it first",
                        req.name
                    )));
                }
                let actor = format!("token:{}", enroller.token_id);
                if let Err(refusal) = check_served(
                    tx,
                    enroller.org_id,
                    enroller.pool_id,
                    &actor,
                    &req.name,
                    &served,
                )? {
                    // Committed for the audit entry; nothing else was written.
                    return Ok(Err(refusal));
                }
                if !store::tokens::use_enrollment(tx, &enroller.token_id, now)? {
                    // Used up (or revoked, or expired) since it was verified:
                    // a concurrent registration took its last agent.
                    return Err(Error::Unauthenticated(
                        "invalid, expired or revoked token".into(),
                    ));
                }
                let agent_id = format!("agt_{}", token::random_hex(8));
                store::agents::insert(
                    tx,
                    &agent_id,
                    enroller.org_id,
                    enroller.pool_id,
                    &req.name,
                    now,
                )?;
                let new = token::mint(TokenKind::Agent);
                store::tokens::insert(
                    tx,
                    &new,
                    &TokenRecord {
                        org_id: enroller.org_id,
                        kind: TokenKind::Agent,
                        name: &req.name,
                        role: None,
                        user_id: None,
                        pool_id: Some(enroller.pool_id),
                        agent_id: Some(&agent_id),
                        expires_ms: None,
                        max_uses: None,
                        parent_id: None,
                    },
                )?;
                store::audit::append(
                    tx,
                    enroller.org_id,
                    &actor,
                    "agent.registered",
                    &agent_id,
                    json!({"name": req.name, "pool": enroller.pool, "agent_token": new.id}),
                )?;
                Ok(Ok(Registered {
                    agent_id,
                    agent_token: new.value,
                }))
            })
            .await?;
        let registered = registered?;
        // The enrollment token's use count changed: a cached principal of
        // it must not outlive its last use.
        self.auth.invalidate();
        Ok(registered)
    }

    /// Declares the targets the agent serves (pinning keys on first sight,
    /// refusing mismatches) and returns the protocol settings. Runs the
    /// agent held before are `lost`.
    pub async fn connect_agent(
        &self,
        agent: &Agent,
        req: ConnectRequest,
    ) -> Result<AgentSettings, Error> {
        let served = check_connect(&req)?;
        let agent_org = agent.org_id;
        let agent = agent.clone();
        let settings = self.settings.clone();
        let cache = Arc::clone(&self.auth);
        let outcome = self
            .db
            .write_then(
                move |tx| connect_job(tx, &agent, &req, &served, &settings),
                // The agent's cached principal (targets, online) is stale now.
                move |_| cache.invalidate(),
            )
            .await?;
        match outcome {
            Connected::Ok(settings, lost, targets) => {
                for run in &lost {
                    self.watchers.touch(run);
                }
                // Submissions here can hand its runs to its polls from the
                // first (see `HandOffs`).
                for (name, id) in &targets {
                    self.handoffs.learn(agent_org, name, *id);
                }
                Ok(settings)
            }
            Connected::Refused(e) => Err(e),
        }
    }

    /// One challenge per target in `req`, sealed to the key given for it
    /// (the key the agent will present when it connects; see
    /// `crate::possession`).
    pub async fn agent_challenges(
        &self,
        agent: &Agent,
        req: ChallengeRequest,
    ) -> Result<Challenges, Error> {
        if req.targets.is_empty() {
            return Err(Error::Invalid(
                "a challenge is asked for at least one target".into(),
            ));
        }
        let served = parse_served(&req.targets)?;
        let now = now_ms();
        let expires_ms = now.saturating_add(
            i64::try_from(CHALLENGE_TTL_SECS.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        let mut challenges = Vec::with_capacity(served.len());
        let mut rows = Vec::with_capacity(served.len());
        for t in &served {
            let (challenge, row) = possession::challenge(&agent.id, &t.name, &t.key, expires_ms)?;
            challenges.push(challenge);
            rows.push(row);
        }
        self.db
            .write(move |tx| {
                for row in &rows {
                    store::agents::insert_challenge(tx, row, now)?;
                }
                Ok(())
            })
            .await?;
        Ok(Challenges { challenges })
    }

    /// The links of the agent's org's audit chain from entry `from_seq` on
    /// (`0`: the last link only), for the agent to check that the history
    /// it is shown extends what it saw (`sealrun_wire::audit::witness`).
    /// Links carry no entry's content: an agent learns nothing of other
    /// pools' runs from them.
    pub async fn audit_links(&self, agent: &Agent, from_seq: u64) -> Result<AuditLinks, Error> {
        let org_id = agent.org_id;
        self.db
            .read(move |tx| {
                let head_seq = store::audit::last_seq(tx, org_id)?;
                let from = if from_seq == 0 { head_seq } else { from_seq };
                let links = store::audit::links(tx, org_id, from, MAX_AUDIT_LINKS)?;
                Ok(AuditLinks { links, head_seq })
            })
            .await
    }

    /// A run for the agent, or `None` after the poll timeout without one
    /// (or once shutdown starts). Woken as soon as a run for one of its
    /// targets is queued. An agent that did not get the answer to a poll
    /// asks again with the same `poll_id` and gets the run handed out in it
    /// (see `queue::claim`).
    pub async fn poll(
        &self,
        agent: &Agent,
        poll_id: Option<String>,
    ) -> Result<Option<Dispatched>, Error> {
        if !agent.online {
            return Err(Error::Conflict(
                "the agent is not connected: call /v1/agent/connect first".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.settings.poll_timeout;
        let notifiers: Vec<_> = agent
            .targets
            .iter()
            .map(|t| self.wakeups.notifier(*t))
            .collect();
        let agent = Arc::new(agent.clone());
        let ttl = millis(self.settings.lease_ttl);
        // Half a heartbeat: the margin a poll settled without a write
        // leaves inside the connected window (see `queue::settle`).
        let touch_every = millis(self.settings.heartbeat_interval) / 2;
        // What the last wait ended with: a wake-up (a run was queued)
        // claims at once; a poll first reads whether it must claim (see
        // `queue::settle`).
        let mut next = Next::Look;
        loop {
            // Register interest before looking, so a run queued between the
            // look and the wait still wakes us, and is known to (see
            // `Queue::waiting`).
            let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
            let mut waiting = Vec::new();
            for n in &notifiers {
                waiting.push(n.waiting());
                let mut notified = Box::pin(n.notified());
                notified.as_mut().enable();
                waits.push(notified);
            }
            let settled = if next == Next::Claim {
                None
            } else {
                let (a, id) = (Arc::clone(&agent), poll_id.clone());
                self.db
                    .read_one(move |tx| queue::settle(tx, &a, id.as_deref(), touch_every))
                    .await?
            };
            let claim = match settled {
                Some(answer) => answer,
                None => {
                    let (a, id) = (Arc::clone(&agent), poll_id.clone());
                    // Beside other replicas' claims (see `Db::write_beside`).
                    self.db
                        .write_beside(move |tx| queue::claim(tx, &a, ttl, id.as_deref()), |_| {})
                        .await?
                }
            };
            if next == Next::End {
                // The deadline passed (or shutdown came) when no one could
                // say whether a claim was made for this poll; it has been
                // looked for.
                return Ok(match claim {
                    Claim::Assigned(assignment, waited_ms) => {
                        Some(assigned(&agent, assignment, waited_ms, false))
                    }
                    Claim::Empty | Claim::Busy => None,
                });
            }
            // Entitled to a run and nothing queued: ready to be handed one
            // as it is submitted here (see `HandOffs`), if the poll has an
            // id to record it under.
            let mut offer = None;
            match claim {
                Claim::Assigned(assignment, waited_ms) => {
                    return Ok(Some(assigned(&agent, assignment, waited_ms, false)));
                }
                Claim::Busy => {
                    // Not entitled to a run now: do not take a wake-up another
                    // agent could use.
                    waits.clear();
                    waiting.clear();
                }
                Claim::Empty => {
                    offer = poll_id.as_deref().map(|id| self.handoffs.offer(&agent, id));
                }
            }
            let handed = async {
                match offer.as_mut() {
                    Some(offer) => offer.handed().await,
                    None => std::future::pending().await,
                }
            };
            // The target whose wake-up this wait took, if one did.
            let mut woke = None;
            let answer;
            (next, answer) = tokio::select! {
                handed = handed => (Next::Look, Some(handed)),
                i = any(waits) => {
                    woke = agent.targets.get(i).copied();
                    (Next::Claim, None)
                }
                () = tokio::time::sleep_until(deadline) => (Next::End, None),
                () = self.shutting_down() => (Next::End, None),
                // A revoked agent's poll ends now, not at the poll timeout.
                () = self.agent_revoked(&agent) => (Next::End, None),
            };
            // A submission may be claiming for this poll right now: then
            // its answer is this poll's.
            let answer = match answer {
                Some(answer) => Some(answer),
                None => match offer.as_mut().filter(|offer| !offer.withdraw()) {
                    Some(offer) => Some(offer.handed().await),
                    None => None,
                },
            };
            // The poll ends on the claim made for it: a wake-up this wait
            // took was for another run, and goes to the next poller.
            let pass_on = |woke: Option<i64>| {
                if let Some(target) = woke {
                    self.wakeups.run_queued_here(target);
                }
            };
            match answer {
                Some(Some(Handed::Answer(Claim::Assigned(assignment, waited_ms)))) => {
                    pass_on(woke);
                    return Ok(Some(assigned(&agent, assignment, waited_ms, true)));
                }
                // It may have committed without its answer: answered as
                // this poll's own claim would be, so that the agent asks
                // again with the same poll id.
                Some(Some(Handed::Failed(e))) => {
                    pass_on(woke);
                    return Err(e);
                }
                // It committed and took nothing for this poll.
                Some(Some(Handed::Answer(Claim::Empty | Claim::Busy))) | None => {
                    if next == Next::End {
                        return Ok(None);
                    }
                }
                // None was made (the submission queued nothing, or went
                // away before): look at the database, also before ending.
                Some(None) => {
                    if next != Next::End {
                        next = Next::Look;
                    }
                }
            }
        }
    }

    /// Renews the leases of the runs listed; says which to cancel and which
    /// the agent no longer holds.
    pub async fn heartbeat(
        &self,
        agent: &Agent,
        running: Vec<String>,
    ) -> Result<HeartbeatAck, Error> {
        if running.len() > MAX_CONCURRENCY as usize {
            return Err(Error::Invalid("too many runs in one heartbeat".into()));
        }
        let ttl = millis(self.settings.lease_ttl);
        let agent = agent.clone();
        let (cancel, abandon) = self
            .db
            .write(move |tx| queue::heartbeat(tx, &agent, &running, ttl))
            .await?;
        Ok(HeartbeatAck { cancel, abandon })
    }

    /// Stores redacted output of a run the agent holds, idempotently.
    pub async fn upload_logs(
        &self,
        agent: &Agent,
        run_id: String,
        chunks: Vec<LogChunk>,
    ) -> Result<LogUploadAck, Error> {
        if chunks.len() > MAX_CHUNKS {
            return Err(Error::Invalid(format!(
                "at most {MAX_CHUNKS} chunks per upload"
            )));
        }
        let (max_chunk, max_log) = (self.settings.max_chunk_bytes, self.settings.max_log_bytes);
        let agent = agent.clone();
        let id = run_id.clone();
        let ack = self
            .db
            .write(move |tx| logs::store(tx, &agent, &id, &chunks, max_chunk, max_log))
            .await?;
        self.watchers.touch(&run_id);
        Ok(ack)
    }

    /// Records how a run the agent holds ended.
    pub async fn finish_run(
        &self,
        agent: &Agent,
        run_id: String,
        req: FinishRequest,
    ) -> Result<(), Error> {
        let agent = agent.clone();
        let id = run_id.clone();
        // The agent has stopped reading the run's input by now: what the
        // relay handed it is final.
        let stdin_bytes = self.stdin.finish(&run_id);
        let changed = self
            .db
            .write_beside(
                move |tx| queue::finish(tx, &agent, &id, &req, stdin_bytes),
                |_| {},
            )
            .await?;
        if changed {
            self.watchers.touch(&run_id);
        }
        Ok(())
    }

    /// The agent is going away (it stays enrolled and may connect again).
    /// Runs it still holds are `lost`.
    pub async fn deregister_agent(&self, agent: &Agent) -> Result<(), Error> {
        let agent = agent.clone();
        let cache = Arc::clone(&self.auth);
        let lost = self
            .db
            .write_then(
                move |tx| {
                    store::agents::set_offline(tx, &agent.id)?;
                    let lost = queue::lose_held(tx, agent.org_id, &agent.id, "agent deregistered")?;
                    store::audit::append(
                        tx,
                        agent.org_id,
                        &agent.actor(),
                        "agent.deregistered",
                        &agent.id,
                        json!({"name": agent.name, "runs_lost": lost.len()}),
                    )?;
                    Ok(lost)
                },
                move |_| cache.invalidate(),
            )
            .await?;
        for run in &lost {
            self.watchers.touch(run);
        }
        Ok(())
    }
}
