//! Linked workspaces and users: validation, storage, and the in-memory cache
//! of opened signing secrets.

use super::Slack;
use crate::error::ApiError;
use crate::state::AppState;
use rusqlite::{Connection, OptionalExtension as _, params};
use sealrun_vault::SealedSecret;
use sealrun_wire::admin::Role;
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The name a signing secret is sealed under (with the team id as target).
const SEALED_NAME: &str = "slack-signing-secret";
/// Most workspaces whose opened secrets are cached.
const CACHE_MAX: usize = 10_000;

/// A Slack id (team `T...`/`E...`, user `U...`/`W...`): 2-32 uppercase
/// letters and digits, starting with a letter.
pub(crate) fn check_slack_id(kind: &str, id: &str) -> Result<(), ApiError> {
    let ok = (2..=32).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid Slack {kind} id {id:?}: expected 2-32 uppercase letters and digits, e.g. T0123ABCD"
        )))
    }
}

/// A signing secret as Slack issues them (32 hex digits today); anything
/// printable, without spaces, of a sensible length is accepted.
pub(crate) fn check_signing_secret(secret: &str) -> Result<(), ApiError> {
    let ok = (16..=256).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        // Never echo the value.
        Err(ApiError::bad_request(
            "invalid signing secret: expected 16-256 printable characters without spaces (Slack app > Basic Information > Signing Secret)",
        ))
    }
}

/// A linked workspace, ready to verify its requests.
#[derive(Clone)]
pub(crate) struct Workspace {
    pub(crate) org_id: i64,
    pub(crate) secret: Arc<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("org_id", &self.org_id)
            .field("secret", &"***")
            .finish()
    }
}

/// Opened signing secrets by team id. A lookup that began before an
/// invalidation cannot put back what it read (generation check), so a
/// replaced or unlinked secret is never used again once the change commits.
#[derive(Default)]
pub(crate) struct SecretCache {
    generation: u64,
    by_team: HashMap<String, Workspace>,
}

impl Slack {
    /// Seals `secret` for storage.
    pub(crate) fn seal(&self, team_id: &str, secret: &[u8]) -> Result<SealedSecret, ApiError> {
        sealrun_vault::seal(&self.keypair.public_key(), SEALED_NAME, team_id, secret)
            .map_err(|e| ApiError::internal(format_args!("cannot seal a signing secret: {e}")))
    }

    /// Forgets every opened secret (from the commit hook of any change).
    pub(crate) fn invalidate(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.generation = c.generation.wrapping_add(1);
            c.by_team.clear();
        }
    }
}

/// The workspace `team_id` is linked as, if it is.
pub(crate) async fn workspace(
    state: &AppState,
    team_id: &str,
) -> Result<Option<Workspace>, ApiError> {
    let slack = &state.slack;
    let generation = match slack.cache.lock() {
        Ok(c) => {
            if let Some(w) = c.by_team.get(team_id) {
                return Ok(Some(w.clone()));
            }
            c.generation
        }
        Err(_) => u64::MAX,
    };
    let team = team_id.to_owned();
    let row: Option<(i64, String)> = state
        .db
        .read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT org_id, sealed FROM slack_workspaces WHERE team_id = ?1")?
                .query_row([&team], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
        .await?;
    let Some((org_id, sealed)) = row else {
        return Ok(None);
    };
    let sealed: SealedSecret = serde_json::from_str(&sealed)?;
    let opened =
        sealrun_vault::open(&slack.keypair, SEALED_NAME, team_id, &sealed).map_err(|e| {
            ApiError::internal(format_args!(
                "cannot open the signing secret of Slack team {team_id} (was {} replaced?): {e}",
                super::KEY_FILE
            ))
        })?;
    let workspace = Workspace {
        org_id,
        secret: Arc::new(Zeroizing::new(opened.expose().to_vec())),
    };
    if let Ok(mut c) = slack.cache.lock() {
        if c.generation == generation {
            if c.by_team.len() >= CACHE_MAX {
                c.by_team.clear();
            }
            c.by_team.insert(team_id.to_owned(), workspace.clone());
        }
    }
    Ok(Some(workspace))
}

/// A Slack user as linked.
#[derive(Clone, Debug)]
pub(crate) struct LinkedUser {
    pub(crate) name: String,
    pub(crate) role: Role,
}

/// The link of `user_id` in `team_id`, if any.
pub(crate) fn linked_user(
    conn: &Connection,
    team_id: &str,
    user_id: &str,
) -> Result<Option<LinkedUser>, ApiError> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT name, role FROM slack_users WHERE team_id = ?1 AND user_id = ?2")?
        .query_row(params![team_id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(name, role)| Role::parse(&role).map(|role| LinkedUser { name, role })))
}
