//! In-memory hints for authentication: the verified-token cache and the
//! throttle on `auth.failed` audit entries.

use crate::caller::Principal;
use crate::error::Error;
use crate::store::Broadcast;
use crate::store::tokens::TokenRecord;
use crate::store::{self, Tx, now_ms};
use crate::token::{self, NewToken, TokenKind};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Issues a token: mints it, stores its hash as `record` says, and audits
/// `token.issued` by `actor` with `detail` (which never holds the value).
/// Returns the new token (its value is shown once, by the caller) and when
/// it was created.
pub(crate) fn issue(
    tx: &Tx<'_>,
    record: &TokenRecord<'_>,
    actor: &str,
    detail: Value,
) -> Result<(NewToken, i64), Error> {
    let new = token::mint(record.kind);
    let at = store::tokens::insert(tx, &new, record)?;
    store::audit::append(
        tx,
        record.org_id,
        actor,
        "token.issued",
        &format!("token:{}", new.id),
        detail,
    )?;
    Ok((new, at))
}

/// A principal as verified from the database, with what re-verifying a
/// later presentation of the same token needs.
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    pub(crate) hash: Vec<u8>,
    pub(crate) expires_ms: Option<i64>,
}

/// Recently verified tokens, so most requests authenticate without a
/// database read. The secret is still hashed and compared (in constant time)
/// on every request, and expiry re-checked; only the lookup is saved.
///
/// Every change that can revoke or reshape a principal (token or agent
/// revocation, agent connect/deregister, target changes) calls
/// [`invalidate`](AuthCache::invalidate) from its commit hook, so it takes
/// effect before the change is even acknowledged. A lookup that started
/// before an invalidation cannot repopulate the cache with what it read
/// (generation check). Entries also expire after [`CACHE_TTL`].
///
/// The generation is also published ([`subscribe`](AuthCache::subscribe)),
/// so that requests that outlive their authentication (followed logs, long
/// polls) re-check their credential as soon as anything may have revoked it.
///
/// With replicas on one database, an invalidation is also sent to the other
/// replicas, which drop their entries when the hint arrives; while a
/// replica cannot hear the others (its listener is down, or not yet up),
/// it trusts no entry ([`set_hearing`](AuthCache::set_hearing)).
#[derive(Debug)]
pub(crate) struct AuthCache {
    inner: Mutex<CacheInner>,
    changes: watch::Sender<u64>,
    broadcast: Option<Broadcast>,
    /// Whether invalidations from other replicas reach this one (always,
    /// without replicas).
    hearing: AtomicBool,
}

impl Default for AuthCache {
    fn default() -> AuthCache {
        AuthCache::new(None)
    }
}

#[derive(Debug, Default)]
struct CacheInner {
    generation: u64,
    entries: HashMap<String, Cached>,
}

#[derive(Debug)]
struct Cached {
    kind: TokenKind,
    hash: Vec<u8>,
    expires_ms: Option<i64>,
    loaded: Instant,
    principal: Principal,
}

/// Longest a verified token is trusted without a database read.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most tokens cached at once.
const CACHE_MAX: usize = 10_000;

impl AuthCache {
    /// A cache whose invalidations also reach the other replicas.
    pub(crate) fn new(broadcast: Option<Broadcast>) -> AuthCache {
        AuthCache {
            inner: Mutex::default(),
            changes: watch::Sender::new(0),
            hearing: AtomicBool::new(broadcast.is_none()),
            broadcast,
        }
    }

    /// Whether this replica hears the others' invalidations; while it does
    /// not, every lookup reads the database.
    pub(crate) fn set_hearing(&self, hearing: bool) {
        self.hearing.store(hearing, Ordering::SeqCst);
    }

    pub(crate) fn get(&self, presented: &token::Presented<'_>) -> Option<Principal> {
        if !self.hearing.load(Ordering::SeqCst) {
            return None;
        }
        let inner = self.inner.lock().ok()?;
        let c = inner.entries.get(presented.id)?;
        let fresh = c.loaded.elapsed() < CACHE_TTL && c.expires_ms.is_none_or(|e| e > now_ms());
        (fresh && c.kind == presented.kind && presented.matches(&c.hash))
            .then(|| c.principal.clone())
    }

    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().map_or(u64::MAX, |i| i.generation)
    }

    pub(crate) fn insert(&self, generation: u64, id: String, kind: TokenKind, v: Verified) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.generation != generation {
            return; // invalidated while we were reading
        }
        if inner.entries.len() >= CACHE_MAX {
            inner.entries.clear();
        }
        inner.entries.insert(
            id,
            Cached {
                kind,
                hash: v.hash,
                expires_ms: v.expires_ms,
                loaded: Instant::now(),
                principal: v.principal,
            },
        );
    }

    /// Forgets every cached token, and tells every subscriber.
    pub(crate) fn invalidate(&self) {
        self.invalidate_here();
        if let Some(b) = &self.broadcast {
            b.send("a");
        }
    }

    /// Drops this replica's entries only (another replica's hint).
    pub(crate) fn invalidate_here(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.generation = inner.generation.wrapping_add(1);
            inner.entries.clear();
            // Under the lock, so subscribers see generations in order.
            self.changes.send_replace(inner.generation);
        }
    }

    /// Changes of the generation: each [`invalidate`](AuthCache::invalidate)
    /// is seen by every receiver (the latest value, at least once).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Limits `auth.failed` audit entries to one per token id per second.
#[derive(Debug, Default)]
pub(crate) struct FailureThrottle {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

const THROTTLE_WINDOW: Duration = Duration::from_secs(1);
const THROTTLE_MAX_IDS: usize = 10_000;

impl FailureThrottle {
    /// `Some(n)` if this failure should be audited, `n` being how many were
    /// suppressed since the last audited one.
    pub(crate) fn admit(&self, token_id: &str) -> Option<u64> {
        let Ok(mut last) = self.last.lock() else {
            return Some(0);
        };
        if last.len() > THROTTLE_MAX_IDS {
            last.clear();
        }
        let now = Instant::now();
        match last.get_mut(token_id) {
            Some((at, suppressed)) if now.duration_since(*at) < THROTTLE_WINDOW => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                last.insert(token_id.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}
