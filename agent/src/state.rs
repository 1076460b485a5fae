//! What the agent keeps on disk: its identity (`agent.json`) and the targets'
//! keypairs (`keys/<target>.key`), all in its state directory.
//!
//! One agent per state directory: two would share one identity and one set of
//! keys and remove each other's containers as orphans. [`StateDir::open`]
//! locks the directory (`sealrun.lock`, see `sealrun-dirlock`) before
//! anything in it is read or written, and a second agent fails at once with
//! [`StateError::Lock`], naming the holder's pid.
//!
//! The directory is created `0700` and the files `0600` from the start (created with
//! that mode, never chmod-ed after the fact, so they are never world-readable even
//! for an instant). An identity file readable by group or others is refused, as
//! ssh refuses a loose private key: someone may already have copied the token.

use sealrun_dirlock::DirLock;
use sealrun_wire::audit::AuditLink;
use serde::{Deserialize, Serialize};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// File name of the identity inside the state directory.
pub const IDENTITY_FILE: &str = "agent.json";
/// File (in the state directory) holding the audit link the agent saw last.
pub const AUDIT_HEAD_FILE: &str = "audit-head.json";
/// File (in the state directory) of the signed runs' nonces the agent ran,
/// one `<expires_ms> <nonce>` line each, appended before the run starts.
pub const NONCES_FILE: &str = "run-nonces";
/// File (in the state directory) of when each served target's newest
/// certificate the agent ran a run under was issued (JSON object).
pub const CERTIFIED_FILE: &str = "target-certificates.json";
/// The shape of each target's warm pool, as the agent last learned it from a
/// run ([`crate::pool`]): so that a restarted agent warms its pools at once.
pub const POOL_SHAPES_FILE: &str = "pool-shapes.json";

/// Problems with the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The identity file is readable by others than its owner.
    #[error(
        "{path} is readable by group or others (mode {mode:o}); the agent token may have leaked: revoke the agent, delete the file and enroll again, or chmod 600 it if you are sure"
    )]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The identity file is not what this agent writes.
    #[error("{path} is not a valid agent identity file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another agent (or `sealrun dev`) holds the state directory, or it could
    /// not be locked; the message names the holder's pid.
    #[error(transparent)]
    Lock(#[from] sealrun_dirlock::LockError),
    /// A target name that cannot safely name a key file.
    #[error(
        "target name {0:?} cannot name a key file: use letters, digits, '.', '_' and '-', not starting with '.'"
    )]
    BadTargetName(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The agent's identity as the control plane issued it at registration.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Stable agent id.
    pub agent_id: String,
    /// Bearer token for every call after registration.
    pub agent_token: String,
    /// The control plane that issued it (a token is only good there).
    pub server_url: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("agent_token", &"***")
            .field("server_url", &self.server_url)
            .finish()
    }
}

/// The state directory, locked for this process while any clone of it lives.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    _lock: Arc<DirLock>,
}

impl StateDir {
    /// Opens `root`, creating it (mode `0700`) if needed, locks it for this
    /// process (failing at once with [`StateError::Lock`] if another holds
    /// it), then creates its `keys/` subdirectory if needed.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(root).map_err(io_error(root))?;
        let lock = DirLock::acquire(root, "state directory", "sealrun agent")?;
        let keys = root.join("keys");
        builder.create(&keys).map_err(io_error(&keys))?;
        Ok(StateDir {
            root: root.to_owned(),
            _lock: Arc::new(lock),
        })
    }

    /// Path of the identity file.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    /// Default key file of `target`: `keys/<target>.key`.
    pub fn key_path(&self, target: &str) -> Result<PathBuf, StateError> {
        let safe = !target.is_empty()
            && !target.starts_with('.')
            && target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !safe {
            return Err(StateError::BadTargetName(target.to_owned()));
        }
        Ok(self.root.join("keys").join(format!("{target}.key")))
    }

    /// The stored identity, if the agent has registered.
    pub fn load_identity(&self) -> Result<Option<Identity>, StateError> {
        let path = self.identity_path();
        let metadata = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StateError::LoosePermissions { path, mode });
        }
        let text = Zeroizing::new(fs::read(&path).map_err(io_error(&path))?);
        let identity: Identity =
            serde_json::from_slice(&text).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(Some(identity))
    }

    /// Stores `identity` atomically: written to a temporary file created
    /// `0600`, synced, then renamed over `agent.json`.
    pub fn store_identity(&self, identity: &Identity) -> Result<(), StateError> {
        let path = self.identity_path();
        let json = Zeroizing::new(serde_json::to_vec_pretty(identity).map_err(|e| {
            StateError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            }
        })?);
        self.write_file(IDENTITY_FILE, &json)
    }

    /// The audit link this agent saw last (`None` before the first), which
    /// the control plane's chain must extend from then on.
    pub fn load_audit_head(&self) -> Result<Option<AuditLink>, StateError> {
        self.read_json(AUDIT_HEAD_FILE)
    }

    /// Remembers `head` (atomically), so a restart still holds the control
    /// plane to the history seen before it.
    pub fn store_audit_head(&self, head: &AuditLink) -> Result<(), StateError> {
        self.write_json(AUDIT_HEAD_FILE, head)
    }

    /// The nonces of signed runs this agent started that are still
    /// unexpired at `now_ms` (with their expiry), and rewrites the file with
    /// only those ([`StateDir::store_nonces`]).
    pub fn load_nonces(
        &self,
        now_ms: i64,
    ) -> Result<std::collections::HashMap<String, i64>, StateError> {
        let path = self.root.join(NONCES_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mut live = std::collections::HashMap::new();
        for line in text.lines() {
            let parsed = line
                .split_once(' ')
                .and_then(|(at, nonce)| Some((at.parse::<i64>().ok()?, nonce)));
            // A torn last line (a crash mid-append) names no run that started:
            // the run starts only once its line is synced.
            if let Some((expires, nonce)) = parsed {
                if expires >= now_ms {
                    live.insert(nonce.to_owned(), expires);
                }
            }
        }
        self.store_nonces(&live)?;
        Ok(live)
    }

    /// Replaces the nonces file (atomically) with `live`: what a restart
    /// must still refuse, without the expired lines appended since.
    pub fn store_nonces(
        &self,
        live: &std::collections::HashMap<String, i64>,
    ) -> Result<(), StateError> {
        let mut kept = String::new();
        for (nonce, expires) in live {
            kept.push_str(&format!("{expires} {nonce}\n"));
        }
        self.write_file(NONCES_FILE, kept.as_bytes())
    }

    /// When the newest certificate of each target the agent ran a run under
    /// was issued (Unix milliseconds).
    pub fn load_certified(&self) -> Result<std::collections::HashMap<String, i64>, StateError> {
        Ok(self.read_json(CERTIFIED_FILE)?.unwrap_or_default())
    }

    /// Remembers `certified` (atomically), before a run under a newer
    /// certificate starts.
    pub fn store_certified(
        &self,
        certified: &std::collections::HashMap<String, i64>,
    ) -> Result<(), StateError> {
        self.write_json(CERTIFIED_FILE, certified)
    }

    /// The shapes of the targets' warm pools the agent remembered; none if
    /// it never wrote any.
    pub fn load_pool_shapes(
        &self,
    ) -> Result<std::collections::HashMap<String, crate::runtime::Shape>, StateError> {
        Ok(self.read_json(POOL_SHAPES_FILE)?.unwrap_or_default())
    }

    /// Remembers the pools' `shapes` (atomically).
    pub fn store_pool_shapes(
        &self,
        shapes: &std::collections::HashMap<String, crate::runtime::Shape>,
    ) -> Result<(), StateError> {
        self.write_json(POOL_SHAPES_FILE, shapes)
    }

    /// The JSON file `name`, or `None` if it does not exist; one that does
    /// not parse is [`StateError::Corrupt`], naming it.
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        let path = self.root.join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Writes `value` as JSON to `name`, atomically ([`Self::write_file`]).
    fn write_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let json = serde_json::to_vec(value).map_err(|e| StateError::Corrupt {
            path: self.root.join(name),
            message: e.to_string(),
        })?;
        self.write_file(name, &json)
    }

    /// Appends `nonce` (counting until `expires_ms`) and syncs it, before
    /// its run starts: after a crash the agent still refuses it.
    pub fn append_nonce(&self, nonce: &str, expires_ms: i64) -> Result<(), StateError> {
        let path = self.root.join(NONCES_FILE);
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        file.write_all(format!("{expires_ms} {nonce}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_error(&path))
    }

    /// Writes `bytes` to `name` atomically: to a temporary file created
    /// `0600`, synced, then renamed over `name`, and the rename synced.
    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.root.join(name);
        let tmp = self
            .root
            .join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&tmp)(e));
        }
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        // Make the rename itself durable.
        if let Ok(dir) = fs::File::open(&self.root) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn identity() -> Identity {
        Identity {
            agent_id: "ag_1".into(),
            agent_token: "sr_agent_topsecret".into(),
            server_url: "https://cp:8443".into(),
        }
    }

    #[test]
    fn the_pools_shapes_round_trip_and_none_is_an_empty_map() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        assert!(state.load_pool_shapes().unwrap().is_empty());
        let shape = crate::runtime::Shape {
            image_id: "sha256:abc".into(),
            limits: Default::default(),
            network: Some("backend".into()),
            user: None,
        };
        let shapes = std::collections::HashMap::from([("demo".to_owned(), shape)]);
        state.store_pool_shapes(&shapes).unwrap();
        assert_eq!(state.load_pool_shapes().unwrap(), shapes);
        // A file that does not parse is an error naming it, not an empty pool.
        fs::write(dir.path().join("state").join(POOL_SHAPES_FILE), b"{").unwrap();
        assert!(matches!(
            state.load_pool_shapes(),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_identity_round_trips_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        assert!(state.load_identity().unwrap().is_none());
        state.store_identity(&identity()).unwrap();
        let loaded = state.load_identity().unwrap().unwrap();
        assert_eq!(loaded.agent_id, "ag_1");
        assert_eq!(loaded.agent_token, "sr_agent_topsecret");
        let mode = fs::metadata(state.identity_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(dir.path().join("state"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn a_group_readable_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.store_identity(&identity()).unwrap();
        fs::set_permissions(state.identity_path(), fs::Permissions::from_mode(0o640)).unwrap();
        let err = state.load_identity().unwrap_err();
        assert!(
            matches!(err, StateError::LoosePermissions { mode: 0o640, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_identity_is_a_clear_error_that_does_not_quote_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let path = state.identity_path();
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(b"{\"agent_token\": \"sr_agent_topsecret\"")
            .unwrap();
        let err = state.load_identity().unwrap_err().to_string();
        assert!(
            err.contains("agent.json") && !err.contains("topsecret"),
            "{err}"
        );
    }

    #[test]
    fn target_names_cannot_escape_the_keys_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert!(
            state
                .key_path("prod-db")
                .unwrap()
                .ends_with("keys/prod-db.key")
        );
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(state.key_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_second_agent_on_one_state_dir_fails_naming_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateDir::open(dir.path()).unwrap();

        let err = StateDir::open(dir.path()).unwrap_err();

        assert!(matches!(err, StateError::Lock(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "state directory {} is in use by sealrun agent (pid {}); stop it first or use another state directory",
                dir.path().display(),
                std::process::id()
            )
        );
    }

    #[test]
    fn the_state_dir_stays_locked_while_any_clone_lives() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path()).unwrap();
        let clone = first.clone();
        drop(first);
        assert!(StateDir::open(dir.path()).is_err(), "the clone holds it");
        drop(clone);
        StateDir::open(dir.path()).unwrap();
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", identity()).contains("topsecret"));
    }
}
