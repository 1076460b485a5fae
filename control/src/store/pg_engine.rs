//! The PostgreSQL engine: its writer thread, reader threads and standalone
//! transactions, over the connections of [`super::pg`].

use super::pg::{
    BEGIN_BESIDE, BEGIN_WRITE, Connector, DatabaseUrl, PgConn, Sent, connection_lost, error,
    runtime,
};
use super::tx::Tx;
use super::writer::{
    Batch, Between, FIRST_SAVEPOINT, Health, MAX_READERS, Message, next_batch, not_durable,
    run_jobs,
};
use crate::error::{Error, OpenError};
use std::cell::RefCell;
use std::sync::{Arc, Mutex, mpsc};
use tokio::runtime::Runtime;

/// Begins a batch's write transaction holding
/// [`WRITE_LOCK`](super::pg::WRITE_LOCK), shared if every job may run
/// `beside` other replicas' (else exclusively), and the savepoint of its
/// first job, in one round trip (see [`begin_on`]).
fn begin_batch(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    runtime: &Arc<Runtime>,
    beside: bool,
) -> Result<(), postgres::Error> {
    static ALONE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{}; {FIRST_SAVEPOINT}", *BEGIN_WRITE));
    static BESIDE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{}; {FIRST_SAVEPOINT}", *BEGIN_BESIDE));
    let begin: &str = if beside { &BESIDE } else { &ALONE };
    begin_on(conn, connector, runtime, |c| c.batch_execute(begin))
}

/// How a batch failed.
enum Failed {
    /// A statement failed (the error says whether the connection is gone).
    Statement(postgres::Error),
    /// Appending the audit entries its jobs left for the commit failed,
    /// before the `COMMIT` was sent.
    Appending(Error),
    /// The end of a job, left to be sent with the next statement
    /// ([`PgTx::end_job_later`](super::pg::PgTx::end_job_later)), failed.
    Control(Error),
}

/// Begins a transaction on `conn` with `begin`, connecting first if there is
/// no connection. A connection found broken (the server restarted since its
/// last use) is replaced once: no statement of the transaction has run yet,
/// so nothing is lost by retrying, and the first request after PostgreSQL
/// comes back succeeds instead of being told to retry.
fn begin_on(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    runtime: &Arc<Runtime>,
    begin: impl Fn(&mut PgConn) -> Result<(), postgres::Error>,
) -> Result<(), postgres::Error> {
    if let Some(c) = conn.as_mut().filter(|c| !c.is_closed()) {
        match begin(c) {
            Ok(()) => return Ok(()),
            Err(e) if !connection_lost(&e) => {
                let _ = c.batch_execute("ROLLBACK");
                return Err(e);
            }
            Err(_) => {}
        }
    }
    *conn = None;
    let mut fresh = connector.connect(runtime)?;
    begin(&mut fresh)?;
    *conn = Some(fresh);
    Ok(())
}

/// Connects, brings the schema up to date, and answers `opened`: the
/// writer's first steps. The migration runs on a synchronous client of
/// its own, once.
fn open_writer(
    connector: &Connector,
    opened: &mpsc::SyncSender<Result<(), OpenError>>,
) -> Option<(Arc<Runtime>, PgConn)> {
    let first = connector.runtime().and_then(|runtime| {
        let mut sync = connector
            .connect_sync()
            .map_err(|e| connector.open_error(&e))?;
        super::pg_schema::migrate(&mut sync, connector)?;
        let conn = connector
            .connect(&runtime)
            .map_err(|e| connector.open_error(&e))?;
        Ok((runtime, conn))
    });
    match first {
        Ok(first) => {
            let _ = opened.send(Ok(()));
            Some(first)
        }
        Err(e) => {
            let _ = opened.send(Err(e));
            None
        }
    }
}

/// The PostgreSQL writer thread: batches as SQLite's does, each batch one
/// transaction under [`WRITE_LOCK`](super::pg::WRITE_LOCK), each job in its
/// own savepoint. A commit PostgreSQL acknowledged is durable; one whose
/// answer was lost (the connection broke during `COMMIT`) may or may not
/// have happened and is answered so ([`not_durable`]).
pub(super) fn writer_loop(
    connector: Connector,
    jobs: mpsc::Receiver<Message>,
    health: Arc<Health>,
    opened: mpsc::SyncSender<Result<(), OpenError>>,
    #[cfg(any(test, feature = "fault-injection"))] faults: crate::settings::Faults,
) {
    let Some((runtime, first)) = open_writer(&connector, &opened) else {
        return;
    };
    let mut conn = Some(first);
    let mut stopping = false;
    while !stopping {
        let Some(batch) = next_batch(&jobs, &mut stopping) else {
            break;
        };
        // Jobs that may run beside other replicas' go in a transaction of
        // their own, so that others (heartbeats, log uploads) in the same
        // batch do not make it exclusive.
        let (beside, alone): (Batch, Batch) = batch.into_iter().partition(|job| job.beside());
        for (beside, batch) in [(true, beside), (false, alone)] {
            // Jobs that may run again go without savepoints first.
            let batch =
                if beside && !batch.is_empty() && batch.iter().all(|job| job.may_run_again()) {
                    commit_at_once(
                        &mut conn,
                        &connector,
                        &runtime,
                        &health,
                        batch,
                        #[cfg(any(test, feature = "fault-injection"))]
                        &faults,
                    )
                } else {
                    batch
                };
            if !batch.is_empty() {
                commit_batch(
                    &mut conn,
                    &connector,
                    &runtime,
                    &health,
                    batch,
                    beside,
                    #[cfg(any(test, feature = "fault-injection"))]
                    &faults,
                );
            }
        }
    }
    if let Some(conn) = conn {
        conn.close();
    }
}

/// Runs `batch`, of jobs that may run again and beside other replicas', in
/// one transaction without a savepoint per job (on PostgreSQL each is a
/// message, an answer and a subtransaction: as much again as the jobs of a
/// run's dispatch), holding [`WRITE_LOCK`](super::pg::WRITE_LOCK) shared,
/// and answers every job if it commits. Gives the batch back, to be run
/// the careful way ([`commit_batch`]), if the server refused anything, so
/// that nothing was committed: a job (its result, or a statement of it,
/// even one it went on after), a statement it left to be sent later,
/// appending the audit entries, or the `COMMIT` itself; or if the
/// connection was lost before the `COMMIT` was sent. The transaction is
/// then rolled back, so each job is run again from nothing. A connection
/// lost with the `COMMIT` is answered [`not_durable`]. Empty if it
/// answered every job.
fn commit_at_once(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    runtime: &Arc<Runtime>,
    health: &Health,
    mut batch: Batch,
    #[cfg(any(test, feature = "fault-injection"))] faults: &crate::settings::Faults,
) -> Batch {
    if begin_on(conn, connector, runtime, |c| c.batch_execute(&BEGIN_BESIDE)).is_err() {
        // The careful way begins again, and answers why if it fails too.
        return batch;
    }
    let Some(c) = conn.as_mut() else {
        return batch; // begin_on left a connection: cannot happen
    };
    let committed = {
        let cell = RefCell::new(c.tx());
        let tx = Tx::postgres_beside(&cell);
        let ran = batch.iter_mut().all(|job| {
            tx.begin_job();
            job.run(&tx) && !cell.borrow().erred()
        });
        // What the last job left goes with the appends' first statement
        // or, if none, with the `COMMIT`. The `SAVEPOINT` fails if the
        // transaction is aborted, and the `COMMIT` behind it then never
        // runs: PostgreSQL answers the `COMMIT` of an aborted transaction
        // by rolling it back without an error.
        let appended = ran && super::audit::append_deferred(&tx).is_ok() && !cell.borrow().erred();
        appended.then(|| cell.borrow_mut().batch("SAVEPOINT done; COMMIT"))
    };
    let ended = match committed {
        Some(Ok(())) => Ok(()),
        // The server refused a statement: nothing was committed (an error
        // before the `COMMIT` stops it, and a `COMMIT` that fails rolls
        // back), so nothing is lost by running it all again.
        Some(Err(Sent::Later(e) | Sent::Now(e))) if !connection_lost(&e) => {
            let _ = c.batch_execute("ROLLBACK");
            return hand_back(batch);
        }
        // The connection was lost with the `COMMIT` (the server's
        // refusals were handed back above): nothing is known of it.
        Some(Err(_)) => {
            *conn = None;
            Err(not_durable())
        }
        None => {
            let _ = c.batch_execute("ROLLBACK");
            return hand_back(batch);
        }
    };
    answer(
        health,
        batch,
        ended,
        #[cfg(any(test, feature = "fault-injection"))]
        faults,
    );
    Vec::new()
}

/// Answers every job of `batch` as the transaction `ended`: committed, or
/// why not.
fn answer(
    health: &Health,
    mut batch: Batch,
    ended: Result<(), Error>,
    #[cfg(any(test, feature = "fault-injection"))] faults: &crate::settings::Faults,
) {
    // The injected fault: PostgreSQL committed, but its answer was lost
    // on the way (as when the connection breaks during `COMMIT`).
    #[cfg(any(test, feature = "fault-injection"))]
    let ended = match ended {
        Ok(()) if faults.sync_fails() => Err(not_durable()),
        ended => {
            faults.delay_answers();
            ended
        }
    };
    match ended {
        Ok(()) => {
            health.succeeded();
            for job in &mut batch {
                job.committed();
            }
            for job in batch {
                job.deliver(Ok(()));
            }
        }
        Err(err) => {
            health.failed();
            for job in batch {
                job.deliver(Err(err.clone()));
            }
        }
    }
}

/// `batch`, rolled back, to be run again: what its jobs answered is
/// forgotten, so that a job the next run does not reach is answered why
/// that run failed, not what the rolled-back one said.
fn hand_back(mut batch: Batch) -> Batch {
    for job in &mut batch {
        job.forget_answer();
    }
    batch
}

/// Runs `batch` in one transaction (see [`run_jobs`]), holding
/// [`WRITE_LOCK`](super::pg::WRITE_LOCK) shared if its jobs may run
/// `beside` other replicas', and answers every job.
fn commit_batch(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    runtime: &Arc<Runtime>,
    health: &Health,
    mut batch: Batch,
    beside: bool,
    #[cfg(any(test, feature = "fault-injection"))] faults: &crate::settings::Faults,
) {
    if let Err(e) = begin_batch(conn, connector, runtime, beside) {
        answer(
            health,
            batch,
            Err(error(&e)),
            #[cfg(any(test, feature = "fault-injection"))]
            faults,
        );
        return;
    }
    let Some(c) = conn.as_mut() else {
        return; // begin_batch left a connection: cannot happen
    };
    let ended = {
        let cell = RefCell::new(c.tx());
        let tx = if beside {
            Tx::postgres_beside(&cell)
        } else {
            Tx::postgres(&cell)
        };
        run_jobs(
            &mut batch,
            &tx,
            |end| {
                let mut c = cell.borrow_mut();
                // A job's end left for later failed: the jobs kept before
                // it may have been rolled back with it.
                if let Some(err) = c.take_lost_control() {
                    return Err(Between::Batch(Failed::Control(err)));
                }
                if end.may_wait && c.end_job_later(end.sql) {
                    return Ok(());
                }
                // A job's end left for later goes alone before a `COMMIT`:
                // if it fails, nothing is sent behind it.
                if !end.may_wait {
                    if let Err(sent) = c.send_job_end() {
                        return Err(match (c.take_lost_control(), sent.into_error()) {
                            (Some(err), _) => Between::Batch(Failed::Control(err)),
                            (None, e) if connection_lost(&e) => {
                                Between::Batch(Failed::Control(error(&e)))
                            }
                            // The job's own statement left for later.
                            (None, e) => Between::Job(error(&e)),
                        });
                    }
                }
                let sent = c.batch(end.sql);
                let lost_control = c.take_lost_control();
                sent.map_err(|sent| match (sent, lost_control) {
                    // A broken connection: nothing is known of the
                    // statement after it either (a `COMMIT`, maybe).
                    (Sent::Later(e) | Sent::Now(e), _) if connection_lost(&e) => {
                        Between::Batch(Failed::Statement(e))
                    }
                    // The end of the job before, left for later, failed:
                    // rolling back to the savepoint would undo that job.
                    (Sent::Later(_), Some(err)) => Between::Batch(Failed::Control(err)),
                    // The server refused a statement the job left: the
                    // job's failure (the transaction is aborted, the
                    // statement after it did not run).
                    (Sent::Later(e), None) => Between::Job(error(&e)),
                    (Sent::Now(e), _) => Between::Batch(Failed::Statement(e)),
                })
            },
            |sql| {
                cell.borrow_mut()
                    .batch(sql)
                    .map_err(|sent| Failed::Statement(sent.into_error()))
            },
            || {
                super::audit::append_deferred(&tx).map_err(Failed::Appending)?;
                // A failing insert fails the batch: its `COMMIT` then
                // rolled back (the transaction was aborted). A job's end
                // left for later goes alone before it.
                let mut c = cell.borrow_mut();
                if let Err(sent) = c.send_job_end() {
                    return Err(match c.take_lost_control() {
                        Some(err) => Failed::Control(err),
                        None => Failed::Statement(sent.into_error()),
                    });
                }
                c.batch("COMMIT")
                    .map_err(|sent| Failed::Statement(sent.into_error()))
            },
        )
    };
    // Whether the statement with `COMMIT` was sent decides what a lost
    // connection means: before it, the batch certainly did not commit.
    let ended = match ended {
        Ok(()) => Ok(()),
        Err(failed) => Err(match failed.error {
            Failed::Statement(e) if connection_lost(&e) => {
                *conn = None;
                if failed.commit_sent {
                    not_durable()
                } else {
                    error(&e)
                }
            }
            Failed::Statement(e) => {
                let _ = c.batch_execute("ROLLBACK");
                error(&e)
            }
            Failed::Appending(err) | Failed::Control(err) => {
                let _ = c.batch_execute("ROLLBACK");
                err
            }
        }),
    };
    answer(
        health,
        batch,
        ended,
        #[cfg(any(test, feature = "fault-injection"))]
        faults,
    );
}

/// A read for a reader thread.
type ReadJob = Box<dyn FnOnce(&mut Option<PgConn>, &Connector, &Arc<Runtime>) + Send>;

/// Reader connections to PostgreSQL, bounded as SQLite's are: each lives on
/// a thread of its own. (Each thread drives its connection with a runtime
/// of its own, blocking on it, which tokio forbids inside the server's
/// runtime, blocking pool included; the same holds for the writer thread
/// and [`Standalone`].)
pub(crate) struct ReaderPool {
    jobs: Mutex<Option<mpsc::Sender<ReadJob>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl ReaderPool {
    pub(super) fn new(connector: Connector) -> Result<ReaderPool, std::io::Error> {
        let (tx, rx) = mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..MAX_READERS)
            .map(|i| {
                let (rx, connector, runtime) = (Arc::clone(&rx), connector.clone(), runtime()?);
                std::thread::Builder::new()
                    .name(format!("sealrun-db-reader-{i}"))
                    .spawn(move || reader_thread(&rx, &connector, &runtime))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReaderPool {
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// Runs `work` in one read-only `REPEATABLE READ` transaction: every
    /// statement sees the same snapshot, as on SQLite.
    pub(super) async fn read<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        self.on_a_reader(move |conn, connector, runtime| {
            read_snapshot(conn, connector, runtime, work)
        })
        .await
    }

    /// Runs `work`, of one statement, outside a transaction (see
    /// `Db::read_one`).
    pub(super) async fn read_one<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        self.on_a_reader(move |conn, connector, runtime| {
            read_statement(conn, connector, runtime, work)
        })
        .await
    }

    /// Runs `read` on the next free reader thread and waits for its answer.
    async fn on_a_reader<T>(
        &self,
        read: impl FnOnce(&mut Option<PgConn>, &Connector, &Arc<Runtime>) -> Result<T, Error>
        + Send
        + 'static,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn, connector, runtime| {
            let _ = reply.send(read(conn, connector, runtime));
        });
        let sent = self
            .jobs
            .lock()
            .ok()
            .and_then(|jobs| jobs.as_ref().map(|jobs| jobs.send(job).is_ok()));
        if sent != Some(true) {
            return Err(Error::shutting_down());
        }
        answer.await.map_err(|_| Error::shutting_down())?
    }

    /// Stops the reader threads (after the reads already sent).
    pub(super) fn close(&self) {
        drop(self.jobs.lock().ok().and_then(|mut jobs| jobs.take()));
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn reader_thread(
    jobs: &Mutex<mpsc::Receiver<ReadJob>>,
    connector: &Connector,
    runtime: &Arc<Runtime>,
) {
    let mut conn: Option<PgConn> = None;
    loop {
        // The lock is held only while waiting for the next job.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => break,
        };
        let Ok(job) = job else { break };
        job(&mut conn, connector, runtime);
    }
    if let Some(conn) = conn {
        conn.close();
    }
}

/// One read on `conn` (made or replaced as [`begin_on`] does; left `None`
/// if no connection can be made, and the read answers why).
fn read_snapshot<T>(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    runtime: &Arc<Runtime>,
    work: impl FnOnce(&Tx<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    if let Err(e) = begin_on(conn, connector, runtime, |c| c.batch_execute(BEGIN)) {
        *conn = None;
        return Err(error(&e));
    }
    let Some(c) = conn.as_mut() else {
        return Err(Error::internal("a reader lost its connection"));
    };
    let result = read_in(c.tx(), work);
    if c.batch_execute("ROLLBACK").is_err() {
        *conn = None;
    }
    result
}

/// One statement's read on `conn`, outside a transaction (see
/// `Db::read_one`); run again, once, on a new connection if `conn` was
/// found broken (a read changes nothing, so nothing is lost by retrying).
fn read_statement<T>(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    runtime: &Arc<Runtime>,
    work: impl Fn(&Tx<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut fresh = false;
    loop {
        if conn.as_ref().is_none_or(PgConn::is_closed) {
            *conn = Some(connector.connect(runtime).map_err(|e| error(&e))?);
            fresh = true;
        }
        let Some(c) = conn.as_mut() else {
            return Err(Error::internal("a reader lost its connection"));
        };
        let result = read_in(c.tx_of_one_statement(), &work);
        // Broken: closed, or the server's last words (shutting down) heard
        // before the client saw it close (`pg::connection_lost`).
        if fresh || !c.is_closed() {
            return result;
        }
        *conn = None;
    }
}

/// Runs a read's `work` on `tx`. A read that left a write to be sent later
/// fails: nothing would send it (a bug).
fn read_in<T>(
    tx: super::pg::PgTx<'_>,
    work: impl FnOnce(&Tx<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let cell = RefCell::new(tx);
    let result = work(&Tx::postgres(&cell));
    if cell.borrow().has_later() {
        return Err(Error::internal("a read left a write unsent"));
    }
    result
}

/// [`super::Standalone`] on PostgreSQL: each transaction on a connection of
/// its own, on a thread of its own (see [`ReaderPool`]).
pub(crate) struct Standalone {
    connector: Connector,
}

impl Standalone {
    pub(super) fn open(url: &DatabaseUrl) -> Result<Standalone, OpenError> {
        let connector = Connector::new(url)?;
        off_runtime(|| {
            let mut conn = connector
                .connect_sync()
                .map_err(|e| connector.open_error(&e))?;
            super::pg_schema::migrate(&mut conn, &connector)
        })?;
        Ok(Standalone { connector })
    }

    pub(super) fn immediate<T: Send>(
        &mut self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, OpenError> + Send,
    ) -> Result<T, OpenError> {
        let connector = &self.connector;
        off_runtime(|| {
            let db_err = |e: &postgres::Error| connector.open_error(e);
            let runtime = connector.runtime()?;
            let mut conn = connector.connect(&runtime).map_err(|e| db_err(&e))?;
            conn.begin_write().map_err(|e| db_err(&e))?;
            let (result, ended) = {
                let cell = RefCell::new(conn.tx());
                let result = work(&Tx::postgres(&cell));
                // What the work left to be sent goes with the `COMMIT` (and
                // fails it); after a failure, nothing of it is sent.
                // The `SAVEPOINT` fails if the transaction is aborted (work
                // went on after a failed statement), and the `COMMIT` behind
                // it then never runs: a bare `COMMIT` would roll back silently.
                let end = if result.is_ok() {
                    "SAVEPOINT ending; COMMIT"
                } else {
                    cell.borrow_mut().drop_later();
                    "ROLLBACK"
                };
                let ended = cell.borrow_mut().batch(end);
                (result, ended)
            };
            conn.close();
            ended.map_err(|sent| db_err(&sent.into_error()))?;
            result
        })
    }

    pub(super) fn location(&self) -> &str {
        self.connector.location()
    }
}

/// Runs `f` on a thread outside any tokio runtime and waits for it.
pub(super) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
