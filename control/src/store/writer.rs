//! What both backends' writer threads share: the jobs callers send, how
//! they are batched and run (each in its own savepoint), and whether
//! committed writes are being made durable.

use super::tx::Tx;
use crate::error::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Most jobs one transaction holds (bounds the latency a batch adds).
const MAX_BATCH: usize = 512;
/// Reader connections kept open (more are opened under load, then closed).
pub(super) const IDLE_READERS: usize = 8;
/// Most reader connections open at once: each holds file descriptors (the
/// database and its WAL), and the HTTP edge keeps a fixed reserve of
/// descriptors for the database (`api`'s `FD_RESERVE`), so the number must
/// be bounded for that reserve to suffice whatever the load.
pub const MAX_READERS: usize = 16;
/// The answer to a change that was committed but could not be made durable.
pub(crate) fn not_durable() -> Error {
    Error::Unavailable(
        "the change may or may not have been applied: it was committed, but the database could not make it durable; retry (with the same idempotency key, for a run submission)"
            .to_owned(),
    )
}

/// Whether committed writes are being made durable: the lease sweeper judges
/// leases only while they are (an agent whose heartbeats could not be
/// written was not heard), and health checks can say so.
#[derive(Debug)]
pub(super) struct Health {
    /// Unix ms since which every batch was committed and made durable, or
    /// [`Health::FAILING`] while the latest was not.
    writable_since: AtomicI64,
}

impl Health {
    const FAILING: i64 = i64::MIN;

    pub(super) fn new() -> Health {
        Health {
            writable_since: AtomicI64::new(now_ms()),
        }
    }

    pub(super) fn failed(&self) {
        self.writable_since.store(Health::FAILING, Ordering::SeqCst);
    }

    pub(super) fn succeeded(&self) {
        // Only the first success after a failure starts a new period.
        let _ = self.writable_since.compare_exchange(
            Health::FAILING,
            now_ms(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    pub(super) fn since(&self) -> Option<i64> {
        let since = self.writable_since.load(Ordering::SeqCst);
        (since != Health::FAILING).then_some(since)
    }
}

/// A unit of work for the writer thread.
pub(super) trait WriteJob: Send {
    /// Runs the job; returns whether its changes should be kept.
    fn run(&mut self, tx: &Tx<'_>) -> bool;
    /// Called on the writer thread as soon as the batch committed (before
    /// it is durable).
    fn committed(&mut self);
    /// Answers the caller once the batch's fate is known (durable, or not).
    fn deliver(self: Box<Self>, committed: Result<(), Error>);
    /// Fails a job that returned `Ok`: a statement it left to be sent
    /// after it returned failed (see [`Between::Job`]).
    fn fail(&mut self, error: Error);
    /// Whether the job may run beside other replicas' writes (see
    /// [`Db::write_beside`](super::Db::write_beside)).
    fn beside(&self) -> bool;
    /// Whether the job may be run again, in a new transaction, after the
    /// one it ran in was rolled back: its work changes nothing but through
    /// the transaction, so running it twice that way is running it once.
    fn may_run_again(&self) -> bool;
    /// Forgets what the job answered: the transaction it ran in was rolled
    /// back, and it will run again.
    fn forget_answer(&mut self);
}

/// What a job runs: once, or again each time its batch is run.
pub(super) trait Work<T>: Send {
    /// Runs it; `None` if it ran before and cannot run again.
    fn call(&mut self, tx: &Tx<'_>) -> Option<Result<T, Error>>;
    /// Whether it may run again ([`WriteJob::may_run_again`]).
    fn again(&self) -> bool;
}

/// Work that runs once.
pub(super) struct Once<F>(pub(super) Option<F>);

impl<T, F> Work<T> for Once<F>
where
    F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send,
{
    fn call(&mut self, tx: &Tx<'_>) -> Option<Result<T, Error>> {
        self.0.take().map(|work| work(tx))
    }

    fn again(&self) -> bool {
        false
    }
}

/// Work that may run again ([`WriteJob::may_run_again`]).
pub(super) struct Again<F>(pub(super) F);

impl<T, F> Work<T> for Again<F>
where
    F: Fn(&Tx<'_>) -> Result<T, Error> + Send,
{
    fn call(&mut self, tx: &Tx<'_>) -> Option<Result<T, Error>> {
        Some((self.0)(tx))
    }

    fn again(&self) -> bool {
        true
    }
}

pub(super) type Hook<T> = Box<dyn FnOnce(&T) + Send>;

pub(super) struct Job<T, W> {
    pub(super) work: W,
    pub(super) on_commit: Option<Hook<T>>,
    pub(super) result: Option<Result<T, Error>>,
    pub(super) reply: oneshot::Sender<Result<T, Error>>,
    /// See [`WriteJob::beside`].
    pub(super) beside: bool,
}

impl<T, W> WriteJob for Job<T, W>
where
    T: Send,
    W: Work<T>,
{
    fn committed(&mut self) {
        if let (Some(hook), Some(Ok(value))) = (self.on_commit.take(), self.result.as_ref()) {
            hook(value);
        }
    }

    fn run(&mut self, tx: &Tx<'_>) -> bool {
        // A bug in one job must not take the writer thread (and with it
        // every later write) down.
        let result = match catch_unwind(AssertUnwindSafe(|| self.work.call(tx))) {
            Ok(Some(result)) => result,
            Ok(None) => return false,
            Err(_) => Err(Error::internal("a database job panicked")),
        };
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn fail(&mut self, error: Error) {
        self.result = Some(Err(error));
    }

    fn beside(&self) -> bool {
        self.beside
    }

    fn may_run_again(&self) -> bool {
        self.work.again()
    }

    fn forget_answer(&mut self) {
        self.result = None;
    }

    fn deliver(self: Box<Self>, committed: Result<(), Error>) {
        let answer = match (self.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Ok(())) => Err(Error::internal("a database job was never run")),
        };
        // The caller may have gone away (client disconnected); its change
        // stands, there is just nobody left to tell.
        let _ = self.reply.send(answer);
    }
}

pub(super) enum Message {
    Job(Box<dyn WriteJob>),
    /// Jobs that go in one batch, in this order, whole: the batch may then
    /// hold a few more than [`MAX_BATCH`].
    Jobs(Batch),
    Stop,
}

pub(super) type Batch = Vec<Box<dyn WriteJob>>;

/// Waits for a job, then takes those already waiting behind it (up to
/// [`MAX_BATCH`], but never part of a [`Message::Jobs`]); `None` once told to stop with nothing left. A `Stop`
/// behind the jobs sets `stopping`: the batch still runs.
pub(super) fn next_batch(jobs: &mpsc::Receiver<Message>, stopping: &mut bool) -> Option<Batch> {
    let mut batch: Batch = match jobs.recv() {
        Ok(Message::Job(job)) => vec![job],
        Ok(Message::Jobs(jobs)) => jobs,
        Ok(Message::Stop) | Err(_) => return None,
    };
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(Message::Job(job)) => batch.push(job),
            Ok(Message::Jobs(more)) => batch.extend(more),
            Ok(Message::Stop) => {
                *stopping = true;
                break;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Opens the savepoint of a batch's first job: the engine sends it with its
/// `BEGIN` (on PostgreSQL, where every control statement is a round trip,
/// a single-job batch took four: `BEGIN` with the lock, `SAVEPOINT`,
/// `RELEASE`, `COMMIT`; it now takes two).
pub(super) const FIRST_SAVEPOINT: &str = "SAVEPOINT job";
/// Between two jobs when the first is kept: its savepoint released, the
/// next one's opened, in one round trip.
const KEEP_AND_NEXT: &str = "RELEASE job; SAVEPOINT job";
/// Between two jobs when the first is not kept: rolling back to its
/// savepoint keeps the savepoint open, and the next job runs in it.
const DROP_AND_NEXT: &str = "ROLLBACK TO job";
/// Ends a batch whose last job is kept. The `RELEASE` is not there to keep
/// the job's changes (`COMMIT` would) but to fail when the transaction is
/// aborted: PostgreSQL answers a `COMMIT` of an aborted transaction by
/// rolling it back *without an error*, which would answer every job of the
/// batch `Ok` and store none of them (a job that went on after one of its
/// statements failed). A failing `RELEASE` stops the batch before its
/// `COMMIT`, and the engine answers the error.
const KEEP_AND_COMMIT: &str = "RELEASE job; COMMIT";
/// Ends a batch whose last job is not kept. If the rollback fails, the
/// `COMMIT` behind it does not run (a multi-statement batch stops at its
/// first error), so the job's changes can never be committed.
const DROP_AND_COMMIT: &str = "ROLLBACK TO job; COMMIT";
/// Ends the last job of a batch that appends its audit entries when it
/// commits ([`Tx::defers_appends`]), when it is kept: the engine's `close`
/// then appends and commits.
const KEEP_AND_CLOSE: &str = "RELEASE job";
/// The same, when the last job is not kept.
const DROP_AND_CLOSE: &str = "ROLLBACK TO job; RELEASE job";

/// How the statement ending a job failed.
pub(super) enum Between<E> {
    /// The server refused a statement the job left to be sent with it (on
    /// PostgreSQL, where statements whose outcome a job does not look at
    /// are sent with the next one: `Stmt::execute_later`): the job failed,
    /// the transaction is aborted and the statement did not run.
    Job(Error),
    /// The statement itself failed, or the connection did (then nothing is
    /// known of either).
    Batch(E),
}

/// The statement ending a job, and whether the engine may leave it to be
/// sent with the next statement of the transaction (one always follows:
/// it is not the `COMMIT`).
pub(super) struct JobEnd {
    pub(super) sql: &'static str,
    pub(super) may_wait: bool,
}

/// A batch that failed as a whole: every job is answered `error`.
pub(super) struct BatchFailed<E> {
    pub(super) error: E,
    /// Whether the failing statement held the `COMMIT`: if the connection
    /// was lost, the batch may have been committed.
    pub(super) commit_sent: bool,
}

/// Runs each job of `batch` in its own savepoint of the open transaction,
/// whose first savepoint ([`FIRST_SAVEPOINT`]) the engine opened with its
/// `BEGIN`, so that a failing job rolls back only its own changes, and ends
/// the transaction. `end_job` sends what the job left to be sent with the
/// statement that follows it (releasing or rolling back its savepoint,
/// then opening the next job's or committing), or leaves it all to go with
/// the next statement if it [`JobEnd::may_wait`] (on PostgreSQL, after a
/// job that left nothing to send: one round trip less); `run` runs a
/// statement alone. A job whose last statements fail there is failed and
/// rolled back to its savepoint like any other failing job. A failing statement
/// between jobs fails the batch: the transaction then cannot be trusted to
/// hold exactly the kept jobs, and the engine rolls it all back (the
/// `COMMIT` was never sent unless [`BatchFailed::commit_sent`]). The same
/// SQL on both backends.
///
/// A transaction that appends its audit entries as it commits
/// ([`Tx::defers_appends`], PostgreSQL beside other replicas) ends its last
/// job's savepoint on its own and leaves the rest to `close`, which
/// appends what the kept jobs left and commits.
pub(super) fn run_jobs<E>(
    batch: &mut Batch,
    tx: &Tx<'_>,
    mut end_job: impl FnMut(JobEnd) -> Result<(), Between<E>>,
    mut run: impl FnMut(&str) -> Result<(), E>,
    close: impl FnOnce() -> Result<(), E>,
) -> Result<(), BatchFailed<E>> {
    let last = batch.len().saturating_sub(1);
    let closing = tx.defers_appends();
    for (i, job) in batch.iter_mut().enumerate() {
        let end = i == last;
        tx.begin_job();
        let kept = job.run(tx);
        if !kept {
            tx.forget_job();
        }
        let failed = |error| BatchFailed {
            error,
            commit_sent: end && !closing,
        };
        let ending = JobEnd {
            sql: next_statement(kept, end, closing),
            // Only the `COMMIT` has nothing after it.
            may_wait: !end || closing,
        };
        match end_job(ending) {
            Ok(()) => {}
            Err(Between::Job(error)) => {
                // The transaction is aborted, the job's savepoint still
                // open: rolling back to it undoes the job and the abort.
                job.fail(error);
                tx.forget_job();
                run(next_statement(false, end, closing)).map_err(failed)?;
            }
            Err(Between::Batch(error)) => return Err(failed(error)),
        }
    }
    if closing {
        close().map_err(|error| BatchFailed {
            error,
            commit_sent: true,
        })?;
    }
    Ok(())
}

/// The statement after a job: whether it is `kept`, whether it is the
/// batch's `last`, whether the engine's `close` commits (see [`run_jobs`]).
fn next_statement(kept: bool, last: bool, closing: bool) -> &'static str {
    match (kept, last, closing) {
        (true, false, _) => KEEP_AND_NEXT,
        (false, false, _) => DROP_AND_NEXT,
        (true, true, false) => KEEP_AND_COMMIT,
        (false, true, false) => DROP_AND_COMMIT,
        (true, true, true) => KEEP_AND_CLOSE,
        (false, true, true) => DROP_AND_CLOSE,
    }
}
