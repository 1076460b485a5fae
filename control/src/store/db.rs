//! SQLite access: one writer thread that group-commits, and a pool of reader
//! connections; both keep blocking work off the async threads.
//!
//! Every state change goes through [`Db::write`]. The writer thread takes
//! whatever jobs are waiting, runs each inside its own savepoint of a single
//! transaction and commits once; a failing job rolls back only its own
//! changes. A single writer also serializes audit appends, which the hash
//! chain needs.
//!
//! Durability is pipelined. The writer commits with `synchronous = NORMAL`
//! (the commit reaches the WAL file, not yet the disk) and hands the batch to
//! a syncer thread, which `fdatasync`s the WAL and only then answers the
//! callers. So nothing is acknowledged before it is on disk (a run handed to
//! an agent, then forgotten by a power cut, would be handed out twice), yet
//! the writer never waits for the disk: while one fsync runs, the next
//! batches commit, and one fsync covers all of them. On this project's test
//! machine an fsync takes ~3.4 ms; committing under it is what lets dispatch
//! reach thousands of runs per second.
//!
//! A write is acknowledged if and only if it is durable. When the fsync after
//! a commit fails, the change is committed (readers see it) but may not be on
//! disk: its callers get [`Error::Unavailable`] saying it may or may not have
//! been applied ([`not_durable`]), never a success and never a plain failure,
//! so a client retries with the same idempotency key instead of submitting
//! twice. The syncer keeps one descriptor on the WAL for the life of the
//! database: Linux reports a writeback error once to each descriptor open
//! when it happened, so a file reopened for every sync could miss one and
//! acknowledge a write the disk lost. And since a failed writeback may have
//! dropped pages that a later, successful fsync no longer covers, nothing
//! more is acknowledged after a failure until a full checkpoint has copied
//! every committed page into the database file and synced that.

use super::broadcast::{Broadcast, Heard, Listener};
use super::pg::DatabaseUrl;
use super::schema::{self, database_error};
use super::tx::Tx;
use super::writer::{
    Again, Batch, Between, FIRST_SAVEPOINT, Health, IDLE_READERS, Job, MAX_READERS, Message, Once,
    Work, WriteJob, next_batch, not_durable, run_jobs,
};
use crate::error::{Error, OpenError};
use crate::settings::Settings;
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// The database file inside the data directory.
pub const DB_FILE: &str = "sealrun.db";

/// How long a statement waits for another process's lock (`create_org`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub use super::writer::now_ms;

/// Opens a connection with the settings every connection uses.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer. synchronous=FULL for every
    // connection but the writer's, which syncs through the syncer thread.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Opens (creating if needed) and migrates the database at `path`.
pub(crate) fn open_migrated(path: &Path) -> Result<Connection, OpenError> {
    let mut conn = open_connection(path).map_err(|e| database_error(path, &e))?;
    schema::migrate(&mut conn, path)?;
    Ok(conn)
}

/// Handle on the database; cheap to share behind an `Arc`. Either backend
/// has one writer thread taking [`Message`]s (so writes look the same to
/// callers) and a pool of readers.
pub(crate) struct Db {
    /// The file, or the PostgreSQL URL without its password.
    location: String,
    health: Arc<Health>,
    jobs: mpsc::Sender<Message>,
    readers: Readers,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Hints to and from the other replicas (PostgreSQL only).
    replicas: Option<(Broadcast, Listener)>,
}

enum Readers {
    Sqlite(Arc<ReaderPool>),
    Postgres(Arc<super::pg_engine::ReaderPool>),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("location", &self.location)
            .finish()
    }
}

impl Db {
    /// Opens and migrates the database and starts the writer and syncer
    /// threads. Without `settings.durable_commits`, writes are answered once
    /// committed to the WAL file (they survive the process crashing, not the
    /// machine).
    pub(crate) fn open(path: &Path, settings: &Settings) -> Result<Db, OpenError> {
        let conn = open_migrated(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| database_error(path, &e))?;
        let thread_err = |source| OpenError::DataDir {
            path: path.to_owned(),
            source,
        };
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        // Opened once, now: the connection above keeps the WAL file in place
        // (SQLite removes it only when the last connection closes), and a
        // descriptor open from the start is told of every writeback error.
        let wal_file = if settings.durable_commits {
            Some(File::open(&wal).map_err(|source| OpenError::DataDir {
                path: wal.clone(),
                source,
            })?)
        } else {
            None
        };
        let health = Arc::new(Health::new());
        let syncer = Syncer {
            db_path: path.to_owned(),
            wal,
            wal_file,
            health: Arc::clone(&health),
            checkpointer: None,
            suspect: false,
            #[cfg(any(test, feature = "fault-injection"))]
            faults: settings.faults.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let (to_sync, syncing) = mpsc::channel();
        let syncer = std::thread::Builder::new()
            .name("sealrun-db-syncer".into())
            .spawn(move || syncer.run(syncing))
            .map_err(thread_err)?;
        let writer = std::thread::Builder::new()
            .name("sealrun-db-writer".into())
            .spawn(move || writer_loop(conn, rx, to_sync, syncer))
            .map_err(thread_err)?;
        Ok(Db {
            location: path.display().to_string(),
            health,
            jobs: tx,
            readers: Readers::Sqlite(Arc::new(ReaderPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            })),
            writer: Mutex::new(Some(writer)),
            replicas: None,
        })
    }

    /// Connects to PostgreSQL at `url`, migrates it and starts the writer
    /// thread. Commits are durable when PostgreSQL acknowledges them
    /// (`synchronous_commit`), so there is no syncer.
    pub(crate) fn open_postgres(url: &DatabaseUrl, settings: &Settings) -> Result<Db, OpenError> {
        let connector = super::pg::Connector::new(url)?;
        let thread_err = |source| OpenError::DataDir {
            path: PathBuf::from(connector.location()),
            source,
        };
        let health = Arc::new(Health::new());
        let (tx, rx) = mpsc::channel();
        let (opened, open) = mpsc::sync_channel(1);
        let writer = {
            let connector = connector.clone();
            let health = Arc::clone(&health);
            #[cfg(any(test, feature = "fault-injection"))]
            let faults = settings.faults.clone();
            #[cfg(not(any(test, feature = "fault-injection")))]
            let _ = settings;
            std::thread::Builder::new()
                .name("sealrun-db-writer".into())
                .spawn(move || {
                    super::pg_engine::writer_loop(
                        connector,
                        rx,
                        health,
                        opened,
                        #[cfg(any(test, feature = "fault-injection"))]
                        faults,
                    )
                })
        }
        .map_err(thread_err)?;
        // The writer connects and migrates first, and says how that went.
        if let Err(e) = open.recv().unwrap_or_else(|_| {
            Err(OpenError::Database {
                location: connector.location().to_owned(),
                message: "the database writer stopped while opening".into(),
            })
        }) {
            let _ = writer.join();
            return Err(e);
        }
        let readers = super::pg_engine::ReaderPool::new(connector.clone()).map_err(thread_err)?;
        Ok(Db {
            location: connector.location().to_owned(),
            health,
            jobs: tx,
            readers: Readers::Postgres(Arc::new(readers)),
            writer: Mutex::new(Some(writer)),
            replicas: Some(super::broadcast::channel(&connector)),
        })
    }

    /// Where to send hints for the other replicas; `None` on SQLite (one
    /// process).
    pub(crate) fn broadcast(&self) -> Option<Broadcast> {
        self.replicas.as_ref().map(|(b, _)| b.clone())
    }

    /// Relays hints between the replicas (see [`Listener::run`]); on
    /// SQLite, never returns.
    pub(crate) async fn listen(&self, heard: impl Fn(Heard<'_>)) {
        match &self.replicas {
            Some((_, listener)) => listener.run(heard).await,
            None => std::future::pending().await,
        }
    }

    /// Unix ms since which every write has been committed and made durable;
    /// `None` while the latest could not be.
    pub(crate) fn writable_since(&self) -> Option<i64> {
        self.health.since()
    }

    /// Runs `work` in the writer's transaction. `Err` rolls back what `work`
    /// did; `Ok` is answered only once committed and on disk.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        self.write_then(work, |_| {}).await
    }

    /// [`write_then`](Db::write_then) for `work` written to run beside
    /// other replicas' writes of the same kind: on PostgreSQL, a batch of
    /// such jobs holds the write lock shared, so the replicas' writers run
    /// those batches side by side, and appends its audit entries as it
    /// commits. `work` must then keep its rules with row locks, not with the
    /// lock: every row (or key) whose state it reads to decide a write is
    /// locked first (`FOR UPDATE`, claimed `SKIP LOCKED`, written before it
    /// is read, or, for an idempotency key, an advisory lock) or written
    /// conditionally on that state, and it reads nothing another job of
    /// the kind changes unless so locked; an audit append's entry is not in
    /// the chain until the commit (see `audit::append`). Rows and keys are
    /// locked in no fixed order, so two such transactions can deadlock (one
    /// agent claiming through two replicas at once, or the same submission
    /// sent to two replicas while its agent claims on both): PostgreSQL
    /// then fails one after `deadlock_timeout`, answered 503 ("busy,
    /// retry"). Only submitting, claiming and finishing runs are written
    /// so: the writes a run's dispatch is made of. On SQLite, the same as
    /// `write_then`.
    ///
    /// `work` may run more than once, each time in a new transaction after
    /// the last was rolled back, and must change nothing but through it: on
    /// PostgreSQL a batch of such jobs runs without a savepoint per job, and
    /// if one fails, it is all rolled back and run again, each job in its
    /// own savepoint.
    pub(crate) async fn write_beside<T, F, H>(&self, work: F, on_commit: H) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> Result<T, Error> + Send + 'static,
        H: FnOnce(&T) + Send + 'static,
    {
        self.send_job(Again(work), on_commit, true).await
    }

    /// [`write`](Db::write), also running `on_commit` with the result as soon
    /// as it is committed, before it is on disk: for in-memory hints (waking
    /// pollers) that may run early because anything they lead to is itself a
    /// later write, made durable by a later (or the same) fsync.
    pub(crate) async fn write_then<T, F, H>(&self, work: F, on_commit: H) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
        H: FnOnce(&T) + Send + 'static,
    {
        self.send_job(Once(Some(work)), on_commit, false).await
    }

    /// Two jobs written as [`write_beside`](Db::write_beside)'s, sent now
    /// and together: they run in one batch, so in one transaction, `first`
    /// before `second` (each may still fail alone: a batch with a failed
    /// job runs again, each job in its own savepoint). Each is answered on
    /// its own, and both run whether or not their answers are awaited.
    pub(crate) fn write_beside_pair<A, FA, HA, B, FB, HB>(
        &self,
        first: (FA, HA),
        second: (FB, HB),
    ) -> (Answer<A>, Answer<B>)
    where
        A: Send + 'static,
        FA: Fn(&Tx<'_>) -> Result<A, Error> + Send + 'static,
        HA: FnOnce(&A) + Send + 'static,
        B: Send + 'static,
        FB: Fn(&Tx<'_>) -> Result<B, Error> + Send + 'static,
        HB: FnOnce(&B) + Send + 'static,
    {
        let (a, first) = job(Again(first.0), first.1, true);
        let (b, second) = job(Again(second.0), second.1, true);
        // Not sent: both answer futures then say the writer has stopped.
        let _ = self.jobs.send(Message::Jobs(vec![a, b]));
        (Answer(first), Answer(second))
    }

    async fn send_job<T, W, H>(&self, work: W, on_commit: H, beside: bool) -> Result<T, Error>
    where
        T: Send + 'static,
        W: Work<T> + 'static,
        H: FnOnce(&T) + Send + 'static,
    {
        let (job, answer) = job(work, on_commit, beside);
        // Not sent: the answer says the writer has stopped.
        let _ = self.jobs.send(Message::Job(job));
        Answer(answer).await
    }

    /// [`Db::read`] for `work` of one statement: on PostgreSQL it runs
    /// outside a transaction (one statement sees one snapshot anyway), one
    /// message to the server instead of three (`BEGIN`, the statement,
    /// `ROLLBACK`), and a second statement fails the read. For the reads
    /// every poll makes. `work` may run twice: once more on a new
    /// connection if the first was found broken.
    pub(crate) async fn read_one<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        match &self.readers {
            Readers::Sqlite(_) => self.read(work).await,
            Readers::Postgres(pool) => pool.read_one(work).await,
        }
    }

    /// Runs `work` on a reader connection on the blocking pool, inside one
    /// read transaction: every statement `work` runs sees the same snapshot.
    /// Without it each statement sees the latest commit, and a read made of
    /// two statements can mix states; the agent's audit witness, reading the
    /// head of the chain and then its links while a run appended to it, saw
    /// a link past the head it was shown and took it for a broken history.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        let pool = match &self.readers {
            Readers::Sqlite(pool) => Arc::clone(pool),
            Readers::Postgres(pool) => return pool.read(work).await,
        };
        // Waiting here, not on a blocking thread, bounds the reader
        // connections (and their file descriptors) without holding threads.
        let permit = Arc::clone(&pool.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::shutting_down())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.take()?;
            let result = read_snapshot(&conn, work);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| Error::internal(format_args!("database reader: {e}")))?
    }

    /// Finishes queued writes, checkpoints the WAL and stops the writer.
    pub(crate) fn close(&self) {
        if let Readers::Postgres(readers) = &self.readers {
            readers.close();
        }
        let _ = self.jobs.send(Message::Stop);
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            if writer.join().is_err() {
                tracing::error!("the database writer thread panicked");
            }
        }
    }
}

/// A write job for the writer thread, and where its answer will come.
fn job<T, W, H>(
    work: W,
    on_commit: H,
    beside: bool,
) -> (Box<dyn WriteJob>, oneshot::Receiver<Result<T, Error>>)
where
    T: Send + 'static,
    W: Work<T> + 'static,
    H: FnOnce(&T) + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Box::new(Job {
        work,
        on_commit: Some(Box::new(on_commit)),
        result: None,
        reply,
        beside,
    });
    (job, answer)
}

/// The answer to a job sent to the writer ([`Db::write_beside_pair`]).
#[derive(Debug)]
pub(crate) struct Answer<T>(oneshot::Receiver<Result<T, Error>>);

impl<T> std::future::Future for Answer<T> {
    type Output = Result<T, Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // The writer dropped the job unanswered: it has stopped.
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(Error::shutting_down())))
    }
}

/// Runs `work` in a deferred transaction on a reader connection. It takes
/// its snapshot at the first statement and ends (rolled back: it wrote
/// nothing) before the connection goes back to the pool, whatever `work`
/// returned, so an idle reader never pins an old snapshot and keeps the WAL
/// from being checkpointed.
fn read_snapshot<T>(
    conn: &Connection,
    work: impl FnOnce(&Tx<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let result = work(&Tx::sqlite(&snapshot));
    snapshot.rollback()?;
    result
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One per reader connection that may be open at once.
    permits: Arc<tokio::sync::Semaphore>,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, Error> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = open_connection(&self.path)?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

fn writer_loop(
    conn: Connection,
    jobs: mpsc::Receiver<Message>,
    to_sync: mpsc::Sender<Committed>,
    syncer: JoinHandle<()>,
) {
    let mut stopping = false;
    while !stopping {
        let Some(batch) = next_batch(&jobs, &mut stopping) else {
            break;
        };
        let committed = match run_batch(&conn, batch) {
            Some(batch) => Committed::Batch(batch),
            None => Committed::Failed,
        };
        if let Err(mpsc::SendError(Committed::Batch(batch))) = to_sync.send(committed) {
            for job in batch {
                job.deliver(Err(Error::internal("the database syncer stopped")));
            }
        }
    }
    // Let the syncer answer what is committed, then fold the WAL back into
    // the main file so a stopped server leaves one file.
    drop(to_sync);
    if syncer.join().is_err() {
        tracing::error!("the database syncer thread panicked");
    }
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
}

/// What the writer hands the syncer, in commit order.
enum Committed {
    /// A committed batch, to answer once durable.
    Batch(Batch),
    /// A batch that could not commit (already answered): the store is not
    /// writable until a later batch is made durable.
    Failed,
}

/// Runs and commits a batch; returns it if committed (to be answered once
/// durable), having answered it already if not.
fn run_batch(conn: &Connection, mut batch: Batch) -> Option<Batch> {
    static BEGIN: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("BEGIN IMMEDIATE; {FIRST_SAVEPOINT}"));
    if let Err(e) = conn.execute_batch(&BEGIN) {
        // Storage that cannot write (full, read-only) answers Unavailable.
        let err = Error::from(e);
        for job in batch {
            job.deliver(Err(err.clone()));
        }
        return None;
    }
    // SQLite runs every statement when it is called: nothing is left to
    // send with the statement ending a job, so only that statement fails.
    let ended = run_jobs(
        &mut batch,
        &Tx::sqlite(conn),
        |end| conn.execute_batch(end.sql).map_err(Between::Batch),
        |sql| conn.execute_batch(sql),
        // SQLite appends audit entries as jobs make them: nothing to close.
        || Ok(()),
    );
    match ended.map_err(|failed| failed.error) {
        Ok(()) => {
            for job in &mut batch {
                job.committed();
            }
            Some(batch)
        }
        Err(e) => {
            let err = Error::from(e);
            let _ = conn.execute_batch("ROLLBACK");
            for job in batch {
                job.deliver(Err(err.clone()));
            }
            None
        }
    }
}

/// Makes committed batches durable and answers them.
struct Syncer {
    db_path: PathBuf,
    wal: PathBuf,
    /// The WAL, open for the life of the database; `None` when commits are
    /// not to be synced.
    wal_file: Option<File>,
    health: Arc<Health>,
    /// A connection of its own for the checkpoint after a failed sync
    /// (opened on first need).
    checkpointer: Option<Connection>,
    /// A sync failed: what it covered may be lost even if later syncs
    /// succeed, until a checkpoint has put it in the database file.
    suspect: bool,
    #[cfg(any(test, feature = "fault-injection"))]
    faults: crate::settings::Faults,
}

impl Syncer {
    /// One `fdatasync` of the WAL for every batch that committed before it
    /// started, then their answers.
    fn run(mut self, batches: mpsc::Receiver<Committed>) {
        while let Ok(first) = batches.recv() {
            let mut jobs = Vec::new();
            let mut last_failed = false;
            for committed in std::iter::once(first).chain(batches.try_iter()) {
                match committed {
                    Committed::Batch(batch) => {
                        jobs.extend(batch);
                        last_failed = false;
                    }
                    Committed::Failed => {
                        self.health.failed();
                        last_failed = true;
                    }
                }
            }
            if jobs.is_empty() {
                continue;
            }
            let synced = self.sync();
            match &synced {
                Ok(()) if !last_failed => self.health.succeeded(),
                Ok(()) => {}
                Err(_) => self.health.failed(),
            }
            for job in jobs {
                job.deliver(synced.clone());
            }
        }
    }

    /// Makes everything committed so far durable, or says it may not be.
    fn sync(&mut self) -> Result<(), Error> {
        #[cfg(any(test, feature = "fault-injection"))]
        self.faults.delay_answers();
        let Some(wal) = &self.wal_file else {
            return Ok(());
        };
        #[cfg(any(test, feature = "fault-injection"))]
        let injected = self.faults.sync_fails();
        #[cfg(not(any(test, feature = "fault-injection")))]
        let injected = false;
        let synced = if injected {
            Err(std::io::Error::other("injected fault"))
        } else {
            wal.sync_data()
        };
        if let Err(e) = synced {
            tracing::error!(error = %e, wal = %self.wal.display(), "cannot sync the database's WAL: committed changes may not be durable");
            self.suspect = true;
            return Err(not_durable());
        }
        if self.suspect {
            self.checkpoint()?;
            self.suspect = false;
            tracing::warn!(
                "database durable again: every committed change is in the database file"
            );
        }
        Ok(())
    }

    /// Copies every committed page into the database file and syncs it, so
    /// that pages a failed WAL sync may have dropped are on disk after all.
    fn checkpoint(&mut self) -> Result<(), Error> {
        let failed = |why: String| {
            tracing::error!(error = %why, "checkpoint after a failed sync did not complete; writes stay unacknowledged");
            not_durable()
        };
        if self.checkpointer.is_none() {
            let conn = open_connection(&self.db_path).map_err(|e| failed(e.to_string()))?;
            self.checkpointer = Some(conn);
        }
        let Some(conn) = &self.checkpointer else {
            return Err(failed("no connection".into()));
        };
        // FULL: waits (busy timeout) for the writer and for readers of older
        // snapshots, so that every frame of the WAL is copied.
        let (busy, frames, copied): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(FULL)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| failed(e.to_string()))?;
        if busy != 0 || frames != copied {
            return Err(failed(format!(
                "busy {busy}, {copied} of {frames} frames copied"
            )));
        }
        Ok(())
    }
}

/// A migrated connection of its own, outside the writer thread: for the
/// offline `create-org` (which may run beside a live server: the database
/// serializes the two writers) and the first start's bootstrap.
pub(crate) enum Standalone {
    Sqlite { conn: Connection, path: PathBuf },
    Postgres(Box<super::pg_engine::Standalone>),
}

impl Standalone {
    /// Opens (creating and migrating) the SQLite database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Standalone, OpenError> {
        Ok(Standalone::Sqlite {
            conn: open_migrated(path)?,
            path: path.to_owned(),
        })
    }

    /// Connects to (and migrates) the PostgreSQL database at `url`.
    pub(crate) fn open_postgres(url: &DatabaseUrl) -> Result<Standalone, OpenError> {
        Ok(Standalone::Postgres(Box::new(
            super::pg_engine::Standalone::open(url)?,
        )))
    }

    /// Runs `work` in one transaction that holds the write lock from its
    /// start (SQLite's `IMMEDIATE`; on PostgreSQL the advisory lock every
    /// writer takes), so a check and the insert it guards cannot interleave
    /// with another writer; commits if it succeeds.
    pub(crate) fn immediate<T: Send>(
        &mut self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, OpenError> + Send,
    ) -> Result<T, OpenError> {
        match self {
            Standalone::Sqlite { conn, path } => {
                let db_err = |e: rusqlite::Error| database_error(path, &e);
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let value = work(&Tx::sqlite(&tx))?;
                tx.commit().map_err(db_err)?;
                Ok(value)
            }
            Standalone::Postgres(pg) => pg.immediate(work),
        }
    }

    /// The database file, or the PostgreSQL server and database.
    pub(crate) fn location(&self) -> String {
        match self {
            Standalone::Sqlite { path, .. } => path.display().to_string(),
            Standalone::Postgres(pg) => pg.location().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, settings: &Settings) -> Db {
        Db::open(&dir.join(DB_FILE), settings).expect("a database")
    }

    /// Adds org `?1`.
    const INSERT_ORG: &str = "INSERT INTO orgs (name, created_ms) VALUES (?1, 0)";

    /// Adds org `name` in `tx` (fails if it exists: names are unique).
    fn insert_org(tx: &Tx<'_>, name: &str) -> Result<(), Error> {
        tx.prepare_cached(INSERT_ORG)?.execute(params![name])?;
        Ok(())
    }

    async fn add_org(db: &Db, name: &str) -> Result<(), Error> {
        let name = name.to_owned();
        db.write(move |tx| insert_org(tx, &name)).await
    }

    fn orgs_in(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).expect("the database");
        let mut stmt = conn
            .prepare("SELECT name FROM orgs ORDER BY id")
            .expect("a statement");
        stmt.query_map([], |r| r.get(0))
            .expect("a query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[tokio::test]
    async fn a_write_whose_sync_fails_after_its_commit_is_answered_as_maybe_applied() {
        let dir = tempfile::tempdir().expect("a directory");
        let settings = Settings::default();
        let db = open(dir.path(), &settings);
        add_org(&db, "before").await.expect("a durable write");
        settings.faults.fail_next_syncs(1);
        let answer = add_org(&db, "ambiguous").await;
        assert_eq!(answer, Err(not_durable()));
        let Err(Error::Unavailable(message)) = answer else {
            unreachable!("checked above");
        };
        assert!(
            message.contains("may or may not have been applied"),
            "{message}"
        );
        // It was committed all the same: the retry must find it, not redo it.
        let names = db
            .read(|tx| {
                Ok(tx.query_row(
                    "SELECT COUNT(*) FROM orgs WHERE name = 'ambiguous'",
                    params![],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await
            .expect("a read");
        assert_eq!(names, 1);
        // Positive control: the next write is acknowledged.
        add_org(&db, "after").await.expect("a durable write");
        db.close();
    }

    #[tokio::test]
    async fn after_a_failed_sync_writes_are_acknowledged_only_once_the_database_file_holds_them() {
        let dir = tempfile::tempdir().expect("a directory");
        let settings = Settings::default();
        let db = open(dir.path(), &settings);
        add_org(&db, "first").await.expect("a durable write");
        settings.faults.fail_next_syncs(1);
        add_org(&db, "ambiguous")
            .await
            .expect_err("the sync failed");
        add_org(&db, "acknowledged").await.expect("a durable write");
        // The database file alone, without its WAL, already holds both:
        // the acknowledgement waited for a checkpoint after the failure.
        let copy = tempfile::tempdir().expect("a directory");
        std::fs::copy(dir.path().join(DB_FILE), copy.path().join(DB_FILE)).expect("a copy");
        let names = orgs_in(&copy.path().join(DB_FILE));
        assert!(names.contains(&"ambiguous".to_owned()), "{names:?}");
        assert!(names.contains(&"acknowledged".to_owned()), "{names:?}");
        db.close();
    }

    #[tokio::test]
    async fn without_a_failure_acknowledged_writes_wait_in_the_wal_not_the_database_file() {
        // The positive control of the test above: a checkpoint is the
        // recovery from a failure, not what every write costs.
        let dir = tempfile::tempdir().expect("a directory");
        // Closing checkpoints, so the file holds the schema (not the WAL).
        open(dir.path(), &Settings::default()).close();
        let db = open(dir.path(), &Settings::default());
        add_org(&db, "acknowledged").await.expect("a durable write");
        let copy = tempfile::tempdir().expect("a directory");
        std::fs::copy(dir.path().join(DB_FILE), copy.path().join(DB_FILE)).expect("a copy");
        assert!(orgs_in(&copy.path().join(DB_FILE)).is_empty());
        db.close();
    }

    #[tokio::test]
    async fn every_statement_of_one_read_sees_the_same_snapshot() {
        let dir = tempfile::tempdir().expect("a directory");
        let db = open(dir.path(), &Settings::default());
        add_org(&db, "first").await.expect("a durable write");
        let count = |tx: &Tx<'_>| -> Result<i64, Error> {
            Ok(tx.query_row("SELECT COUNT(*) FROM orgs", params![], |r| r.get(0))?)
        };
        // The read counts, lets a write commit, and counts again.
        let (counted, wait_write) = std::sync::mpsc::channel::<()>();
        let (written, wait_count) = std::sync::mpsc::channel::<()>();
        let read = db.read(move |tx| {
            let before = count(tx)?;
            counted.send(()).expect("the test waits");
            wait_count.recv().expect("the write is done");
            Ok((before, count(tx)?))
        });
        let write = async {
            tokio::task::spawn_blocking(move || wait_write.recv())
                .await
                .expect("a thread")
                .expect("the first count");
            add_org(&db, "during").await.expect("a durable write");
            written.send(()).expect("the read waits");
        };
        let (read, ()) = tokio::join!(read, write);
        let (before, after) = read.expect("a read");
        assert_eq!((before, after), (1, 1));
        // Positive control: the next read sees the write.
        assert_eq!(db.read(count).await.expect("a read"), 2);
        db.close();
    }

    /// A test's job: it may run again (see [`Db::write_beside`]).
    type TestJob = Box<dyn Fn(&Tx<'_>) -> Result<(), Error> + Send>;

    /// Sends `jobs` so that the writer runs them as one batch, and returns
    /// their answers: a holder job keeps the writer busy until every job is
    /// queued behind it, so the writer takes them all at once.
    async fn one_batch(db: &Db, jobs: Vec<TestJob>) -> Vec<Result<(), Error>> {
        one_batch_as(db, jobs, false).await
    }

    /// [`one_batch`] of jobs that may run beside other replicas' (see
    /// [`Db::write_beside`]) when `beside`.
    async fn one_batch_as(db: &Db, jobs: Vec<TestJob>, beside: bool) -> Vec<Result<(), Error>> {
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let hold = db.write(held_job(started, wait));
        let rest = async {
            until_started(running).await;
            let writes = futures_util::future::join_all(jobs.into_iter().map(|job| async move {
                if beside {
                    db.write_beside(job, |_| {}).await
                } else {
                    db.write(job).await
                }
            }));
            // `join!` polls in order: every job is queued, then the holder
            // is let go.
            let (answers, ()) = tokio::join!(writes, async {
                go.send(()).expect("the holder waits");
            });
            answers
        };
        let (held, answers) = tokio::join!(hold, rest);
        held.expect("the holder");
        answers
    }

    /// A job adding org `name`, then failing if `fails`.
    fn org_job(name: &'static str, fails: bool) -> TestJob {
        Box::new(move |tx| {
            insert_org(tx, name)?;
            // The insert happened in the job's savepoint (positive control
            // for its absence afterwards).
            let here: i64 = tx.query_row(
                "SELECT COUNT(*) FROM orgs WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?;
            assert_eq!(here, 1);
            if fails {
                return Err(Error::Invalid(format!("{name} fails")));
            }
            Ok(())
        })
    }

    /// A job adding org `name` a second time: it fails on the database's
    /// own constraint (on PostgreSQL its transaction is then aborted until
    /// rolled back to the job's savepoint).
    fn duplicate_org_job(name: &'static str) -> TestJob {
        Box::new(move |tx| insert_org(tx, name))
    }

    /// A job adding org `name`, then adding org `taken` (which exists) and
    /// going on as if nothing had failed.
    fn ignoring_job(name: &'static str, taken: &'static str) -> TestJob {
        Box::new(move |tx| {
            insert_org(tx, name)?;
            let ignored = insert_org(tx, taken);
            assert!(ignored.is_err(), "{taken} exists");
            Ok(())
        })
    }

    async fn org_names(db: &Db) -> Vec<String> {
        db.read(|tx| {
            let mut names = Vec::new();
            tx.prepare_cached("SELECT name FROM orgs ORDER BY name")?
                .each(params![], |r| {
                    names.push(r.get::<_, String>(0)?);
                    Ok(true)
                })?;
            Ok(names)
        })
        .await
        .expect("a read")
    }

    /// A failing job in the middle of a batch and one ending it: each rolls
    /// back its own changes only, and is answered with its own error.
    async fn a_failing_job_undoes_only_its_own_changes_as(db: &Db, beside: bool) {
        let answers = one_batch_as(
            db,
            vec![
                org_job("kept-1", false),
                org_job("dropped-1", true),
                org_job("kept-2", false),
            ],
            beside,
        )
        .await;
        assert_eq!(answers[0], Ok(()));
        assert_eq!(answers[1], Err(Error::Invalid("dropped-1 fails".into())));
        assert_eq!(answers[2], Ok(()));
        let names = org_names(db).await;
        assert!(names.contains(&"kept-1".to_owned()), "{names:?}");
        assert!(names.contains(&"kept-2".to_owned()), "{names:?}");
        assert!(!names.contains(&"dropped-1".to_owned()), "{names:?}");
        let answers = one_batch_as(
            db,
            vec![org_job("kept-3", false), org_job("dropped-2", true)],
            beside,
        )
        .await;
        assert_eq!(answers[0], Ok(()));
        assert!(answers[1].is_err());
        let names = org_names(db).await;
        assert!(names.contains(&"kept-3".to_owned()), "{names:?}");
        assert!(!names.contains(&"dropped-2".to_owned()), "{names:?}");
        // Two failing in a row, then one kept.
        let answers = one_batch_as(
            db,
            vec![
                org_job("dropped-3", true),
                org_job("dropped-4", true),
                org_job("kept-4", false),
            ],
            beside,
        )
        .await;
        assert!(answers[0].is_err() && answers[1].is_err());
        assert_eq!(answers[2], Ok(()));
        let names = org_names(db).await;
        assert!(names.contains(&"kept-4".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("dropped")), "{names:?}");
        // Failing on a constraint, in the middle and at the end.
        let answers = one_batch_as(
            db,
            vec![
                org_job("kept-5", false),
                duplicate_org_job("kept-1"),
                org_job("kept-6", false),
                duplicate_org_job("kept-2"),
            ],
            beside,
        )
        .await;
        assert_eq!(answers[0], Ok(()));
        assert!(answers[1].is_err());
        assert_eq!(answers[2], Ok(()));
        assert!(answers[3].is_err());
        let names = org_names(db).await;
        assert!(names.contains(&"kept-5".to_owned()), "{names:?}");
        assert!(names.contains(&"kept-6".to_owned()), "{names:?}");
    }

    async fn a_failing_job_undoes_only_its_own_changes(db: &Db) {
        a_failing_job_undoes_only_its_own_changes_as(db, false).await;
    }

    /// [`a_failing_job_undoes_only_its_own_changes_as`] in batches beside other
    /// replicas': on PostgreSQL they run without savepoints, and are run
    /// again with them after a failure.
    async fn a_failing_job_undoes_only_its_own_changes_beside(db: &Db) {
        a_failing_job_undoes_only_its_own_changes_as(db, true).await;
    }

    /// A job refusing before it sends a statement.
    fn refusing_job(name: &'static str) -> TestJob {
        Box::new(move |_| Err(Error::Invalid(format!("{name} refuses"))))
    }

    /// A job that fails before it sends any statement, after one that was
    /// kept: on PostgreSQL the kept job's end (releasing its savepoint,
    /// opening the next) waits to go with the next statement, and must
    /// still go before the failing job's savepoint is rolled back to, or
    /// the rollback would undo the kept job. In the middle of a batch and
    /// at its end, exclusive and beside other replicas'.
    async fn a_job_failing_before_its_first_statement_undoes_nothing_else(db: &Db) {
        for beside in [false, true] {
            let tag = if beside { "beside" } else { "alone" };
            let name = |n: &str| -> &'static str { format!("{tag}-{n}").leak() };
            let answers = one_batch_as(
                db,
                vec![
                    org_job(name("kept-1"), false),
                    refusing_job(name("refused-1")),
                    org_job(name("kept-2"), false),
                    refusing_job(name("refused-2")),
                ],
                beside,
            )
            .await;
            assert_eq!(answers[0], Ok(()), "{tag}");
            assert!(answers[1].is_err(), "{tag}");
            assert_eq!(answers[2], Ok(()), "{tag}");
            assert!(answers[3].is_err(), "{tag}");
            let names = org_names(db).await;
            for kept in ["kept-1", "kept-2"] {
                assert!(names.contains(&format!("{tag}-{kept}")), "{tag}: {names:?}");
            }
        }
    }

    /// A job preparing a statement the database refuses to parse (on
    /// PostgreSQL the `Parse` fails and aborts the transaction), then,
    /// if `goes_on`, answering `Ok` all the same.
    fn unparsable_job(goes_on: bool) -> TestJob {
        Box::new(move |tx| {
            let refused = tx.prepare_cached("SELECT * FROM no_such_table").map(drop);
            assert!(refused.is_err(), "no such table");
            if goes_on { Ok(()) } else { Ok(refused?) }
        })
    }

    /// A job whose statement fails as it is prepared, after two kept ones
    /// (whose ends, on PostgreSQL, wait to go with the next statement),
    /// and a batch whose only job's write left for later fails with the
    /// `COMMIT`: every job answered `Ok` has its changes stored, and no
    /// other, exclusive and beside other replicas'; the jobs before one
    /// failing on its own are kept.
    async fn a_job_answered_ok_is_stored_whatever_fails_after_it(db: &Db) {
        add_org(db, "taken").await.expect("an org");
        for beside in [false, true] {
            for goes_on in [false, true] {
                let tag = format!("{beside}-{goes_on}");
                let name = |n: &str| -> &'static str { format!("{tag}-{n}").leak() };
                let names = [name("kept-0"), name("kept-1")];
                let answers = one_batch_as(
                    db,
                    vec![
                        org_job(names[0], false),
                        org_job(names[1], false),
                        unparsable_job(goes_on),
                    ],
                    beside,
                )
                .await;
                // Going on, it changed nothing: `Ok` is as true as an error.
                assert!(goes_on || answers[2].is_err(), "{tag}: {answers:?}");
                let stored = org_names(db).await;
                for (name, answer) in names.iter().zip(&answers) {
                    let here = stored.iter().any(|n| n == name);
                    assert_eq!(answer.is_ok(), here, "{name}: {answer:?}, {stored:?}");
                    // Failing on its own, the job undoes only itself (one
                    // going on may fail the batch, which is answered so).
                    assert!(goes_on || here, "{name}: {answer:?}, {stored:?}");
                }
            }
            let tag = format!("{beside}-later");
            let name: &'static str = format!("{tag}-now").leak();
            let answers = one_batch_as(db, vec![later_job(name, "taken", false)], beside).await;
            assert!(answers[0].is_err(), "{tag}: {answers:?}");
            assert!(!org_names(db).await.contains(&name.to_owned()), "{tag}");
        }
    }

    /// A job that goes on after one of its statements failed: whatever the
    /// backend makes of that (SQLite keeps its other changes; PostgreSQL
    /// aborts the transaction), a job answered `Ok` has its changes stored
    /// and one answered with an error has none, at the end of a batch and
    /// in its middle.
    async fn a_job_answered_ok_has_its_changes_stored_as(db: &Db, beside: bool) {
        add_org(db, "taken").await.expect("an org");
        for jobs in [
            vec![
                ("first-a", org_job("first-a", false)),
                ("ignoring-a", ignoring_job("ignoring-a", "taken")),
            ],
            vec![
                ("ignoring-b", ignoring_job("ignoring-b", "taken")),
                ("last-b", org_job("last-b", false)),
            ],
        ] {
            let (names, jobs): (Vec<&str>, Vec<TestJob>) = jobs.into_iter().unzip();
            let answers = one_batch_as(db, jobs, beside).await;
            let stored = org_names(db).await;
            for (name, answer) in names.iter().zip(&answers) {
                let here = stored.iter().any(|n| n == name);
                assert_eq!(
                    answer.is_ok(),
                    here,
                    "{name}: {answer:?}, stored: {stored:?}"
                );
            }
        }
    }

    async fn a_job_answered_ok_has_its_changes_stored(db: &Db) {
        a_job_answered_ok_has_its_changes_stored_as(db, false).await;
    }

    /// [`a_job_answered_ok_has_its_changes_stored_as`] in batches beside other
    /// replicas': on PostgreSQL they run without savepoints, and are run
    /// again with them after a failure.
    async fn a_job_answered_ok_has_its_changes_stored_beside(db: &Db) {
        a_job_answered_ok_has_its_changes_stored_as(db, true).await;
    }

    /// A job appending `action` to org `org_id`'s audit chain, then failing
    /// if `fails`.
    fn audit_job(org_id: i64, action: &'static str, fails: bool) -> TestJob {
        Box::new(move |tx| {
            super::super::audit::append(tx, org_id, "test", action, "-", serde_json::json!({}))?;
            if fails {
                return Err(Error::Invalid(format!("{action} fails")));
            }
            Ok(())
        })
    }

    /// Appends in one batch, one of them rolled back between the others:
    /// the chain holds the kept entries, consecutive and verified (the
    /// transaction remembers the head it appended, and must forget the
    /// rolled-back one's).
    async fn appends_around_a_rolled_back_one_keep_the_chain_whole(db: &Db) {
        add_org(db, "audited").await.expect("an org");
        let org_id = db
            .read(|tx| {
                Ok(tx.query_row(
                    "SELECT id FROM orgs WHERE name = 'audited'",
                    params![],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await
            .expect("a read");
        let answers = one_batch(
            db,
            vec![
                audit_job(org_id, "first", false),
                audit_job(org_id, "second", false),
                audit_job(org_id, "rolled-back", true),
                audit_job(org_id, "third", false),
            ],
        )
        .await;
        assert!(answers[2].is_err());
        // And one more in a batch of its own, which reads the head back.
        one_batch(db, vec![audit_job(org_id, "fourth", false)]).await;
        let entries = db
            .read(move |tx| super::super::audit::page(tx, org_id, 0, 100))
            .await
            .expect("a read");
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["first", "second", "third", "fourth"]);
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let verdict = sealrun_wire::audit::verify_chain(&entries);
        assert!(verdict.ok, "{verdict:?}");
    }

    /// A job adding org `name`, then org `later` with a write left to be
    /// sent with the job's next statement ([`Stmt::execute_later`]); then,
    /// if `reads`, counting the orgs (that next statement).
    ///
    /// [`Stmt::execute_later`]: super::super::tx::Stmt::execute_later
    fn later_job(name: &'static str, later: &'static str, reads: bool) -> TestJob {
        Box::new(move |tx| {
            insert_org(tx, name)?;
            tx.prepare_cached(INSERT_ORG)?
                .execute_later(params![later])?;
            if reads {
                // Sent after the write left for later: it sees it.
                let seen: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM orgs WHERE name = ?1",
                    params![later],
                    |r| r.get(0),
                )?;
                assert_eq!(seen, 1, "{later}");
            }
            Ok(())
        })
    }

    /// A job leaving `n` inserts for later, each followed by an update of
    /// the row it inserts, also left for later: they must reach the
    /// database in the order they were left.
    fn many_later_job(n: i64) -> TestJob {
        Box::new(move |tx| {
            for i in 0..n {
                let name = format!("many-{i}");
                tx.prepare_cached(INSERT_ORG)?
                    .execute_later(params![name])?;
                tx.prepare_cached("UPDATE orgs SET created_ms = ?2 WHERE name = ?1")?
                    .execute_later(params![name, i + 1])?;
            }
            Ok(())
        })
    }

    /// A write left for later that fails (here on a constraint) fails its
    /// job, whether it is sent with the job's next statement or at the
    /// job's end (in the middle of a batch, and ending it): the job is
    /// answered with an error and undoes its own changes only.
    async fn a_failing_write_left_for_later_fails_its_job_only_as(db: &Db, beside: bool) {
        add_org(db, "taken").await.expect("an org");
        let answers = one_batch_as(
            db,
            vec![
                org_job("kept-a", false),
                later_job("dropped-a", "taken", false),
                org_job("kept-b", false),
                later_job("dropped-b", "taken", true),
                org_job("kept-c", false),
                later_job("dropped-c", "taken", false),
            ],
            beside,
        )
        .await;
        let ok: Vec<bool> = answers.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true, false, true, false], "{answers:?}");
        let names = org_names(db).await;
        for kept in ["kept-a", "kept-b", "kept-c"] {
            assert!(names.contains(&kept.to_owned()), "{names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("dropped")), "{names:?}");
        // Positive control: writes left for later that succeed are stored
        // with their job's.
        let answers = one_batch_as(
            db,
            vec![
                later_job("now-1", "later-1", true),
                later_job("now-2", "later-2", false),
            ],
            beside,
        )
        .await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        let names = org_names(db).await;
        for stored in ["now-1", "later-1", "now-2", "later-2"] {
            assert!(names.contains(&stored.to_owned()), "{names:?}");
        }
    }

    async fn a_failing_write_left_for_later_fails_its_job_only(db: &Db) {
        a_failing_write_left_for_later_fails_its_job_only_as(db, false).await;
    }

    /// [`a_failing_write_left_for_later_fails_its_job_only_as`] in batches beside other
    /// replicas': on PostgreSQL they run without savepoints, and are run
    /// again with them after a failure.
    async fn a_failing_write_left_for_later_fails_its_job_only_beside(db: &Db) {
        a_failing_write_left_for_later_fails_its_job_only_as(db, true).await;
    }

    /// Statements left for later reach the database in the order they were
    /// left, however many (each update finds the row inserted before it).
    async fn writes_left_for_later_are_sent_in_order(db: &Db) {
        let answers = one_batch(db, vec![many_later_job(40)]).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        let updated: i64 = db
            .read(|tx| {
                Ok(tx.query_row(
                    "SELECT COUNT(*) FROM orgs WHERE name LIKE 'many-%' AND created_ms > 0",
                    params![],
                    |r| r.get(0),
                )?)
            })
            .await
            .expect("a read");
        assert_eq!(updated, 40);
    }

    /// The id of org `name`, added.
    async fn org_id_of_new(db: &Db, name: &'static str) -> i64 {
        add_org(db, name).await.expect("an org");
        db.read(move |tx| {
            Ok(
                tx.query_row("SELECT id FROM orgs WHERE name = ?1", params![name], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        })
        .await
        .expect("a read")
    }

    /// The org's whole chain, checked: consecutive from 1, each entry
    /// linked to the one before and hashing to what it says.
    async fn verified_chain(db: &Db, org_id: i64) -> Vec<sealrun_wire::audit::AuditEntry> {
        let entries = db
            .read(move |tx| super::super::audit::page(tx, org_id, 0, 10_000))
            .await
            .expect("a read");
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
        let verdict = sealrun_wire::audit::verify_chain(&entries);
        assert!(verdict.ok, "{verdict:?}");
        entries
    }

    /// Appends of batches beside other replicas' wait for the commit: those
    /// of a job rolled back (between others, or last) are never appended,
    /// the rest are, in the order made, and batches of either kind after
    /// it extend the same chain.
    async fn appends_left_for_the_commit_keep_the_chain_whole(db: &Db) {
        let org_id = org_id_of_new(db, "audited-beside").await;
        let answers = one_batch_as(
            db,
            vec![
                audit_job(org_id, "first", false),
                audit_job(org_id, "second", false),
                audit_job(org_id, "rolled-back", true),
                audit_job(org_id, "third", false),
                audit_job(org_id, "rolled-back-last", true),
            ],
            true,
        )
        .await;
        let failed: Vec<bool> = answers.iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, false, true, false, true]);
        one_batch_as(db, vec![audit_job(org_id, "fourth", false)], false).await;
        one_batch_as(db, vec![audit_job(org_id, "fifth", false)], true).await;
        let entries = verified_chain(db, org_id).await;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["first", "second", "third", "fourth", "fifth"]);
    }

    /// A job adding org `name`, counting its runs in `runs`, failing if
    /// `fails`.
    fn counted_job(
        name: &'static str,
        runs: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
        fails: bool,
    ) -> TestJob {
        let runs = std::sync::Arc::clone(runs);
        let job = org_job(name, fails);
        Box::new(move |tx| {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            job(tx)
        })
    }

    /// Jobs beside other replicas' run once when their batch commits; on
    /// PostgreSQL, where such a batch runs without savepoints, a failing
    /// job has it rolled back and run again, savepoint by savepoint, so a
    /// job before it runs twice (its first run undone), and is stored once.
    async fn jobs_beside_others_run_again_only_after_a_failure(db: &Db) {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let counters: Vec<std::sync::Arc<AtomicUsize>> =
            (0..5).map(|_| Default::default()).collect();
        let answers = one_batch_as(
            db,
            vec![
                counted_job("once-1", &counters[0], false),
                counted_job("once-2", &counters[1], false),
            ],
            true,
        )
        .await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!((counters[0].load(SeqCst), counters[1].load(SeqCst)), (1, 1));
        let answers = one_batch_as(
            db,
            vec![
                counted_job("again-1", &counters[2], false),
                counted_job("failing", &counters[3], true),
                counted_job("after", &counters[4], false),
            ],
            true,
        )
        .await;
        let ok: Vec<bool> = answers.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true], "{answers:?}");
        let runs: Vec<usize> = counters[2..].iter().map(|c| c.load(SeqCst)).collect();
        let backend = db.read(|tx| Ok(tx.backend())).await.expect("a read");
        let expected = match backend {
            super::super::tx::Backend::Sqlite => [1, 1, 1],
            super::super::tx::Backend::Postgres => [2, 2, 1],
        };
        assert_eq!(runs, expected);
        let names = org_names(db).await;
        for stored in ["once-1", "once-2", "again-1", "after"] {
            assert_eq!(
                names.iter().filter(|n| *n == stored).count(),
                1,
                "{names:?}"
            );
        }
        assert!(!names.contains(&"failing".to_owned()), "{names:?}");
    }

    /// More entries than one insert carries, of two orgs taking turns, in
    /// one batch: each chain holds its own, in the order made, verified.
    async fn many_appends_of_one_batch_make_two_whole_chains(db: &Db) {
        let one = org_id_of_new(db, "audited-one").await;
        let two = org_id_of_new(db, "audited-two").await;
        let actions: Vec<&'static str> = (0..40).map(|i| format!("a{i}").leak() as &str).collect();
        let jobs = actions
            .iter()
            .enumerate()
            .map(|(i, action)| audit_job(if i % 3 == 0 { two } else { one }, action, false))
            .collect();
        let answers = one_batch_as(db, jobs, true).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        for (org, of_org) in [(one, 1), (two, 0)] {
            let made: Vec<&str> = actions
                .iter()
                .enumerate()
                .filter(|(i, _)| (i % 3 == 0) == (of_org == 0))
                .map(|(_, a)| *a)
                .collect();
            let entries = verified_chain(db, org).await;
            let stored: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
            assert_eq!(stored, made);
        }
    }

    /// The test `$check` on each backend: `$sqlite` on a store in a
    /// temporary directory, `$postgres` on a database of its own on the
    /// test cluster (skipped loudly without one).
    macro_rules! on_both_backends {
        ($sqlite:ident, $postgres:ident, $check:ident) => {
            #[tokio::test]
            async fn $sqlite() {
                let dir = tempfile::tempdir().expect("a directory");
                let db = open(dir.path(), &Settings::default());
                $check(&db).await;
                db.close();
            }

            #[tokio::test]
            async fn $postgres() {
                let Some(pg) = OnPostgres::open() else { return };
                $check(&pg.db).await;
                pg.close();
            }
        };
    }

    /// A store on PostgreSQL: a database of its own on the test cluster,
    /// dropped with it; `None` (after a loud skip) without a cluster.
    struct OnPostgres {
        db: Db,
        database: sealrun_testkit::TestDatabase,
        _dir: tempfile::TempDir,
    }

    impl OnPostgres {
        fn open() -> Option<OnPostgres> {
            let dir = tempfile::tempdir().expect("a directory");
            let database = sealrun_testkit::require_postgres(dir.path())?;
            let url: DatabaseUrl = database.url_text.parse().expect("a URL");
            let db = Db::open_postgres(&url, &Settings::default()).expect("a database");
            Some(OnPostgres {
                db,
                database,
                _dir: dir,
            })
        }

        /// Another replica: a second store on the same database.
        fn replica(&self) -> Db {
            let url: DatabaseUrl = self.database.url_text.parse().expect("a URL");
            Db::open_postgres(&url, &Settings::default()).expect("a database")
        }

        /// Another replica, its URL with `query` added (`options=...`).
        fn replica_with(&self, query: &str) -> Db {
            let text = &self.database.url_text;
            let sep = if text.contains('?') { '&' } else { '?' };
            let url: DatabaseUrl = format!("{text}{sep}{query}").parse().expect("a URL");
            Db::open_postgres(&url, &Settings::default()).expect("a database")
        }

        fn close(self) {
            self.db.close();
            self.database.drop_database();
        }
    }

    /// Both backends' migrations end with the same tables and columns
    /// (what only PostgreSQL needs aside), so that a store function, written
    /// once, reads and writes the same on both.
    #[tokio::test]
    async fn both_backends_end_with_the_same_tables_and_columns() {
        /// PostgreSQL's own: its schema version, and the relay of a run's
        /// input between replicas (SQLite has one replica).
        const POSTGRES_ONLY: &[&str] = &["sealrun_schema", "input_relays", "input_chunks"];
        let Some(pg) = OnPostgres::open() else { return };
        let dir = tempfile::tempdir().expect("a directory");
        let sqlite = open_migrated(&dir.path().join("schema.db")).expect("a database");
        let on_sqlite: std::collections::BTreeSet<String> = sqlite
            .prepare(
                "SELECT m.name || '.' || p.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
            )
            .expect("a query")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("columns");
        let on_postgres: std::collections::BTreeSet<String> = pg
            .db
            .read(|tx| {
                Ok(tx
                    .prepare_cached(
                        "SELECT CAST(table_name AS TEXT) || '.' || CAST(column_name AS TEXT)
                         FROM information_schema.columns WHERE table_schema = current_schema()",
                    )?
                    .query_map(params![], |r| r.get(0))?
                    .collect::<Result<_, _>>()?)
            })
            .await
            .expect("columns");
        let (only_postgres, shared): (std::collections::BTreeSet<String>, _) =
            on_postgres.into_iter().partition(|column| {
                POSTGRES_ONLY
                    .iter()
                    .any(|t| column.starts_with(&format!("{t}.")))
            });
        // Positive control: both listings found something, and the tables
        // set aside are there.
        assert!(on_sqlite.contains("runs.id") && shared.contains("runs.id"));
        assert!(
            only_postgres.contains("input_chunks.sealed"),
            "{only_postgres:?}"
        );
        let missing: Vec<_> = on_sqlite.difference(&shared).collect();
        let extra: Vec<_> = shared.difference(&on_sqlite).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "only on SQLite: {missing:?}; only on PostgreSQL: {extra:?}"
        );
        pg.close();
    }

    /// A relay of run `run_x`'s input, its reader attached, with `frames`
    /// chunks numbered from 0.
    async fn input_relay(db: &Db) -> Vec<(i64, Vec<u8>)> {
        use super::super::inputs::{Side, attach};
        db.write(|tx| attach(tx, "run_x", Side::Reader, "replica", &[7; 32], 1))
            .await
            .expect("attached");
        (0..40).map(|i| (i, vec![i as u8; 3])).collect()
    }

    #[tokio::test]
    async fn input_chunks_sent_again_after_a_lost_answer_are_not_stored_twice_on_postgres() {
        use super::super::inputs::{Put, put_if_room, take};
        let Some(pg) = OnPostgres::open() else { return };
        let frames = input_relay(&pg.db).await;
        let first = frames[..3].to_vec();
        let put = pg.db.write(move |tx| put_if_room(tx, "run_x", &first, 32));
        assert_eq!(put.await.expect("stored"), Put::Done(3));
        // The answer was lost: the same three again, and one more.
        let again = frames[..4].to_vec();
        let put = pg.db.write(move |tx| put_if_room(tx, "run_x", &again, 32));
        assert_eq!(put.await.expect("stored"), Put::Done(4));
        let taken = pg
            .db
            .write(|tx| take(tx, "run_x", 32))
            .await
            .expect("taken");
        let seqs: Vec<i64> = taken.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        pg.close();
    }

    #[tokio::test]
    async fn input_chunks_beyond_the_room_wait_for_the_reader_on_postgres() {
        use super::super::inputs::{Put, put_if_room, take};
        let Some(pg) = OnPostgres::open() else { return };
        let frames = input_relay(&pg.db).await;
        let all = frames.clone();
        let put = pg.db.write(move |tx| put_if_room(tx, "run_x", &all, 32));
        assert_eq!(put.await.expect("stored"), Put::Done(32));
        let rest = frames[32..].to_vec();
        let again = rest.clone();
        let put = pg.db.write(move |tx| put_if_room(tx, "run_x", &again, 32));
        assert_eq!(put.await.expect("refused"), Put::NoRoom);
        // Positive control: once the reader took some, the rest fit.
        let taken = pg.db.write(|tx| take(tx, "run_x", 8)).await.expect("taken");
        assert_eq!(taken.len(), 8);
        let put = pg.db.write(move |tx| put_if_room(tx, "run_x", &rest, 32));
        assert_eq!(put.await.expect("stored"), Put::Done(8));
        pg.close();
    }

    on_both_backends!(
        appends_left_for_the_commit_keep_the_chain_whole_on_sqlite,
        appends_left_for_the_commit_keep_the_chain_whole_on_postgres,
        appends_left_for_the_commit_keep_the_chain_whole
    );

    #[tokio::test]
    async fn run_counts_are_the_sums_of_their_rows_before_and_after_folding_on_postgres() {
        let Some(pg) = OnPostgres::open() else { return };
        let db = &pg.db;
        let counts = || db.read(super::super::runs::count_by_status);
        let rows = || {
            db.read(|tx| {
                Ok(
                    tx.query_row("SELECT COUNT(*) FROM run_counts", params![], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
        };
        // As the triggers leave them: a row per change.
        pg.db
            .write(|tx| {
                for (status, n) in [("queued", 1), ("queued", 1), ("queued", -1), ("running", 1)] {
                    tx.prepare_cached("INSERT INTO run_counts (status, n) VALUES (?1, ?2)")?
                        .execute(params![status, n])?;
                }
                Ok(())
            })
            .await
            .expect("a write");
        let before = counts().await.expect("a read");
        assert_eq!(before.get("queued"), Some(&1));
        assert_eq!(before.get("running"), Some(&1));
        assert_eq!(rows().await.expect("a read"), 4);
        pg.db
            .write(super::super::runs::compact_counts)
            .await
            .expect("a fold");
        assert_eq!(counts().await.expect("a read"), before);
        assert_eq!(rows().await.expect("a read"), 2, "one row per status");
        pg.close();
    }

    /// Returns once the [`held_job`] that `running` hears from started.
    async fn until_started(running: std::sync::mpsc::Receiver<()>) {
        tokio::task::spawn_blocking(move || running.recv())
            .await
            .expect("a thread")
            .expect("the holder runs");
    }

    /// A job that says it started, then waits to be let go.
    fn held_job(
        started: std::sync::mpsc::Sender<()>,
        go: std::sync::mpsc::Receiver<()>,
    ) -> impl Fn(&Tx<'_>) -> Result<(), Error> + Send + 'static {
        move |_| {
            let gone = |_| Error::internal("the test went away");
            started.send(()).map_err(gone)?;
            go.recv().map_err(|_| Error::internal("the test went away"))
        }
    }

    /// A job beside other replicas' that stops reading a query's rows
    /// before the row that fails it (the transaction is aborted, and the
    /// job never sees the error) and answers `Ok`: it is answered `Ok` only
    /// if its change is stored. A `COMMIT` of an aborted transaction rolls
    /// back without an error, so a batch without savepoints ends behind one
    /// that fails instead.
    #[tokio::test]
    async fn a_job_stopping_before_a_failing_row_is_answered_as_stored_on_postgres() {
        let Some(pg) = OnPostgres::open() else { return };
        let job: TestJob = Box::new(|tx| {
            insert_org(tx, "stops-early")?;
            let mut rows = 0;
            tx.prepare_cached("SELECT 1 / (2 - g) FROM generate_series(1, 3) AS g")?
                .each(params![], |_| {
                    rows += 1;
                    Ok(false)
                })?;
            assert_eq!(rows, 1, "the first row, which does not fail");
            Ok(())
        });
        let answers = one_batch_as(&pg.db, vec![org_job("before", false), job], true).await;
        let stored = org_names(&pg.db).await;
        assert_eq!(
            answers[1].is_ok(),
            stored.contains(&"stops-early".to_owned()),
            "{answers:?}, {stored:?}"
        );
        // Positive control: the job before it is kept and answered so.
        assert_eq!(answers[0], Ok(()));
        assert!(stored.contains(&"before".to_owned()), "{stored:?}");
        pg.close();
    }

    #[tokio::test]
    async fn batches_beside_each_other_run_side_by_side_and_others_wait_for_them_on_postgres() {
        let Some(pg) = OnPostgres::open() else { return };
        let other = pg.replica();
        let org_id = org_id_of_new(&pg.db, "side-by-side").await;
        // Replica one holds a batch beside others open.
        let (started, running) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel();
        let held = pg.db.write_beside(held_job(started, wait), |_| {});
        let rest = async {
            until_started(running).await;
            // Replica two's batch beside it commits meanwhile, appending
            // to the chain...
            let beside = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                other.write_beside(audit_job(org_id, "beside", false), |_| {}),
            )
            .await;
            assert!(matches!(beside, Ok(Ok(()))), "{beside:?}");
            // ...while a write of any other kind waits for it (positive
            // control: the lock is held).
            let alone = other.write(audit_job(org_id, "alone", false));
            tokio::pin!(alone);
            let early =
                tokio::time::timeout(std::time::Duration::from_millis(500), alone.as_mut()).await;
            assert!(
                early.is_err(),
                "a write alone ran beside a batch: {early:?}"
            );
            go.send(()).expect("the holder waits");
            alone.await.expect("the write alone, once the batch ended");
        };
        let (held, ()) = tokio::join!(held, rest);
        held.expect("the held batch");
        let entries = verified_chain(&pg.db, org_id).await;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["beside", "alone"]);
        other.close();
        pg.close();
    }

    /// A replica that stops inside a transaction (paused, frozen, its host
    /// cut off) holds the write lock until PostgreSQL ends its session:
    /// sealrun asks for that after 15 s idle in a transaction (here 2 s,
    /// through the URL's own `options`, which win). Without it, every other
    /// replica's writes wait for as long as it stays stopped.
    #[tokio::test]
    async fn a_replica_stopped_inside_a_transaction_holds_the_others_writes_only_until_its_session_ends_on_postgres()
     {
        let Some(pg) = OnPostgres::open() else { return };
        let stopped = pg.replica_with("options=-c%20idle_in_transaction_session_timeout%3D2000");
        let org_id = org_id_of_new(&pg.db, "stopped").await;
        let (started, running) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel();
        let held = stopped.write_beside(held_job(started, wait), |_| {});
        let rest = async {
            until_started(running).await;
            let alone = pg.db.write(audit_job(org_id, "alone", false));
            tokio::pin!(alone);
            // Positive control: while the stopped replica's session lives,
            // the write waits for it.
            let early =
                tokio::time::timeout(std::time::Duration::from_millis(500), alone.as_mut()).await;
            assert!(early.is_err(), "the write did not wait: {early:?}");
            // Well before the 15 s sealrun asks for: the URL's 2 s won.
            let done = tokio::time::timeout(std::time::Duration::from_secs(10), alone).await;
            assert!(matches!(done, Ok(Ok(()))), "{done:?}");
            // The stopped replica goes on, too late.
            go.send(()).expect("the holder waits");
        };
        let (held, ()) = tokio::join!(held, rest);
        assert!(
            held.is_err(),
            "the stopped replica's batch was answered as stored"
        );
        let entries = verified_chain(&pg.db, org_id).await;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["alone"]);
        // And its writer carries on, on a new session.
        stopped
            .write(audit_job(org_id, "after", false))
            .await
            .expect("the stopped replica writes again");
        stopped.close();
        pg.close();
    }

    #[tokio::test]
    async fn appends_of_replicas_writing_side_by_side_make_one_chain_on_postgres() {
        let Some(pg) = OnPostgres::open() else { return };
        let other = pg.replica();
        let org_id = org_id_of_new(&pg.db, "two-writers").await;
        let writes = |db| {
            futures_util::future::join_all(
                (0..150)
                    .map(move |_| Db::write_beside(db, audit_job(org_id, "beside", false), |_| {})),
            )
        };
        let (one, two) = tokio::join!(writes(&pg.db), writes(&other));
        assert!(one.iter().chain(&two).all(Result::is_ok));
        assert_eq!(verified_chain(&pg.db, org_id).await.len(), 300);
        other.close();
        pg.close();
    }

    on_both_backends!(
        a_failing_job_of_a_batch_undoes_only_its_own_changes_on_sqlite,
        a_failing_job_of_a_batch_undoes_only_its_own_changes_on_postgres,
        a_failing_job_undoes_only_its_own_changes
    );

    on_both_backends!(
        a_failing_job_of_a_batch_undoes_only_its_own_changes_beside_others_on_sqlite,
        a_failing_job_of_a_batch_undoes_only_its_own_changes_beside_others_on_postgres,
        a_failing_job_undoes_only_its_own_changes_beside
    );

    on_both_backends!(
        a_job_answered_ok_is_stored_whatever_fails_after_it_on_sqlite,
        a_job_answered_ok_is_stored_whatever_fails_after_it_on_postgres,
        a_job_answered_ok_is_stored_whatever_fails_after_it
    );

    on_both_backends!(
        jobs_beside_others_run_again_only_after_a_failure_on_sqlite,
        jobs_beside_others_run_again_only_after_a_failure_on_postgres,
        jobs_beside_others_run_again_only_after_a_failure
    );

    on_both_backends!(
        many_appends_of_one_batch_make_two_whole_chains_on_sqlite,
        many_appends_of_one_batch_make_two_whole_chains_on_postgres,
        many_appends_of_one_batch_make_two_whole_chains
    );

    on_both_backends!(
        a_job_failing_before_its_first_statement_undoes_nothing_else_on_sqlite,
        a_job_failing_before_its_first_statement_undoes_nothing_else_on_postgres,
        a_job_failing_before_its_first_statement_undoes_nothing_else
    );

    on_both_backends!(
        a_job_answered_ok_has_its_changes_stored_on_sqlite,
        a_job_answered_ok_has_its_changes_stored_on_postgres,
        a_job_answered_ok_has_its_changes_stored
    );

    on_both_backends!(
        a_job_answered_ok_has_its_changes_stored_beside_others_on_sqlite,
        a_job_answered_ok_has_its_changes_stored_beside_others_on_postgres,
        a_job_answered_ok_has_its_changes_stored_beside
    );

    on_both_backends!(
        audit_appends_around_a_rolled_back_one_keep_the_chain_whole_on_sqlite,
        audit_appends_around_a_rolled_back_one_keep_the_chain_whole_on_postgres,
        appends_around_a_rolled_back_one_keep_the_chain_whole
    );

    on_both_backends!(
        a_failing_write_left_for_later_fails_its_job_only_on_sqlite,
        a_failing_write_left_for_later_fails_its_job_only_on_postgres,
        a_failing_write_left_for_later_fails_its_job_only
    );

    on_both_backends!(
        a_failing_write_left_for_later_fails_its_job_only_beside_others_on_sqlite,
        a_failing_write_left_for_later_fails_its_job_only_beside_others_on_postgres,
        a_failing_write_left_for_later_fails_its_job_only_beside
    );

    on_both_backends!(
        writes_left_for_later_are_sent_in_order_on_sqlite,
        writes_left_for_later_are_sent_in_order_on_postgres,
        writes_left_for_later_are_sent_in_order
    );

    #[tokio::test]
    async fn a_write_left_for_later_whose_parameters_cannot_be_sent_fails_where_it_is_left() {
        // Encoded only when sent, it would fail unsent on the client while
        // the statement sent with it (the batch's COMMIT) ran.
        let Some(pg) = OnPostgres::open() else { return };
        let answers = one_batch(
            &pg.db,
            vec![Box::new(|tx: &Tx<'_>| {
                let left = tx
                    .prepare_cached("INSERT INTO orgs (name, created_ms) VALUES (?1, ?2)")?
                    .execute_later(params!["unsendable"]);
                assert!(left.is_err(), "one parameter of two");
                Ok(())
            })],
        )
        .await;
        assert_eq!(answers[0], Ok(()));
        assert!(!org_names(&pg.db).await.contains(&"unsendable".to_owned()));
        pg.close();
    }

    #[tokio::test]
    async fn a_connection_lost_with_writes_left_for_later_at_a_batchs_end_is_answered_maybe_applied()
     {
        // The statements left for later go out with `RELEASE job; COMMIT`:
        // with the connection lost, nothing is known of the `COMMIT`.
        let Some(pg) = OnPostgres::open() else { return };
        let (pid_tx, pid_rx) = std::sync::mpsc::channel::<i64>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let write = pg.db.write(move |tx| {
            // Prepared first: preparing is a round trip of its own, and
            // would fail the job itself.
            let mut insert = tx.prepare_cached(INSERT_ORG)?;
            let pid: i64 = tx.query_row("SELECT pg_backend_pid()", params![], |r| r.get(0))?;
            let gone = || Error::internal("the test went away");
            pid_tx.send(pid).map_err(|_| gone())?;
            go_rx.recv().map_err(|_| gone())?;
            insert.execute_later(params!["lost"])?;
            Ok(())
        });
        let url = pg.database.url_text.clone();
        let cut = async {
            tokio::task::spawn_blocking(move || {
                let pid = pid_rx.recv().expect("the writer's backend");
                let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("a client");
                let pid = i32::try_from(pid).expect("a process id");
                let row = admin
                    .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                    .expect("terminated");
                assert!(row.get::<_, bool>(0));
                go_tx.send(()).expect("the job waits");
            })
            .await
            .expect("a thread");
        };
        let (answer, ()) = tokio::join!(write, cut);
        assert_eq!(answer, Err(not_durable()));
        // Positive control: the writer goes on, on a new connection.
        add_org(&pg.db, "after").await.expect("a write");
        assert!(org_names(&pg.db).await.contains(&"after".to_owned()));
        pg.close();
    }

    #[tokio::test]
    async fn a_read_of_one_statement_refuses_a_second_on_postgres() {
        // Outside a transaction, two statements could see two states.
        let Some(pg) = OnPostgres::open() else { return };
        add_org(&pg.db, "one").await.expect("an org");
        fn count(tx: &Tx<'_>) -> Result<i64, Error> {
            Ok(tx.query_row("SELECT COUNT(*) FROM orgs", params![], |r| r.get(0))?)
        }
        assert_eq!(pg.db.read_one(count).await, Ok(1));
        let twice = pg.db.read_one(|tx| count(tx).and_then(|_| count(tx))).await;
        assert!(twice.is_err(), "{twice:?}");
        pg.close();
    }

    #[tokio::test]
    async fn the_store_is_writable_again_from_the_first_durable_write_after_a_failure() {
        let dir = tempfile::tempdir().expect("a directory");
        let settings = Settings::default();
        let db = open(dir.path(), &settings);
        let opened = db.writable_since().expect("writable once open");
        settings.faults.fail_next_syncs(1);
        add_org(&db, "ambiguous")
            .await
            .expect_err("the sync failed");
        assert_eq!(db.writable_since(), None);
        add_org(&db, "durable").await.expect("a durable write");
        let again = db.writable_since().expect("writable again");
        assert!(again >= opened);
        db.close();
    }
}
