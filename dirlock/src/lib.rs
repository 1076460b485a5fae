//! One process per sealrun directory.
//!
//! The control plane's data directory (one SQLite writer by design), an
//! agent's state directory (one identity, one set of keys, one owner of its
//! containers) and `sealrun dev`'s data directory (its `dev.env` and admin
//! token) must each be used by one process at a time. [`DirLock::acquire`]
//! takes an exclusive advisory lock (`flock(2)`) on [`LOCK_FILE`] in the
//! directory and writes the holder's pid and what it is into the file, so a
//! second process fails at once with [`LockError::InUse`] naming the holder,
//! before it has touched anything else:
//!
//! ```
//! use sealrun_dirlock::{DirLock, LockError};
//!
//! let dir = tempfile::tempdir()?;
//! let held = DirLock::acquire(dir.path(), "data directory", "sealrun server")?;
//!
//! let second = DirLock::acquire(dir.path(), "data directory", "sealrun server").unwrap_err();
//! let LockError::InUse { holder: Some(holder), .. } = &second else { panic!("{second}") };
//! assert_eq!(holder.pid, std::process::id());
//! assert!(second.to_string().contains(&format!("in use by sealrun server (pid {})", holder.pid)));
//!
//! drop(held); // or the process exits, however it exits
//! DirLock::acquire(dir.path(), "data directory", "sealrun server")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Stale files never block.** The kernel releases a `flock` when the
//! holder's file is closed, so a process that crashed (even `SIGKILL`) frees
//! the directory; the file it leaves behind is only overwritten by the next
//! holder. The pid in the file is informational: the lock, not the file's
//! existence or content, decides.
//!
//! The lock is on the open file, not the process: a second acquisition in the
//! same process fails as well, which is what the unit tests rely on. It is
//! advisory: it keeps out sealrun processes, not other programs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = "sealrun.lock";

/// How long a refused process waits for the holder's record to appear: the
/// holder writes it right after taking the lock, so an empty file is a
/// holder that is a few microseconds old.
const RECORD_WAIT: Duration = Duration::from_millis(200);

/// An exclusive lock on a directory, held until dropped (or the process
/// ends, however it ends).
#[derive(Debug)]
pub struct DirLock {
    // Never read: holding the locked file is the point.
    _file: Flock<File>,
    path: PathBuf,
}

/// Who holds a directory, as its lock file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holder's process id.
    pub pid: u32,
    /// What it is (`sealrun server`, `sealrun agent`, `sealrun dev`).
    pub what: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {})", self.what, self.pid)
    }
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the directory.
    #[error(
        "{kind} {} is in use by {}; stop it first or use another {kind}",
        .dir.display(),
        by(.holder)
    )]
    InUse {
        /// What the directory is to its users (`data directory`).
        kind: &'static str,
        /// The directory.
        dir: PathBuf,
        /// The holder, if its record could be read.
        holder: Option<Holder>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock {kind} {}: {source}", .path.display())]
    Io {
        /// What the directory is to its users.
        kind: &'static str,
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn by(holder: &Option<Holder>) -> String {
    match holder {
        Some(h) => h.to_string(),
        None => "another process".to_owned(),
    }
}

impl DirLock {
    /// Locks `dir` (which must exist) for this process, or fails at once.
    ///
    /// `kind` names the directory in messages (`"data directory"`, `"state
    /// directory"`); `holder` is what this process is (`"sealrun server"`),
    /// written with its pid into [`LOCK_FILE`] for the next one to read.
    /// Nothing else in `dir` is read or written.
    pub fn acquire(dir: &Path, kind: &'static str, holder: &str) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            kind,
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // The previous holder's record stays until the lock is ours.
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        let locked = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => break locked,
                Err((f, Errno::EINTR)) => file = f,
                Err((mut f, Errno::EWOULDBLOCK)) => {
                    return Err(LockError::InUse {
                        kind,
                        dir: dir.to_owned(),
                        holder: read_holder(&mut f),
                    });
                }
                Err((_, errno)) => return Err(io_err(io::Error::from(errno))),
            }
        };
        // Truncate first: a shorter record must not keep a stale tail.
        let record = format!("{} {holder}\n", std::process::id());
        locked
            .set_len(0)
            .and_then(|()| locked.write_all_at(record.as_bytes(), 0))
            .map_err(io_err)?;
        Ok(DirLock {
            _file: locked,
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder's record, waiting briefly for a holder that has just taken the
/// lock to write it; `None` if it never becomes readable.
fn read_holder(file: &mut File) -> Option<Holder> {
    let deadline = std::time::Instant::now() + RECORD_WAIT;
    loop {
        let mut text = String::new();
        let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
        if let Some(holder) = read.ok().and_then(|_| parse(&text)) {
            return Some(holder);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `"<pid> <what>\n"`; the newline marks a complete record.
fn parse(text: &str) -> Option<Holder> {
    let line = text.strip_suffix('\n')?;
    let (pid, what) = line.split_once(' ')?;
    Some(Holder {
        pid: pid.parse().ok()?,
        what: what.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn lock(dir: &Path) -> Result<DirLock, LockError> {
        DirLock::acquire(dir, "data directory", "sealrun test")
    }

    #[test]
    fn a_second_lock_fails_at_once_naming_the_holders_pid_and_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();

        let err = lock(dir.path()).unwrap_err();

        let me = std::process::id();
        match &err {
            LockError::InUse {
                kind,
                dir: locked,
                holder: Some(holder),
            } => {
                assert_eq!(*kind, "data directory");
                assert_eq!(locked, dir.path());
                assert_eq!(holder.pid, me);
                assert_eq!(holder.what, "sealrun test");
            }
            other => panic!("expected InUse with a holder, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "data directory {} is in use by sealrun test (pid {me}); stop it first or use another data directory",
                dir.path().display()
            )
        );
    }

    #[test]
    fn dropping_the_lock_frees_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        drop(lock(dir.path()).unwrap());
        lock(dir.path()).unwrap();
    }

    #[test]
    fn the_lock_file_records_pid_and_holder_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert_eq!(held.path(), dir.path().join(LOCK_FILE));
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{} sealrun test\n", std::process::id())
        );
        let mode = std::fs::metadata(held.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_stale_lock_file_left_by_a_dead_process_does_not_block_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        // A crashed holder's record, longer than ours: no lock is held on it.
        std::fs::write(
            dir.path().join(LOCK_FILE),
            "4000000000 sealrun dev with a long name\n",
        )
        .unwrap();

        let held = lock(dir.path()).unwrap();

        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{} sealrun test\n", std::process::id())
        );
    }

    #[test]
    fn an_unreadable_record_still_refuses_without_naming_a_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        std::fs::write(held.path(), "garbage").unwrap();

        let err = lock(dir.path()).unwrap_err();

        assert!(
            matches!(err, LockError::InUse { holder: None, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("is in use by another process;"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = lock(&missing).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&missing.join(LOCK_FILE).display().to_string()),
            "{err}"
        );
        assert!(!missing.exists(), "acquire creates no directory");
    }

    #[test]
    fn records_parse_only_when_complete() {
        assert_eq!(
            parse("12 sealrun agent\n"),
            Some(Holder {
                pid: 12,
                what: "sealrun agent".into()
            })
        );
        for partial in ["", "12", "12 sealrun agent", "x sealrun\n", "12\n"] {
            assert_eq!(parse(partial), None, "{partial:?}");
        }
    }
}
