//! Run input: what a submitter pipes into `sealrun run`, relayed to the
//! agent that runs the command, as `docker run -i` does.
//!
//! Input is as sensitive as output, so it is never stored: it passes through
//! one bounded channel per run ([`RELAY_CHUNKS`](crate::RELAY_CHUNKS) chunks), which makes a slow
//! command slow the submitter down (backpressure) instead of the control plane
//! buffering. The submitter's side (the *feeder*, [`Control::feed_stdin`]) and
//! the agent's side (the *reader*, [`Control::take_stdin`]) may arrive in
//! either order: the feeder usually comes first, at submission, and blocks
//! until an agent takes the run and reads.
//!
//! The end of the input is an explicit end marker (`relay::Piece::End`), so that a feeder that
//! breaks off (its connection dropped) is told apart from one that finished:
//! the reader's stream then ends with [`StdinBroken`](crate::StdinBroken) and the agent kills the
//! command rather than let it act on part of its input (a migration cut in
//! half). Each side can attach once: input cannot be replayed, because it is
//! not kept.
//!
//! What the relay counts (bytes handed to the agent) is recorded with the run
//! when its agent reports its end (and, on a database other replicas share,
//! by the replica the agent read it from when that read ends, since the
//! agent may report its end to another); the relay entry is dropped then, or
//! by the sweep once the run has ended another way.
//!
//! The relay lives in this process's memory. With several replicas of one
//! PostgreSQL database, the feeder and the reader may reach different
//! replicas (a load balancer picks for each connection): each side then
//! records where it is in `input_relays` (each side once, across replicas),
//! and when they differ the feeder's replica reads its own relay and passes
//! the input on through `input_chunks`, sealed (`crypto_box` sealed boxes)
//! to a key the reader's replica made for this run and holds only in
//! memory: at most [`BETWEEN_REPLICAS`] chunks unread in
//! the database, which the reader deletes as it reads (and every chunk goes
//! with its relay when the run ends). What the database holds is
//! ciphertext nobody can open once the reader's replica forgets the key,
//! in a table PostgreSQL does not write to its log. A feeder's replica
//! that stops saying it is alive for [`FEEDER_STALE`] breaks the input, as
//! a feeder that breaks off does. Each passage (the chunks the feeder's
//! replica has ready, written; those the reader's finds, taken) costs the
//! replicas' write lock: input passes between replicas about a tenth as
//! fast as within one (`benches/input.rs` in `api`), and holds up other
//! writes a little.

use crate::StdinBroken;
use crate::caller::{Agent, Member};
use crate::dispatch::RunWatch;
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::relay::{Piece, StdinStream};
use crate::service::Control;
use crate::store::inputs::{self, Party, Side};
use crate::store::{self, now_ms};
use bytes::Bytes;
use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use sealrun_wire::run::{RunStatus, StdinSent};
use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a blocked feeder re-checks that its run has not ended, should
/// a change notification be missed.
const RECHECK: Duration = Duration::from_secs(5);

/// How often each side of a relay between replicas looks at the database
/// should a hint be missed (hints wake them at once).
const RELAY_LOOK: Duration = Duration::from_secs(1);

/// How often the feeder's replica says it is alive while it relays.
const FEEDER_ALIVE: Duration = Duration::from_secs(5);

/// How long the reader's replica waits for a sign of life from the feeder's
/// before it takes the input as broken (that replica died mid-input).
const FEEDER_STALE: Duration = Duration::from_secs(30);

/// Chunks of a run's input unread in the database at most, when it passes
/// between replicas (and taken at once by the reader's replica): each
/// passage costs writes and wake-ups, so more go at a time than through a
/// replica's own relay; 2 MiB sealed at most with the CLI's 64 KiB chunks.
const BETWEEN_REPLICAS: usize = 32;

/// Bytes of sealed chunks the feeder's replica gathers for one write at
/// most (the CLI's chunks are 64 KiB; another client's may be larger).
const BATCH_BYTES: usize = 2 << 20;

/// What a chunk passed between replicas carries, after its sequence number.
const DATA: u8 = 0;
const END: u8 = 1;
const BROKEN: u8 = 2;

impl Control {
    /// Relays `body` to run `id`'s command as its stdin. Only the run's
    /// submitter may, once, and only for a run submitted with
    /// [`stdin`](sealrun_wire::run::RunRequest::stdin) that has not ended.
    ///
    /// Returns once the whole body is passed on, the body breaks off (the
    /// command is then killed: it must not act on part of its input), or
    /// the run ends first (a command that stopped reading and exited).
    /// "Passed on" is into this replica's relay; on a database other
    /// replicas share, a task then passes it on to the reader's replica if
    /// that is another (`forward_input`), so `complete` then says less
    /// than on one replica: more of the input may still be on its way
    /// (up to `BETWEEN_REPLICAS` chunks in the database and as many on
    /// each side) when the command stops reading.
    pub async fn feed_stdin<S, E>(
        self: &Arc<Self>,
        who: &Member,
        id: String,
        body: S,
    ) -> Result<StdinSent, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        who.require(Action::SubmitRuns)?;
        let org_id = who.org_id;
        let run_id = id.clone();
        let (status, submitter, wants) = self
            .db
            .read(move |tx| store::runs::input_of(tx, org_id, &run_id))
            .await?
            .ok_or_else(|| Error::not_found(Object::Run, id.clone()))?;
        if submitter != who.name {
            return Err(Error::Forbidden(format!(
                "only the submitter of run {id} can send its input"
            )));
        }
        if !wants {
            return Err(Error::Conflict(format!(
                "run {id} was submitted without input (stdin)"
            )));
        }
        if status.is_terminal() {
            return Err(Error::Conflict(format!(
                "run {id} already ended as {status}"
            )));
        }
        let sent_once = || {
            Error::Conflict(format!(
                "the input of run {id} is already being sent (input can be sent once)"
            ))
        };
        // On a shared database, this replica is the feeder for every
        // replica; the reader may be here or on another.
        // Watched before attaching, so that a reader attaching on another
        // replica right after is not missed.
        let watch = self.watchers.watch(&relay_key(&id));
        let reader = if self.shares_database() {
            Some(
                self.attach_input(Side::Feeder, &id, &[])
                    .await?
                    .ok_or_else(sent_once)?,
            )
        } else {
            None
        };
        let tx = self.stdin.take_feeder(&id).ok_or_else(sent_once)?;
        if let Some(reader) = reader {
            self.watchers.touch(&relay_key(&id));
            // Not tied to this request: the reader may come long after the
            // input has all been sent (a run waiting for approval), and
            // what this replica holds of it must still be passed on.
            let (control, id) = (Arc::clone(self), id.clone());
            tokio::spawn(async move { control.forward_input(&id, reader, watch).await });
        }
        self.feed_here(org_id, &id, tx, body).await
    }

    /// Passes `body` into this replica's relay of run `id` through `tx`,
    /// until it ends, breaks off, or the run ends.
    async fn feed_here<S, E>(
        &self,
        org_id: i64,
        id: &str,
        tx: tokio::sync::mpsc::Sender<Piece>,
        mut body: S,
    ) -> Result<StdinSent, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut watch = self.watchers.watch(id);
        let mut bytes = 0u64;
        loop {
            // Wait for room first, so that a run which ends while the
            // command is not reading is noticed without more input arriving.
            let permit = loop {
                tokio::select! {
                    permit = tx.reserve() => break permit.ok(),
                    () = watch.changed() => {}
                    () = tokio::time::sleep(RECHECK) => {}
                }
                if self.run_ended(org_id, id).await? {
                    break None;
                }
            };
            let Some(permit) = permit else {
                // The reader is gone (the command exited, or its run ended).
                return Ok(StdinSent {
                    bytes,
                    complete: false,
                });
            };
            // Input may pause for long (a pipe held open): a run that ends
            // meanwhile must still end this relay.
            let next = loop {
                tokio::select! {
                    next = body.next() => break Some(next),
                    () = watch.changed() => {}
                    () = tokio::time::sleep(RECHECK) => {}
                }
                if tx.is_closed() || self.run_ended(org_id, id).await? {
                    break None;
                }
            };
            let Some(next) = next else {
                return Ok(StdinSent {
                    bytes,
                    complete: false,
                });
            };
            match next {
                Some(Ok(chunk)) => {
                    bytes += chunk.len() as u64;
                    if !chunk.is_empty() {
                        permit.send(Piece::Data(chunk));
                    }
                }
                Some(Err(e)) => {
                    // Dropping the sender without `End` tells the reader the
                    // input broke.
                    tracing::warn!(run = %id, bytes, error = %e, "the submitter's input broke off");
                    return Err(Error::Invalid(format!(
                        "the input of run {id} broke off after {bytes} bytes"
                    )));
                }
                None => {
                    permit.send(Piece::End);
                    return Ok(StdinSent {
                        bytes,
                        complete: true,
                    });
                }
            }
        }
    }

    /// Run `id`'s input, for the agent that holds it: a stream that ends
    /// when the submitter's input does, or with [`StdinBroken`](crate::StdinBroken). Each run's
    /// input can be taken once.
    pub async fn take_stdin(
        self: &Arc<Self>,
        agent: &Agent,
        id: String,
    ) -> Result<StdinStream, Error> {
        let org_id = agent.org_id;
        let run_id = id.clone();
        let held = self
            .db
            .read(move |tx| {
                Ok((
                    store::runs::holder(tx, org_id, &run_id)?,
                    store::runs::input_of(tx, org_id, &run_id)?,
                ))
            })
            .await?;
        let (Some((status, holder, _)), Some((_, _, wants))) = held else {
            return Err(Error::not_found(Object::Run, id));
        };
        if holder.as_deref() != Some(agent.id.as_str()) {
            return Err(Error::not_found(Object::Run, id));
        }
        if status != RunStatus::Running.as_str() {
            return Err(Error::Conflict(format!(
                "run {id} is {status}, not running"
            )));
        }
        if !wants {
            return Err(Error::Conflict(format!(
                "run {id} was submitted without input (stdin)"
            )));
        }
        let taken_once = || {
            Error::Conflict(format!(
                "the input of run {id} was already taken (input can be read once)"
            ))
        };
        if !self.shares_database() {
            return self.stdin.take_reader(&id).ok_or_else(taken_once);
        }
        // The key chunks from another replica are sealed to: made for this
        // run, held only here, forgotten with the stream.
        let key = SecretKey::generate(&mut OsRng);
        // Watched before attaching, so that a feeder attaching on another
        // replica right after is not missed.
        let watch = self.watchers.watch(&relay_key(&id));
        let feeder = self
            .attach_input(Side::Reader, &id, key.public_key().as_bytes())
            .await?
            .ok_or_else(taken_once)?;
        // The agent may report the run's end to another replica, which
        // cannot know how much was relayed here: this one records it.
        let here = {
            let (control, run_id) = (Arc::clone(self), id.clone());
            let record = move |bytes: u64| {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { control.input_read(&run_id, bytes).await });
                }
            };
            self.stdin
                .take_reader(&id)
                .ok_or_else(taken_once)?
                .on_drop(record)
        };
        self.watchers.touch(&relay_key(&id));
        let source = match feeder {
            Some(feeder) if feeder.replica == self.replica => return Ok(here),
            Some(_) => Source::There,
            None => Source::Either,
        };
        let control = Arc::clone(self);
        Ok(here.relayed(move |here| {
            let incoming = Incoming {
                control,
                org_id,
                id,
                key,
                here: Some(here),
                source,
                watch,
                next: 0,
                ready: VecDeque::new(),
                done: false,
                seen: None,
                last_sign: Instant::now(),
            };
            Box::pin(futures_util::stream::unfold(
                incoming,
                |mut incoming| async move {
                    let piece = incoming.next_piece().await?;
                    Some((piece, incoming))
                },
            ))
        }))
    }

    /// On the reader's replica, once the agent is done reading run `id`'s
    /// input (`bytes` of it): records the size, and that the reader is
    /// done, so that the feeder's replica, if another, stops passing the
    /// input on (as a feeder here finds the reader gone). Tried again while
    /// the database fails: a feeder's replica not told waits until the run
    /// ends.
    async fn input_read(&self, id: &str, bytes: u64) {
        let mut wait = Duration::from_millis(100);
        loop {
            let run_id = id.to_owned();
            let recorded = self
                .db
                .write(move |tx| {
                    store::runs::record_stdin_bytes(tx, &run_id, bytes)?;
                    inputs::reader_done(tx, &run_id)
                })
                .await;
            match recorded {
                Ok(()) => break,
                Err(e) if wait > FEEDER_STALE => {
                    tracing::warn!(run = %id, error = %e, "could not record the end of a run's input");
                    break;
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        self.watchers.touch(&relay_key(id));
    }

    /// Whether other replicas may share this one's database (and so see
    /// a run's two sides arrive at different replicas).
    fn shares_database(&self) -> bool {
        self.db.broadcast().is_some()
    }

    /// Records this replica as run `id`'s `side` of its input (see
    /// `store::inputs::attach`).
    async fn attach_input(
        &self,
        side: Side,
        id: &str,
        key: &[u8],
    ) -> Result<Option<Option<Party>>, Error> {
        let (run_id, replica, key) = (id.to_owned(), self.replica.clone(), key.to_vec());
        self.db
            .write(move |tx| inputs::attach(tx, &run_id, side, &replica, &key, now_ms()))
            .await
    }

    /// On the feeder's replica: once run `id`'s reader is known to be on
    /// another replica, passes this replica's relay of it on, sealed to the
    /// reader's key, at most [`BETWEEN_REPLICAS`] chunks ahead of the reader.
    /// Ends when the input's end (or its breaking off) is passed on, when
    /// the reader is found here, when the reader is done with the input
    /// (it stopped reading), or when the run ends. The database failing
    /// meanwhile is waited out, up to [`FEEDER_STALE`] (the reader's replica
    /// gives up after as long without a sign of life from this one).
    async fn forward_input(&self, id: &str, reader: Option<Party>, mut watch: RunWatch) {
        let key = relay_key(id);
        let mut reader = reader;
        let reader_key = loop {
            match reader.take() {
                Some(reader) if reader.replica == self.replica => return,
                Some(reader) => break reader.key,
                None => {}
            }
            // The reader's attaching is hinted; the look is for a lost hint.
            tokio::select! {
                () = watch.changed() => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
            match self.input_relay(id).await {
                // The run ended and its relay was dropped.
                Ok(None) => return,
                Ok(Some(relay)) => reader = relay.reader,
                Err(e) => {
                    tracing::debug!(run = %id, error = %e, "could not look for a run's input reader")
                }
            }
        };
        let Some(reader_key) = reader_key
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .map(PublicKey::from)
        else {
            tracing::error!(run = %id, "a run's input reader has no 32-byte key: its input is not passed on");
            return;
        };
        // A reader here took it first (it then found this replica the
        // feeder's), or the relay is gone (its run ended): nothing to pass
        // on.
        let Some(mut input) = self.stdin.take_reader_to_pass_on(id) else {
            return;
        };
        let mut alive =
            tokio::time::interval_at(tokio::time::Instant::now() + FEEDER_ALIVE, FEEDER_ALIVE);
        let mut next_seq = 0_i64;
        // Sealed frames not yet in the database, in order; `ended` once the
        // last (the end, or the input's breaking off) is among them.
        let mut pending: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut ended = false;
        loop {
            if pending.is_empty() {
                if ended {
                    return;
                }
                // While the submitter pauses, the reader may stop reading
                // (its command closed its stdin): this relay then ends, and
                // so does the submitter's request, as on one replica.
                let first = loop {
                    tokio::select! {
                        piece = input.next() => break piece,
                        () = watch.changed() => {}
                        _ = alive.tick() => self.feeder_alive(id).await,
                    }
                    if self.reader_gone(id).await {
                        return;
                    }
                };
                // With it, whatever else is ready now: one write for all.
                let mut piece = Some(first);
                let mut pending_bytes = 0;
                while let Some(next) = piece.take() {
                    let (kind, data) = match next {
                        Some(Ok(data)) => (DATA, data),
                        None => (END, Bytes::new()),
                        Some(Err(_)) => (BROKEN, Bytes::new()),
                    };
                    let Ok(sealed) = reader_key.seal(&mut OsRng, &frame(next_seq, kind, &data))
                    else {
                        tracing::error!(run = %id, "sealing a run's input failed: it is not passed on");
                        return;
                    };
                    pending_bytes += sealed.len();
                    pending.push((next_seq, sealed));
                    next_seq += 1;
                    if kind != DATA {
                        ended = true;
                    } else if pending.len() < BETWEEN_REPLICAS && pending_bytes < BATCH_BYTES {
                        piece = input.next().now_or_never();
                    }
                }
            }
            let mut last_success = Instant::now();
            loop {
                // A read first: while the reader is behind, most looks find
                // no room, and a write would take the replicas' write lock.
                let unread = self.unread_input(id).await;
                let put = if unread.is_ok_and(|n| n >= BETWEEN_REPLICAS as i64) {
                    Ok(inputs::Put::NoRoom)
                } else {
                    // Lent to the writer, not copied: the job is dropped
                    // once it ran, and the frames are this task's again.
                    let frames = Arc::new(std::mem::take(&mut pending));
                    let (run_id, lent) = (id.to_owned(), Arc::clone(&frames));
                    // Room is made by the reader deleting what it read; the
                    // relay is gone once the run ended.
                    let put = self
                        .db
                        .write(move |tx| inputs::put_if_room(tx, &run_id, &lent, BETWEEN_REPLICAS))
                        .await;
                    pending = Arc::try_unwrap(frames).unwrap_or_else(|frames| (*frames).clone());
                    put
                };
                match put {
                    Ok(inputs::Put::Done(n)) => {
                        pending.drain(..n);
                        break;
                    }
                    Ok(inputs::Put::Gone) => return,
                    Ok(inputs::Put::NoRoom) => last_success = Instant::now(),
                    Err(e) => {
                        if last_success.elapsed() > FEEDER_STALE {
                            tracing::warn!(run = %id, error = %e, "gave up passing a run's input to the replica reading it");
                            return;
                        }
                        tracing::debug!(run = %id, error = %e, "could not pass a run's input on; retrying");
                    }
                }
                tokio::select! {
                    () = watch.changed() => {}
                    () = tokio::time::sleep(RELAY_LOOK) => {}
                    _ = alive.tick() => self.feeder_alive(id).await,
                }
            }
            self.watchers.touch(&key);
        }
    }

    /// Whether run `id`'s relay is gone (its run ended) or its reader is
    /// done with it; `false` if the database cannot say now.
    async fn reader_gone(&self, id: &str) -> bool {
        match self.input_relay(id).await {
            Ok(relay) => relay.is_none_or(|relay| relay.reader_done),
            Err(_) => false,
        }
    }

    /// Run `id`'s relay between replicas, if recorded.
    async fn input_relay(&self, id: &str) -> Result<Option<inputs::Relay>, Error> {
        let run_id = id.to_owned();
        self.db.read_one(move |tx| inputs::relay(tx, &run_id)).await
    }

    /// Chunks of run `id`'s input unread in the database.
    async fn unread_input(&self, id: &str) -> Result<i64, Error> {
        let run_id = id.to_owned();
        self.db
            .read_one(move |tx| inputs::unread(tx, &run_id))
            .await
    }

    /// Records that this replica, run `id`'s feeder's, is alive.
    async fn feeder_alive(&self, id: &str) {
        let run_id = id.to_owned();
        let said = self
            .db
            .write(move |tx| inputs::feeder_alive(tx, &run_id, now_ms()))
            .await;
        if let Err(e) = said {
            tracing::debug!(run = %id, error = %e, "could not say this replica still relays a run's input");
        }
    }

    async fn run_ended(&self, org_id: i64, id: &str) -> Result<bool, Error> {
        let run_id = id.to_owned();
        let status = self
            .db
            .read(move |tx| store::runs::status(tx, org_id, &run_id))
            .await?;
        Ok(status
            .and_then(|s| RunStatus::parse(&s))
            .is_none_or(RunStatus::is_terminal))
    }

    /// Drops the relays of runs that ended without their agent reporting
    /// (canceled or expired in the queue, lost), so a relay never outlives
    /// its run for long; on a shared database, also the records of relays
    /// between replicas of runs that ended, and any chunks left in them.
    /// Called by the sweep.
    pub(crate) async fn prune_stdin_relays(&self) {
        if self.shares_database() {
            let any = self.db.read_one(inputs::any_ended).await;
            if any.unwrap_or(true) {
                if let Err(e) = self.db.write(inputs::prune_ended).await {
                    tracing::warn!(error = %e, "could not drop the input relays of ended runs");
                }
            }
        }
        for run_id in self.stdin.runs() {
            let Ok(ended) = self.run_ended_any_org(&run_id).await else {
                continue;
            };
            if ended {
                self.stdin.finish(&run_id);
            }
        }
    }

    async fn run_ended_any_org(&self, id: &str) -> Result<bool, Error> {
        let run_id = id.to_owned();
        let status = self
            .db
            .read(move |tx| store::runs::status_any_org(tx, &run_id))
            .await?;
        Ok(status
            .and_then(|s| RunStatus::parse(&s))
            .is_none_or(RunStatus::is_terminal))
    }
}

/// A chunk passed between replicas, before it is sealed: its sequence
/// number, what it carries ([`DATA`], [`END`], [`BROKEN`]), and the data
/// (read back by `Incoming::open`).
fn frame(seq: i64, kind: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(9 + data.len());
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(data);
    frame
}

/// What run `id`'s two sides of a relay between replicas watch and touch.
fn relay_key(id: &str) -> String {
    format!("input:{id}")
}

/// Where the reader's replica takes a run's input from.
enum Source {
    /// Not known yet: here, if a feeder comes here; another replica, if
    /// the relay's record says so first.
    Either,
    /// This replica's relay.
    Here,
    /// Another replica, through the database.
    There,
}

/// The reader's side of a run's input that may come from another replica.
struct Incoming {
    control: Arc<Control>,
    org_id: i64,
    id: String,
    key: SecretKey,
    here: Option<StdinStream>,
    source: Source,
    watch: RunWatch,
    /// The sequence number of the next chunk from another replica.
    next: i64,
    ready: VecDeque<Result<Bytes, StdinBroken>>,
    done: bool,
    /// The feeder's last sign of life as recorded, and when it changed.
    seen: Option<i64>,
    last_sign: Instant,
}

impl Incoming {
    async fn next_piece(&mut self) -> Option<Result<Bytes, StdinBroken>> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Some(piece);
            }
            if self.done {
                return None;
            }
            match self.source {
                Source::Here | Source::Either if self.here.is_none() => {
                    // Cannot be: `here` is dropped only on leaving both.
                    self.done = true;
                    return Some(Err(StdinBroken::new("the input's relay was lost")));
                }
                Source::Here => return self.here.as_mut()?.next().await,
                Source::Either => {
                    let here = self.here.as_mut()?;
                    tokio::select! {
                        piece = here.next() => {
                            // Only a feeder here feeds this relay.
                            self.source = Source::Here;
                            return piece;
                        }
                        () = self.watch.changed() => {}
                        () = tokio::time::sleep(RELAY_LOOK) => {}
                    }
                    let relay = self.control.input_relay(&self.id).await;
                    if let Ok(Some(inputs::Relay {
                        feeder: Some(feeder),
                        ..
                    })) = relay
                    {
                        if feeder.replica == self.control.replica {
                            self.source = Source::Here;
                        } else {
                            self.source = Source::There;
                            self.here = None;
                            self.last_sign = Instant::now();
                        }
                    }
                }
                Source::There => {
                    if let Some(broken) = self.look_there().await {
                        self.done = true;
                        return Some(Err(broken));
                    }
                }
            }
        }
    }

    /// One look at the chunks another replica passed on: takes and opens
    /// those there are, or waits for some. `Some` if the input broke.
    async fn look_there(&mut self) -> Option<StdinBroken> {
        // A read first: most looks find nothing, and a write would take
        // the replicas' write lock for nothing.
        let unread = self.control.unread_input(&self.id).await;
        let taken = match unread {
            Ok(0) => Ok(Vec::new()),
            Ok(_) => {
                let run_id = self.id.clone();
                self.control
                    .db
                    .write(move |tx| inputs::take(tx, &run_id, BETWEEN_REPLICAS as i64))
                    .await
            }
            Err(e) => Err(e),
        };
        match taken {
            Ok(taken) if !taken.is_empty() => {
                self.control.watchers.touch(&relay_key(&self.id));
                self.last_sign = Instant::now();
                for (seq, sealed) in taken {
                    if let Err(broken) = self.open(seq, &sealed) {
                        return Some(broken);
                    }
                    if self.done {
                        break;
                    }
                }
                return None;
            }
            Ok(_) => self.look_for_life().await,
            Err(e) => {
                tracing::debug!(run = %self.id, error = %e, "could not read a run's input from another replica")
            }
        }
        if self.last_sign.elapsed() > FEEDER_STALE {
            return Some(StdinBroken::new(format!(
                "the replica the input was sent to gave no sign of life for {} s",
                FEEDER_STALE.as_secs()
            )));
        }
        if matches!(
            self.control.run_ended(self.org_id, &self.id).await,
            Ok(true)
        ) {
            return Some(StdinBroken::new("the run ended before its input did"));
        }
        tokio::select! {
            () = self.watch.changed() => {}
            () = tokio::time::sleep(RELAY_LOOK) => {}
        }
        None
    }

    /// Notes the feeder's replica's sign of life, if it gave a new one.
    async fn look_for_life(&mut self) {
        if let Ok(Some(relay)) = self.control.input_relay(&self.id).await {
            if relay.feeder_seen_ms != self.seen {
                self.seen = relay.feeder_seen_ms;
                self.last_sign = Instant::now();
            }
        }
    }

    /// Opens chunk `seq` and queues what it carries.
    fn open(&mut self, seq: i64, sealed: &[u8]) -> Result<(), StdinBroken> {
        let broken =
            |why: &str| StdinBroken::new(format!("the input relayed between replicas {why}"));
        let frame = self
            .key
            .unseal(sealed)
            .map_err(|_| broken("could not be opened (not sealed to this replica's key)"))?;
        let (head, data) = frame
            .split_at_checked(9)
            .ok_or_else(|| broken("was cut short"))?;
        let (seq_bytes, kind) = head.split_at(8);
        let sent_seq =
            i64::from_be_bytes(seq_bytes.try_into().map_err(|_| broken("was cut short"))?);
        if sent_seq != seq || seq != self.next {
            return Err(broken("arrived out of order, or a chunk was lost"));
        }
        self.next += 1;
        match kind[0] {
            DATA => self.ready.push_back(Ok(Bytes::copy_from_slice(data))),
            END => self.done = true,
            _ => {
                self.done = true;
                self.ready.push_back(Err(StdinBroken::new(
                    "the submitter's input broke off before its end",
                )));
            }
        }
        Ok(())
    }
}
