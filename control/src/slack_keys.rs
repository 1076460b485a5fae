//! The key Slack signing secrets are sealed to, and the in-memory cache of
//! opened ones.
//!
//! A signing secret must be usable to compute HMACs, so it cannot be stored
//! hashed. It is sealed (the vault's sealed box) to a keypair the control
//! plane keeps in `data_dir/slack.key` (mode 0600), bound to its team id,
//! and opened only to verify a request; the opened secret is cached in
//! memory in zeroizing buffers and dropped whenever the link changes.

use crate::error::{Error, OpenError};
use crate::store::Broadcast;
use sealrun_vault::{SealedSecret, TargetKeypair};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// File (in the data directory) holding the key signing secrets are sealed to.
pub(crate) const KEY_FILE: &str = "slack.key";

/// The name a signing secret is sealed under (with the team id as target).
const SEALED_NAME: &str = "slack-signing-secret";
/// The name a bot token is sealed under (with the team id as target).
const BOT_TOKEN_NAME: &str = "slack-bot-token";
/// The name a `response_url` is sealed under (with the run id as target).
const URL_NAME: &str = "slack-response-url";
/// Most workspaces whose opened secrets are cached.
const CACHE_MAX: usize = 10_000;

/// A linked workspace, ready to verify its requests. Only the domain makes
/// one (from the stored link), so a `Workspace` always pairs a team with the
/// org it is linked to.
#[derive(Clone)]
pub struct Workspace {
    pub(crate) team_id: String,
    pub(crate) org_id: i64,
    pub(crate) secret: Arc<Zeroizing<Vec<u8>>>,
}

impl Workspace {
    /// The Slack team id.
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// The org it is linked to.
    pub fn org_id(&self) -> i64 {
        self.org_id
    }

    /// Its signing secret, opened (to compute a request's HMAC).
    pub fn signing_secret(&self) -> &[u8] {
        &self.secret
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("team_id", &self.team_id)
            .field("org_id", &self.org_id)
            .field("secret", &"***")
            .finish()
    }
}

/// Opened signing secrets by team id (one per org that linked the team). A
/// lookup that began before an invalidation cannot put back what it read
/// (generation check), so a replaced or unlinked secret is never used again
/// once the change commits.
#[derive(Default)]
struct SecretCache {
    generation: u64,
    by_team: HashMap<String, Vec<Workspace>>,
}

/// The sealing key and the cache.
pub(crate) struct SlackKeys {
    keypair: TargetKeypair,
    cache: Mutex<SecretCache>,
    /// The other replicas of a shared database, told of each invalidation.
    broadcast: Option<Broadcast>,
    /// Whether the other replicas' invalidations reach this one; while not,
    /// nothing cached is used (as [`crate::credentials::AuthCache`]).
    hearing: AtomicBool,
}

impl std::fmt::Debug for SlackKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackKeys")
            .field("key_id", &self.keypair.key_id())
            .finish_non_exhaustive()
    }
}

/// Makes `dir/slack.key` if it is not there yet (an existing key is kept:
/// secrets already sealed to it stay readable); its path. Replicas of a
/// shared database each hold a copy of one such key.
pub fn ensure_slack_key(dir: &Path) -> Result<PathBuf, OpenError> {
    let path = dir.join(KEY_FILE);
    load_or_generate(&path)?;
    Ok(path)
}

/// The key at `path`, made if missing (and whether it was).
fn load_or_generate(path: &Path) -> Result<(TargetKeypair, bool), OpenError> {
    TargetKeypair::load_or_generate(path).map_err(|e| OpenError::DataDir {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

impl SlackKeys {
    /// Loads (or creates) `data_dir/slack.key`.
    pub(crate) fn open(
        data_dir: &Path,
        broadcast: Option<Broadcast>,
    ) -> Result<SlackKeys, OpenError> {
        let path = data_dir.join(KEY_FILE);
        let (keypair, created) = load_or_generate(&path)?;
        if created {
            tracing::info!(path = %path.display(), "generated the key Slack signing secrets are sealed to");
        }
        Ok(SlackKeys {
            keypair,
            cache: Mutex::new(SecretCache::default()),
            hearing: AtomicBool::new(broadcast.is_none()),
            broadcast,
        })
    }

    /// Seals `secret` of workspace `team_id` for storage.
    pub(crate) fn seal(&self, team_id: &str, secret: &[u8]) -> Result<SealedSecret, Error> {
        sealrun_vault::seal(&self.keypair.public_key(), SEALED_NAME, team_id, secret)
            .map_err(|e| Error::internal(format_args!("cannot seal a signing secret: {e}")))
    }

    /// Seals the bot token of workspace `team_id` for storage.
    pub(crate) fn seal_bot_token(
        &self,
        team_id: &str,
        token: &[u8],
    ) -> Result<SealedSecret, Error> {
        sealrun_vault::seal(&self.keypair.public_key(), BOT_TOKEN_NAME, team_id, token)
            .map_err(|e| Error::internal(format_args!("cannot seal a bot token: {e}")))
    }

    /// Opens the stored bot token of workspace `team_id`.
    pub(crate) fn open_bot_token(
        &self,
        team_id: &str,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<String>, Error> {
        let opened = sealrun_vault::open(&self.keypair, BOT_TOKEN_NAME, team_id, sealed).map_err(|e| {
            Error::internal(format_args!(
                "cannot open the bot token of Slack team {team_id} (was {KEY_FILE} replaced?): {e}"
            ))
        })?;
        String::from_utf8(opened.expose().to_vec())
            .map(Zeroizing::new)
            .map_err(|_| {
                Error::internal(format_args!(
                    "the bot token of Slack team {team_id} is not text"
                ))
            })
    }

    /// Seals the `response_url` of run `run_id` for storage: it is a
    /// credential for the channel the command was typed in.
    pub(crate) fn seal_response_url(&self, run_id: &str, url: &str) -> Result<SealedSecret, Error> {
        sealrun_vault::seal(&self.keypair.public_key(), URL_NAME, run_id, url.as_bytes())
            .map_err(|e| Error::internal(format_args!("cannot seal a response_url: {e}")))
    }

    /// Opens the stored `response_url` of run `run_id`.
    pub(crate) fn open_response_url(
        &self,
        run_id: &str,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<String>, Error> {
        let opened = sealrun_vault::open(&self.keypair, URL_NAME, run_id, sealed).map_err(|e| {
            Error::internal(format_args!(
                "cannot open the Slack response_url of run {run_id} (was {KEY_FILE} replaced?): {e}"
            ))
        })?;
        String::from_utf8(opened.expose().to_vec())
            .map(Zeroizing::new)
            .map_err(|_| {
                Error::internal(format_args!("the response_url of run {run_id} is not text"))
            })
    }

    /// Opens the stored secret of workspace `team_id`.
    pub(crate) fn open_secret(
        &self,
        team_id: &str,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let opened = sealrun_vault::open(&self.keypair, SEALED_NAME, team_id, sealed).map_err(|e| {
            Error::internal(format_args!(
                "cannot open the signing secret of Slack team {team_id} (was {KEY_FILE} replaced?): {e}"
            ))
        })?;
        Ok(Zeroizing::new(opened.expose().to_vec()))
    }

    /// The cached links of workspace `team_id`, or the generation to insert
    /// under.
    pub(crate) fn cached(&self, team_id: &str) -> Result<Vec<Workspace>, u64> {
        if !self.hearing.load(Ordering::SeqCst) {
            return Err(u64::MAX); // never cached either: `remember` checks it
        }
        match self.cache.lock() {
            Ok(c) => c.by_team.get(team_id).cloned().ok_or(c.generation),
            Err(_) => Err(u64::MAX),
        }
    }

    /// Caches the links of `team_id`, unless invalidated since `generation`.
    pub(crate) fn remember(&self, generation: u64, team_id: &str, workspace: Vec<Workspace>) {
        if let Ok(mut c) = self.cache.lock() {
            if c.generation == generation {
                if c.by_team.len() >= CACHE_MAX {
                    c.by_team.clear();
                }
                c.by_team.insert(team_id.to_owned(), workspace);
            }
        }
    }

    /// Forgets every opened secret (from the commit hook of any change).
    pub(crate) fn invalidate(&self) {
        self.invalidate_here();
        if let Some(b) = &self.broadcast {
            b.send("k");
        }
    }

    /// Whether this replica hears the others' invalidations.
    pub(crate) fn set_hearing(&self, hearing: bool) {
        self.hearing.store(hearing, Ordering::SeqCst);
    }

    /// Forgets this replica's opened secrets only (another replica's hint).
    pub(crate) fn invalidate_here(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.generation = c.generation.wrapping_add(1);
            c.by_team.clear();
        }
    }
}
