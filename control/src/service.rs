//! [`Control`]: the control plane's state, opened once per process.

use crate::credentials::{AuthCache, FailureThrottle};
use crate::dispatch::{Claim, HandOffs, Outbox, PollWakeups, RunWatchers};
use crate::error::OpenError;
use crate::orgs;
use crate::relay::StdinRelays;
use crate::settings::Settings;
use crate::slack_keys::SlackKeys;
use crate::store::Heard;
use crate::store::{DB_FILE, DatabaseUrl, Db, Standalone};
use sealrun_dirlock::DirLock;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long after another replica said it woke a poller of its own for a
/// run (hint `p`) this one looks whether the target's queue still holds a
/// run: long enough for that claim to be made under load, short beside a
/// long poll (what a run not taken after all waits, instead of the poll
/// timeout).
const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// How to open a control plane's data directory.
#[derive(Clone, Debug)]
pub struct OpenOptions<'a> {
    /// Holds `sealrun.db` and `slack.key`; created (mode 0700) if missing,
    /// and locked for this process (`sealrun.lock`) until
    /// [`Control::close`].
    pub data_dir: &'a Path,
    /// The org created on first start.
    pub org_name: &'a str,
    /// Where the first start writes the org's one-time admin token (mode
    /// 0600); `None` prints it once to stderr instead.
    pub admin_token_file: Option<&'a Path>,
    /// Protocol knobs and limits.
    pub settings: Settings,
    /// A shared PostgreSQL database, for several replicas; `None` keeps the
    /// embedded SQLite database in `data_dir`.
    pub database: Option<DatabaseUrl>,
}

/// The control plane: every domain operation is a method of it (in the
/// module of its concern), taking the caller's identity.
///
/// It holds the database and the in-memory hints layered over it (poll
/// wake-ups, log watchers, the verified-token cache). Share it behind an
/// `Arc`; adapters (HTTP, Slack) hold nothing else of the domain.
pub struct Control {
    pub(crate) db: Db,
    pub(crate) settings: Settings,
    pub(crate) wakeups: Arc<PollWakeups>,
    /// Pollers here ready to be handed a run as it is submitted.
    pub(crate) handoffs: Arc<HandOffs<Claim>>,
    pub(crate) watchers: RunWatchers,
    pub(crate) auth: Arc<AuthCache>,
    pub(crate) failures: FailureThrottle,
    pub(crate) slack: Arc<SlackKeys>,
    pub(crate) stdin: StdinRelays,
    /// Woken when an approval request may need its Slack message posted or
    /// updated (the adapter also looks every few seconds).
    pub(crate) slack_outbox: Arc<Outbox>,
    /// This process's id among the replicas sharing its database: what it
    /// holds of Slack's outbox is marked with it (`store::slack::Hold`).
    pub(crate) replica: String,
    stop: watch::Sender<bool>,
    stopping: watch::Receiver<bool>,
    /// The data directory's lock; `None` once closed, so that a control
    /// plane reopened in the same process (a restart) does not find its
    /// predecessor still holding it through a lingering `Arc`.
    lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("db", &self.db)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Locks `options.data_dir` for this process, opens (creating and
    /// migrating) the database in it, creates the first org on first start,
    /// loads (or creates) the Slack sealing key, and starts the database
    /// writer. Blocking: call it from a blocking thread in async code.
    ///
    /// A directory another control plane holds fails at once with
    /// [`OpenError::Lock`], naming the holder's pid, before anything in it
    /// is read or written: the database has one writer by design.
    /// ([`crate::create_org`] takes no lock: it is meant to run beside a
    /// server.)
    pub fn open(options: OpenOptions<'_>) -> Result<Control, OpenError> {
        options.settings.check().map_err(OpenError::Settings)?;
        orgs::ensure_data_dir(options.data_dir)?;
        let lock = DirLock::acquire(options.data_dir, "data directory", "sealrun server")?;
        let path = options.data_dir.join(DB_FILE);
        {
            let mut conn = match &options.database {
                Some(url) => Standalone::open_postgres(url)?,
                None => Standalone::open(&path)?,
            };
            if options.database.is_some() && path.exists() {
                left_behind(&mut conn, &path)?;
            }
            orgs::bootstrap(&mut conn, options.org_name, options.admin_token_file)?;
        }
        let db = match &options.database {
            Some(url) => Db::open_postgres(url, &options.settings)?,
            None => Db::open(&path, &options.settings)?,
        };
        let broadcast = db.broadcast();
        let slack = SlackKeys::open(options.data_dir, broadcast.clone())?;
        let (stop, stopping) = watch::channel(false);
        Ok(Control {
            db,
            settings: options.settings,
            wakeups: Arc::new(PollWakeups::new(broadcast.clone())),
            handoffs: Arc::default(),
            watchers: RunWatchers::new(broadcast.clone()),
            auth: Arc::new(AuthCache::new(broadcast.clone())),
            failures: FailureThrottle::default(),
            slack: Arc::new(slack),
            stdin: StdinRelays::default(),
            slack_outbox: Arc::new(Outbox::new(broadcast)),
            replica: crate::token::random_hex(8),
            stop,
            stopping,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The protocol knobs and limits it was opened with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Starts shutting down: long polls end empty, followed logs end.
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Relays hints between the replicas of a shared PostgreSQL database
    /// (a run queued, a run changed, cached credentials or keys stale)
    /// until shutdown starts; returns at once on SQLite. Spawn it beside
    /// the server.
    pub async fn relay_hints(&self) {
        if self.db.broadcast().is_none() {
            return;
        }
        let (look, looks) = mpsc::unbounded_channel();
        let heard = |heard: Heard<'_>| match heard {
            Heard::Hint(hint) => self.apply_hint(hint, &look),
            Heard::Missed => {
                // Every cue may have been missed: drop what is cached, and
                // let every waiter look at the database again.
                self.auth.invalidate_here();
                self.slack.invalidate_here();
                self.auth.set_hearing(true);
                self.slack.set_hearing(true);
                self.wakeups.wake_all();
                self.watchers.touch_all();
                self.slack_outbox.cue_here();
            }
            Heard::Deaf => {
                self.auth.set_hearing(false);
                self.slack.set_hearing(false);
            }
        };
        tokio::select! {
            () = self.db.listen(heard) => {}
            () = self.look_again(looks) => {}
            () = self.shutting_down() => {}
        }
    }

    /// For the runs other replicas queued and woke a poller of their own
    /// for (`p:<target>`), [`LOOK_AGAIN`] later: wakes as many pollers here
    /// as those runs still queued (each such poller was taken by another
    /// run, say, or its replica died before it claimed), at most one per
    /// run heard of. One look covers every hint heard while it waited: a
    /// write-free read per target and interval, where claiming on every
    /// hint was a write per replica and run, all but one finding the run
    /// gone.
    async fn look_again(&self, mut looks: mpsc::UnboundedReceiver<i64>) {
        while let Some(first) = looks.recv().await {
            tokio::time::sleep(LOOK_AGAIN).await;
            let mut heard = BTreeMap::from([(first, 1)]);
            while let Ok(target) = looks.try_recv() {
                *heard.entry(target).or_insert(0) += 1;
            }
            for (target, runs) in heard {
                // No poller here to wake: nothing to look for.
                if self.wakeups.waiting(target) == 0 {
                    continue;
                }
                let queued = self
                    .db
                    .read_one(move |tx| crate::store::runs::queued(tx, target, runs))
                    .await
                    .unwrap_or_else(|e| {
                        // Wake them all the same: a claim that finds
                        // nothing costs less than a run left waiting.
                        tracing::debug!(error = %e, target, "could not look at a queue again");
                        runs
                    });
                for _ in 0..queued {
                    self.wakeups.run_queued_here(target);
                }
            }
        }
    }

    /// Applies another replica's hint here; `look` takes targets to look at
    /// again ([`Control::look_again`]).
    fn apply_hint(&self, hint: &str, look: &mpsc::UnboundedSender<i64>) {
        match hint.split_once(':') {
            Some(("q", target)) => {
                if let Ok(target) = target.parse() {
                    self.wakeups.run_queued_here(target);
                }
            }
            Some(("p", target)) => {
                if let Ok(target) = target.parse() {
                    let _ = look.send(target);
                }
            }
            Some(("r", run)) => self.watchers.touch_here(run),
            None if hint == "a" => self.auth.invalidate_here(),
            None if hint == "k" => self.slack.invalidate_here(),
            None if hint == "s" => self.slack_outbox.cue_here(),
            _ => tracing::debug!(hint, "an unknown hint from another replica"),
        }
    }

    /// Resolves once shutdown has started.
    pub async fn shutting_down(&self) {
        let mut rx = self.stopping.clone();
        // An error means the sender is gone, which also means shutdown.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Commits queued writes, checkpoints the database, stops its writer and
    /// releases the data directory. Blocking.
    pub fn close(&self) {
        self.db.close();
        // A poisoned mutex still holds the lock; release it all the same.
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

/// A server pointed at PostgreSQL whose data directory still holds a
/// SQLite installation (`sealrun.db`). On an empty database it would start
/// a second, empty installation beside the first, with a new admin token,
/// and the operator would see their runs, people and audit trail gone; on
/// a database another replica started afresh, the same has happened
/// already. So it is refused unless the database holds that installation
/// (moved there: its first audit entry is there as it is), when the file is
/// only unused, and said so. A file that cannot be read is refused as
/// well: it may be the installation.
fn left_behind(conn: &mut Standalone, file: &Path) -> Result<(), OpenError> {
    let installation = match crate::store::check_installation(file) {
        Ok(installation) => installation,
        Err(OpenError::NotAnInstallation { .. }) => return Ok(()),
        Err(other) => return Err(other),
    };
    if orgs::count(conn)? == 0 {
        return Err(OpenError::NotMoved {
            file: file.to_owned(),
        });
    }
    if let Some(entry) = &installation.first_entry {
        if !orgs::holds_audit_entry(conn, entry)? {
            return Err(OpenError::OtherInstallation {
                file: file.to_owned(),
            });
        }
    }
    tracing::warn!(
        file = %file.display(),
        "this SQLite database is not used: the server keeps its data in PostgreSQL, where it was moved"
    );
    Ok(())
}
