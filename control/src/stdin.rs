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
//! when its agent reports its end; the relay entry is dropped then, or by the
//! sweep once the run has ended another way.
//!
//! The relay lives in this process's memory: with several replicas (one day),
//! the feeder and the reader must reach the same one.

use crate::caller::{Agent, Member};
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::relay::{Piece, StdinStream};
use crate::service::Control;
use crate::store;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use sealrun_wire::run::{RunStatus, StdinSent};
use std::fmt::Display;
use std::time::Duration;

/// How often a blocked feeder re-checks that its run has not ended, should
/// a change notification be missed.
const RECHECK: Duration = Duration::from_secs(5);

impl Control {
    /// Relays `body` to run `id`'s command as its stdin. Only the run's
    /// submitter may, once, and only for a run submitted with
    /// [`stdin`](sealrun_wire::run::RunRequest::stdin) that has not ended.
    ///
    /// Returns once the whole body is passed on, the body breaks off (the
    /// command is then killed: it must not act on part of its input), or
    /// the run ends first (a command that stopped reading and exited).
    pub async fn feed_stdin<S, E>(
        &self,
        who: &Member,
        id: String,
        mut body: S,
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
        let Some(tx) = self.stdin.take_feeder(&id) else {
            return Err(Error::Conflict(format!(
                "the input of run {id} is already being sent (input can be sent once)"
            )));
        };

        let mut watch = self.watchers.watch(&id);
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
                if self.run_ended(org_id, &id).await? {
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
                if tx.is_closed() || self.run_ended(org_id, &id).await? {
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
    pub async fn take_stdin(&self, agent: &Agent, id: String) -> Result<StdinStream, Error> {
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
        self.stdin.take_reader(&id).ok_or_else(|| {
            Error::Conflict(format!(
                "the input of run {id} was already taken (input can be read once)"
            ))
        })
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
    /// its run for long. Called by the sweep.
    pub(crate) async fn prune_stdin_relays(&self) {
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
