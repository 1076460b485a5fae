//! The PostgreSQL engine: its writer thread, reader threads and standalone
//! transactions, over the connections of [`super::pg`].

use super::pg::{BEGIN_WRITE, Connector, DatabaseUrl, PgConn, error};
use super::tx::Tx;
use super::writer::{
    FIRST_SAVEPOINT, Health, MAX_READERS, Message, next_batch, not_durable, run_jobs,
};
use crate::error::{Error, OpenError};
use std::cell::RefCell;
use std::sync::{Arc, Mutex, mpsc};

/// Begins a batch's write transaction holding
/// [`WRITE_LOCK`](super::pg::WRITE_LOCK) and the savepoint of its first
/// job, in one round trip (see [`begin_on`]).
fn begin_batch(conn: &mut Option<PgConn>, connector: &Connector) -> Result<(), postgres::Error> {
    static BEGIN: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{}; {FIRST_SAVEPOINT}", *BEGIN_WRITE));
    begin_on(conn, connector, |c| c.client.batch_execute(&BEGIN))
}

/// Begins a transaction on `conn` with `begin`, connecting first if there is
/// no connection. A connection found broken (the server restarted since its
/// last use) is replaced once: no statement of the transaction has run yet,
/// so nothing is lost by retrying, and the first request after PostgreSQL
/// comes back succeeds instead of being told to retry.
fn begin_on(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    begin: impl Fn(&mut PgConn) -> Result<(), postgres::Error>,
) -> Result<(), postgres::Error> {
    if let Some(c) = conn.as_mut().filter(|c| !c.client.is_closed()) {
        match begin(c) {
            Ok(()) => return Ok(()),
            Err(e) if !(e.is_closed() || e.code().is_none()) => {
                let _ = c.client.batch_execute("ROLLBACK");
                return Err(e);
            }
            Err(_) => {}
        }
    }
    *conn = None;
    let mut fresh = connector.connect()?;
    begin(&mut fresh)?;
    *conn = Some(fresh);
    Ok(())
}

/// The PostgreSQL writer thread: batches as SQLite's does, each batch one
/// transaction under [`WRITE_LOCK`](super::pg::WRITE_LOCK), each job in its own savepoint. A
/// commit PostgreSQL acknowledged is durable; one whose answer was lost (the
/// connection broke during `COMMIT`) may or may not have happened and is
/// answered so ([`not_durable`]).
pub(super) fn writer_loop(
    connector: Connector,
    jobs: mpsc::Receiver<Message>,
    health: Arc<Health>,
    opened: mpsc::SyncSender<Result<(), OpenError>>,
    #[cfg(any(test, feature = "fault-injection"))] faults: crate::settings::Faults,
) {
    let first = connector
        .connect()
        .map_err(|e| connector.open_error(&e))
        .and_then(|mut conn| super::pg_schema::migrate(&mut conn, &connector).map(|()| conn));
    let mut conn = match first {
        Ok(conn) => {
            let _ = opened.send(Ok(()));
            Some(conn)
        }
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let mut stopping = false;
    while !stopping {
        let Some(mut batch) = next_batch(&jobs, &mut stopping) else {
            break;
        };
        if let Err(e) = begin_batch(&mut conn, &connector) {
            health.failed();
            let err = error(&e);
            for job in batch {
                job.deliver(Err(err.clone()));
            }
            continue;
        }
        let Some(c) = conn.as_mut() else {
            continue; // begin_batch left a connection: cannot happen
        };
        let end = {
            let cell = RefCell::new(c.tx());
            run_jobs(&mut batch, &Tx::postgres(&cell), |sql| {
                cell.borrow_mut().batch(sql)
            })
        };
        // Whether the statement with `COMMIT` was sent decides what a lost
        // connection means: before it, the batch certainly did not commit.
        let committed = match end {
            Ok(end) => c.client.batch_execute(end).map_err(|e| (e, true)),
            Err(e) => Err((e, false)),
        };
        // The injected fault: PostgreSQL committed, but its answer was lost
        // on the way (as when the connection breaks during `COMMIT`).
        #[cfg(any(test, feature = "fault-injection"))]
        if committed.is_ok() && faults.sync_fails() {
            health.failed();
            for job in batch {
                job.deliver(Err(not_durable()));
            }
            continue;
        }
        match committed {
            Ok(()) => {
                health.succeeded();
                for job in &mut batch {
                    job.committed();
                }
                for job in batch {
                    job.deliver(Ok(()));
                }
            }
            Err((e, commit_sent)) => {
                health.failed();
                let err = if e.is_closed() || e.code().is_none() {
                    conn = None;
                    if commit_sent {
                        not_durable()
                    } else {
                        error(&e)
                    }
                } else {
                    let _ = c.client.batch_execute("ROLLBACK");
                    error(&e)
                };
                for job in batch {
                    job.deliver(Err(err.clone()));
                }
            }
        }
    }
}

/// A read for a reader thread.
type ReadJob = Box<dyn FnOnce(&mut Option<PgConn>, &Connector) + Send>;

/// Reader connections to PostgreSQL, bounded as SQLite's are: each lives on
/// a thread of its own. (The synchronous client runs a runtime of its own,
/// which tokio forbids inside the server's runtime, blocking pool included;
/// the same holds for the writer thread and [`Standalone`].)
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
                let (rx, connector) = (Arc::clone(&rx), connector.clone());
                std::thread::Builder::new()
                    .name(format!("sealrun-db-reader-{i}"))
                    .spawn(move || reader_thread(&rx, &connector))
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
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn, connector| {
            let _ = reply.send(read_snapshot(conn, connector, work));
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

fn reader_thread(jobs: &Mutex<mpsc::Receiver<ReadJob>>, connector: &Connector) {
    let mut conn: Option<PgConn> = None;
    loop {
        // The lock is held only while waiting for the next job.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        job(&mut conn, connector);
    }
}

/// One read on `conn` (made or replaced as [`begin_on`] does; left `None`
/// if no connection can be made, and the read answers why).
fn read_snapshot<T>(
    conn: &mut Option<PgConn>,
    connector: &Connector,
    work: impl FnOnce(&Tx<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    if let Err(e) = begin_on(conn, connector, |c| c.client.batch_execute(BEGIN)) {
        *conn = None;
        return Err(error(&e));
    }
    let Some(c) = conn.as_mut() else {
        return Err(Error::internal("a reader lost its connection"));
    };
    let result = {
        let cell = RefCell::new(c.tx());
        work(&Tx::postgres(&cell))
    };
    if c.client.batch_execute("ROLLBACK").is_err() {
        *conn = None;
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
            let mut conn = connector.connect().map_err(|e| connector.open_error(&e))?;
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
            let mut conn = connector.connect().map_err(|e| db_err(&e))?;
            conn.begin_write().map_err(|e| db_err(&e))?;
            let result = {
                let cell = RefCell::new(conn.tx());
                work(&Tx::postgres(&cell))
            };
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            conn.client.batch_execute(end).map_err(|e| db_err(&e))?;
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
