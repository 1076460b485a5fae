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

use super::schema::{self, database_error};
use super::tx::Tx;
use crate::error::{Error, OpenError};
use rusqlite::{Connection, OpenFlags};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// The database file inside the data directory.
pub const DB_FILE: &str = "sealrun.db";

/// Most jobs one transaction holds (bounds the latency a batch adds).
const MAX_BATCH: usize = 512;
/// Reader connections kept open (more are opened under load, then closed).
const IDLE_READERS: usize = 8;
/// How long a statement waits for another process's lock (`create_org`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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

/// A unit of work for the writer thread.
trait WriteJob: Send {
    /// Runs the job; returns whether its changes should be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Called on the writer thread as soon as the batch committed (before
    /// it is durable).
    fn committed(&mut self);
    /// Answers the caller once the batch's fate is known (durable, or not).
    fn deliver(self: Box<Self>, committed: Result<(), Error>);
}

type Hook<T> = Box<dyn FnOnce(&T) + Send>;

struct Job<T, F> {
    work: Option<F>,
    on_commit: Option<Hook<T>>,
    result: Option<Result<T, Error>>,
    reply: oneshot::Sender<Result<T, Error>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send,
{
    fn committed(&mut self) {
        if let (Some(hook), Some(Ok(value))) = (self.on_commit.take(), self.result.as_ref()) {
            hook(value);
        }
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A bug in one job must not take the writer thread (and with it
        // every later write) down.
        let result = catch_unwind(AssertUnwindSafe(|| work(&Tx::new(conn))))
            .unwrap_or_else(|_| Err(Error::internal("a database job panicked")));
        let keep = result.is_ok();
        self.result = Some(result);
        keep
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

enum Message {
    Job(Box<dyn WriteJob>),
    Stop,
}

/// Handle on the database; cheap to share behind an `Arc`.
pub(crate) struct Db {
    path: PathBuf,
    jobs: mpsc::Sender<Message>,
    readers: Arc<ReaderPool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens and migrates the database and starts the writer and syncer
    /// threads. With `durable` false, writes are answered once committed to
    /// the WAL file (they survive the process crashing, not the machine).
    pub(crate) fn open(path: &Path, durable: bool) -> Result<Db, OpenError> {
        let conn = open_migrated(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| database_error(path, &e))?;
        let thread_err = |source| OpenError::DataDir {
            path: path.to_owned(),
            source,
        };
        let (tx, rx) = mpsc::channel();
        let (to_sync, syncing) = mpsc::channel();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let syncer = std::thread::Builder::new()
            .name("sealrun-db-syncer".into())
            .spawn(move || syncer_loop(&wal, syncing, durable))
            .map_err(thread_err)?;
        let writer = std::thread::Builder::new()
            .name("sealrun-db-writer".into())
            .spawn(move || writer_loop(conn, rx, to_sync, syncer))
            .map_err(thread_err)?;
        Ok(Db {
            path: path.to_owned(),
            jobs: tx,
            readers: Arc::new(ReaderPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
            writer: Mutex::new(Some(writer)),
        })
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
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            work: Some(work),
            on_commit: Some(Box::new(on_commit)),
            result: None,
            reply,
        });
        if self.jobs.send(Message::Job(job)).is_err() {
            return Err(Error::shutting_down());
        }
        answer.await.map_err(|_| Error::shutting_down())?
    }

    /// Runs `work` on a reader connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = work(&Tx::new(&conn));
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| Error::internal(format_args!("database reader: {e}")))?
    }

    /// Finishes queued writes, checkpoints the WAL and stops the writer.
    pub(crate) fn close(&self) {
        let _ = self.jobs.send(Message::Stop);
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            if writer.join().is_err() {
                tracing::error!("the database writer thread panicked");
            }
        }
    }
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, Error> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = open_connection(&self.path).map_err(Error::internal)?;
        conn.pragma_update(None, "query_only", "ON")
            .map_err(Error::internal)?;
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
    to_sync: mpsc::Sender<Batch>,
    syncer: JoinHandle<()>,
) {
    let mut stopping = false;
    while !stopping {
        let mut batch: Vec<Box<dyn WriteJob>> = match jobs.recv() {
            Ok(Message::Job(job)) => vec![job],
            Ok(Message::Stop) | Err(_) => break,
        };
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Some(committed) = run_batch(&conn, batch) {
            if let Err(mpsc::SendError(batch)) = to_sync.send(committed) {
                for job in batch {
                    job.deliver(Err(Error::internal("the database syncer stopped")));
                }
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

type Batch = Vec<Box<dyn WriteJob>>;

/// Runs and commits a batch; returns it if committed (to be answered once
/// durable), having answered it already if not.
fn run_batch(conn: &Connection, mut batch: Batch) -> Option<Batch> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = Error::internal(format_args!("database: {e}"));
        for job in batch {
            job.deliver(Err(err.clone()));
        }
        return None;
    }
    for job in &mut batch {
        if conn.execute_batch("SAVEPOINT job").is_err() {
            continue; // never run: delivered as an error below
        }
        let keep = job.run(conn);
        let end = if keep {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "cannot end a job's savepoint");
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for job in &mut batch {
                job.committed();
            }
            Some(batch)
        }
        Err(e) => {
            let err = Error::internal(format_args!("database: {e}"));
            let _ = conn.execute_batch("ROLLBACK");
            for job in batch {
                job.deliver(Err(err.clone()));
            }
            None
        }
    }
}

/// Makes committed batches durable: one `fdatasync` of the WAL for every
/// batch that committed before it started, then their answers.
fn syncer_loop(wal: &Path, batches: mpsc::Receiver<Batch>, durable: bool) {
    while let Ok(mut jobs) = batches.recv() {
        while let Ok(more) = batches.try_recv() {
            jobs.extend(more);
        }
        let synced = if durable {
            std::fs::File::open(wal)
                .and_then(|f| f.sync_data())
                .map_err(|e| Error::internal(format_args!("cannot sync {}: {e}", wal.display())))
        } else {
            Ok(())
        };
        for job in jobs {
            job.deliver(synced.clone());
        }
    }
}

/// A migrated connection of its own, outside the writer thread: for the
/// offline `create-org` (which may run beside a live server: SQLite
/// serializes the two writers) and the first start's bootstrap.
pub(crate) struct Standalone {
    conn: Connection,
    path: PathBuf,
}

impl Standalone {
    /// Opens (creating and migrating) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Standalone, OpenError> {
        Ok(Standalone {
            conn: open_migrated(path)?,
            path: path.to_owned(),
        })
    }

    /// Runs `work` in one `IMMEDIATE` transaction (it takes the write lock
    /// at once, so a check and the insert it guards cannot interleave with
    /// another writer); commits if it succeeds.
    pub(crate) fn immediate<T>(
        &mut self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, OpenError>,
    ) -> Result<T, OpenError> {
        let path = self.path.clone();
        let db_err = |e: rusqlite::Error| database_error(&path, &e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let value = work(&Tx::new(&tx))?;
        tx.commit().map_err(db_err)?;
        Ok(value)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
