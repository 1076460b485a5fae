//! Runs as users see them: submit, list, inspect, cancel, read output.

use crate::caller::Member;
use crate::dispatch::{Outbox, RunWatch, Taken};
use crate::error::Error;
use crate::logs::{self, Page};
use crate::permissions::Action;
use crate::queue::{self, Canceled, Claim, Submitter};
use crate::service::Control;
use crate::settings::millis;
use crate::store::{self, Tx, now_ms};
use sealrun_wire::run::{ApprovalProgress, RunRequest, RunSource, RunStatus, RunView};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const DEFAULT_LIST: u32 = 50;
const MAX_LIST: u32 = 500;

/// Which runs a listing wants (all filters optional).
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs in this status (by name; an unknown name is refused).
    pub status: Option<String>,
    /// Only runs of this target.
    pub target: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
    /// Only runs submitted before this run (for paging back).
    pub before: Option<String>,
    /// Only runs of this submitter (the name runs show).
    pub submitter: Option<String>,
    /// Only runs submitted from here (`cli`, `api`, `slack`; an unknown
    /// name is refused).
    pub source: Option<String>,
    /// Only runs submitted at or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// Only runs submitted before this Unix millisecond.
    pub until_ms: Option<i64>,
}

/// What a cancel did, with the run as it now stands.
#[derive(Debug)]
pub struct Cancellation {
    /// `true` if the run was queued and is now canceled; `false` if it is
    /// running and its agent is told at its next heartbeat.
    pub immediate: bool,
    /// The run after the cancel.
    pub run: RunView,
}

/// A run just queued (or queued by an earlier submission with the same
/// idempotency key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// Its id.
    pub id: String,
    /// Whether a connected agent serves its target now; when not, it waits
    /// for one until `expires_at_ms`.
    pub served: bool,
    /// Unix milliseconds after which it expires if still queued (or, while
    /// it waits for approval, if still not approved).
    pub expires_at_ms: i64,
    /// `true` if an earlier submission with the same idempotency key queued
    /// it and this one queued nothing.
    pub replayed: bool,
    /// `queued`, or `pending_approval` when its target's rule demands
    /// approval first.
    pub status: RunStatus,
    /// How far its approval is, while it waits for one.
    pub approval: Option<ApprovalProgress>,
}

impl Control {
    /// Queues a run and wakes the agents polling for its target. The one
    /// path every run takes, whether it comes from the HTTP API or Slack.
    /// With `req.require_agent`, a target no connected agent serves is
    /// refused ([`Error::Conflict`]) instead.
    pub async fn submit_run(&self, who: &Member, req: RunRequest) -> Result<Submitted, Error> {
        self.submit_run_once(who, req, None).await
    }

    /// [`submit_run`](Control::submit_run), at most once per idempotency
    /// `key` of this submitter: a submission with a key they used before
    /// queues nothing and answers the run queued then (`replayed`), or
    /// [`Error::Conflict`] if that run was asked for with another request.
    /// A key is remembered as long as its run. So a client that does not
    /// know whether its submission was applied (an answer lost on the way,
    /// or [`Error::Unavailable`] saying it may or may not have been) sends
    /// it again with the same key and gets one run.
    pub async fn submit_run_once(
        &self,
        who: &Member,
        req: RunRequest,
        key: Option<String>,
    ) -> Result<Submitted, Error> {
        who.require(Action::SubmitRuns)?;
        let who = who.clone();
        let org_id = who.org_id;
        let connected_since = self.settings.connected_since(now_ms());
        // A run of a runbook names its target once rendered, in the job.
        let name = req.runbook.is_none().then(|| req.target.clone());
        let guessed = name
            .as_deref()
            .and_then(|name| self.handoffs.target_named(org_id, name));
        let taken = guessed.and_then(|target| self.handoffs.take(target));
        let submit = move |tx: &Tx<'_>| {
            let submitter = Submitter {
                org_id: who.org_id,
                name: &who.name,
                actor: &who.actor,
                source: who.source,
                user_id: who.user_id,
                role: who.role,
            };
            queue::submit(tx, &submitter, &req, key.as_deref(), connected_since)
        };
        let submitted = match taken {
            // Written to run beside other replicas' submissions, claims and
            // finishes (see `Db::write_beside`).
            None => {
                let (wakeups, outbox) = (Arc::clone(&self.wakeups), Arc::clone(&self.slack_outbox));
                self.db
                    .write_beside(submit, move |s| {
                        cue(s, &outbox, |_, target| wakeups.run_queued(target));
                    })
                    .await?
            }
            Some(taken) => self.submit_handing_off(submit, taken).await?,
        };
        // Learned only when the guess was not right already.
        if let Some(name) = name.filter(|_| guessed != Some(submitted.target_id)) {
            self.handoffs.learn(org_id, &name, submitted.target_id);
        }
        Ok(Submitted {
            id: submitted.id,
            served: submitted.served,
            expires_at_ms: match &submitted.approval {
                Some(approval) => approval.expires_at_ms,
                None => submitted
                    .created_ms
                    .saturating_add(millis(self.settings.queue_ttl)),
            },
            replayed: submitted.replayed,
            status: submitted.status,
            approval: submitted.approval,
        })
    }

    /// Writes `submit` and, in the same batch behind it, the claim the
    /// poller whose offer was `taken` would make (see `HandOffs`), then
    /// hands that poller the claim's answer. The run submitted is woken
    /// for as [`submit_run_once`](Control::submit_run_once) wakes for it
    /// unless that claim took it.
    async fn submit_handing_off(
        &self,
        submit: impl Fn(&Tx<'_>) -> Result<queue::Submitted, Error> + Send + 'static,
        taken: Taken<Claim>,
    ) -> Result<queue::Submitted, Error> {
        // The run this submission left queued (id, target), as it commits;
        // taken by whichever wakes pollers for it if the claim did not
        // take it: the claim as it commits (right after the submission,
        // same batch), or, if the claim failed, the task below.
        let queued: Arc<Mutex<Option<(String, i64)>>> = Arc::default();
        let on_submit = {
            let (queued, outbox) = (Arc::clone(&queued), Arc::clone(&self.slack_outbox));
            move |s: &queue::Submitted| {
                cue(s, &outbox, |id, target| {
                    *lock(&queued) = Some((id.to_owned(), target));
                });
            }
        };
        // Whether the submission queued a run, as it last ran: the claim
        // behind it in the batch runs after it, on the same thread. A run
        // waiting for approval (or none) leaves nothing to claim: the
        // poller was waiting with nothing queued for it.
        let queues = Arc::new(AtomicBool::new(false));
        let submit = {
            let queues = Arc::clone(&queues);
            move |tx: &Tx<'_>| {
                let submitted = submit(tx);
                let queued = matches!(&submitted, Ok(s) if s.status == RunStatus::Queued);
                queues.store(queued, Ordering::SeqCst);
                submitted
            }
        };
        let (agent, poll_id) = (Arc::clone(&taken.agent), taken.poll_id.clone());
        let ttl = millis(self.settings.lease_ttl);
        let claim = move |tx: &Tx<'_>| match queues.load(Ordering::SeqCst) {
            true => queue::claim(tx, &agent, ttl, Some(&poll_id)).map(Some),
            false => Ok(None),
        };
        let wake_unless = {
            let (queued, wakeups) = (Arc::clone(&queued), Arc::clone(&self.wakeups));
            move |took: Option<&str>| {
                let queued = lock(&queued).take();
                if let Some((id, target)) = queued {
                    if took != Some(id.as_str()) {
                        wakeups.run_queued(target);
                    }
                }
            }
        };
        let on_claim = {
            let wake_unless = wake_unless.clone();
            move |claimed: &Option<Claim>| {
                wake_unless(match claimed {
                    Some(Claim::Assigned(assignment, _)) => Some(assignment.run_id.as_str()),
                    _ => None,
                });
            }
        };
        let (submitted, claimed) = self
            .db
            .write_beside_pair((submit, on_submit), (claim, on_claim));
        // Its own task: the poller waits for the answer whatever becomes of
        // this request (its client may hang up). The answer comes once the
        // claim is durable.
        tokio::spawn(async move {
            match claimed.await {
                Ok(Some(claim)) => taken.hand(claim),
                // Dropped: none was made, and the poller looks itself.
                Ok(None) => {}
                Err(e) => {
                    // The submission may have committed without it.
                    wake_unless(None);
                    taken.fail(e);
                }
            }
        });
        submitted.await
    }

    /// The org's runs, newest first.
    pub async fn list_runs(&self, who: &Member, filter: RunFilter) -> Result<Vec<RunView>, Error> {
        who.require(Action::ReadRuns)?;
        let status = match filter.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown status {s:?}; one of: {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                ))
            })?),
        };
        let source = match filter.source.as_deref() {
            None | Some("") => None,
            Some(s) => Some(RunSource::parse(s).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown source {s:?}; one of: {}",
                    RunSource::ALL.map(RunSource::as_str).join(", ")
                ))
            })?),
        };
        let filter = store::runs::Filter {
            status,
            target: filter.target.filter(|t| !t.is_empty()),
            before: filter.before.filter(|b| !b.is_empty()),
            submitter: filter.submitter.filter(|s| !s.is_empty()),
            source,
            since_ms: filter.since_ms,
            until_ms: filter.until_ms,
            limit: filter.limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST),
        };
        let org_id = who.org_id;
        self.db
            .read(move |tx| store::runs::list(tx, org_id, filter))
            .await
    }

    /// The org's run `id`.
    pub async fn run(&self, who: &Member, id: String) -> Result<RunView, Error> {
        who.require(Action::ReadRuns)?;
        let org_id = who.org_id;
        self.db.read(move |tx| queue::view(tx, org_id, &id)).await
    }

    /// Cancels run `id`: a queued run (or one waiting for approval) at once;
    /// a running one is flagged and
    /// its agent told at its next heartbeat (or log upload).
    pub async fn cancel_run(&self, who: &Member, id: String) -> Result<Cancellation, Error> {
        who.require(Action::CancelRuns)?;
        let (org_id, actor) = (who.org_id, who.actor.clone());
        let (outcome, run) = self
            .db
            .write(move |tx| {
                let outcome = queue::cancel(tx, org_id, &id, &actor)?;
                Ok((outcome, queue::view(tx, org_id, &id)?))
            })
            .await?;
        let immediate = matches!(outcome, Canceled::Now);
        if immediate {
            self.watchers.touch(&run.id);
            self.slack_outbox.cue();
        }
        Ok(Cancellation { immediate, run })
    }

    /// A page of run `id`'s output from `after`.
    pub async fn log_page(&self, who: &Member, id: String, after: u64) -> Result<Page, Error> {
        who.require(Action::ReadLogs)?;
        let org_id = who.org_id;
        self.db
            .read(move |tx| logs::page(tx, org_id, &id, after))
            .await
    }

    /// Subscribes to run `id`'s changes (new output, its end). Subscribe
    /// before reading the first page, so nothing written in between is
    /// missed.
    pub fn watch_run(&self, who: &Member, id: &str) -> Result<RunWatch, Error> {
        who.require(Action::ReadLogs)?;
        Ok(self.watchers.watch(id))
    }
}

/// A run with the end of its output.
#[derive(Debug)]
pub struct RunTail {
    /// The run.
    pub run: RunView,
    /// At least the last `min_bytes` asked for of its stored (redacted)
    /// output, all streams in the order they were produced (or all of it).
    pub tail: Vec<u8>,
    /// Whether every chunk the agent said it made is stored.
    pub complete: bool,
}

impl Control {
    /// Run `id` and the end of its output, read in one snapshot.
    pub async fn run_tail(
        &self,
        who: &Member,
        id: String,
        min_bytes: usize,
    ) -> Result<RunTail, Error> {
        who.require(Action::ReadLogs)?;
        let org_id = who.org_id;
        self.db
            .read(move |tx| {
                let ((run, complete), tail) =
                    store::logs::tail(tx, org_id, &id, min_bytes, |tx| {
                        Ok((
                            queue::view(tx, org_id, &id)?,
                            store::logs::complete(tx, org_id, &id)?,
                        ))
                    })?;
                Ok(RunTail {
                    run,
                    tail,
                    complete,
                })
            })
            .await
    }
}

/// What a submission's commit cues: for a run queued, `queued` (pollers
/// may claim it as soon as it is committed: their claim is answered only
/// once it, and so this submission, is on disk); for a run waiting for
/// approval, Slack's outbox (the run is not the pollers' yet).
fn cue(s: &queue::Submitted, outbox: &Outbox, queued: impl FnOnce(&str, i64)) {
    match s.status {
        RunStatus::Queued => queued(&s.id, s.target_id),
        RunStatus::PendingApproval => outbox.cue(),
        _ => {}
    }
}

/// `m` locked, poisoned or not: what it guards (a run queued) is whole
/// either way.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
