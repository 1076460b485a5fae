//! Rows of `slack_workspaces` (signing secrets, sealed; one per team and
//! org), `slack_users`, the accepted requests and the owed notices.

use super::tx::Tx;
use crate::error::Error;
use rusqlite::{OptionalExtension as _, params};
use sealrun_vault::SealedSecret;
use sealrun_wire::admin::Role;
use sealrun_wire::slack::{UserView, WorkspaceView};

/// When org `org_id` linked workspace `team_id`, if it did.
pub(crate) fn workspace_created(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
) -> Result<Option<i64>, Error> {
    Ok(tx
        .conn
        .prepare_cached(
            "SELECT created_ms FROM slack_workspaces WHERE team_id = ?1 AND org_id = ?2",
        )?
        .query_row(params![team_id, org_id], |r| r.get(0))
        .optional()?)
}

/// Every org that linked workspace `team_id`, with its sealed signing
/// secret (one per org: each org installs its own Slack app), by org.
pub(crate) fn workspace_secrets(
    tx: &Tx<'_>,
    team_id: &str,
) -> Result<Vec<(i64, SealedSecret)>, Error> {
    let mut stmt = tx.conn.prepare_cached(
        "SELECT org_id, sealed FROM slack_workspaces WHERE team_id = ?1 ORDER BY org_id",
    )?;
    let rows = stmt.query_map([team_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (org, sealed) = row?;
        out.push((org, serde_json::from_str(&sealed)?));
    }
    Ok(out)
}

/// Links workspace `team_id` to org `org_id`.
pub(crate) fn insert_workspace(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
    sealed: &SealedSecret,
    now: i64,
) -> Result<(), Error> {
    tx.conn
        .prepare_cached(
            "INSERT INTO slack_workspaces (team_id, org_id, sealed, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )?
        .execute(params![
            team_id,
            org_id,
            serde_json::to_string(sealed)?,
            now
        ])?;
    Ok(())
}

/// Replaces org `org_id`'s sealed signing secret for workspace `team_id`.
pub(crate) fn update_workspace(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
    sealed: &SealedSecret,
    now: i64,
) -> Result<(), Error> {
    tx.conn
        .prepare_cached(
            "UPDATE slack_workspaces SET sealed = ?3, updated_ms = ?4
             WHERE team_id = ?1 AND org_id = ?2",
        )?
        .execute(params![
            team_id,
            org_id,
            serde_json::to_string(sealed)?,
            now
        ])?;
    Ok(())
}

/// The org's linked workspaces, by team id.
pub(crate) fn list_workspaces(tx: &Tx<'_>, org_id: i64) -> Result<Vec<WorkspaceView>, Error> {
    let mut stmt = tx.conn.prepare_cached(
        "SELECT team_id, created_ms, updated_ms FROM slack_workspaces
         WHERE org_id = ?1 ORDER BY team_id",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        Ok(WorkspaceView {
            team_id: r.get(0)?,
            linked_at_ms: r.get(1)?,
            updated_at_ms: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many users org `org_id` linked in workspace `team_id`.
pub(crate) fn count_users(tx: &Tx<'_>, team_id: &str, org_id: i64) -> Result<i64, Error> {
    Ok(tx
        .conn
        .prepare_cached("SELECT COUNT(*) FROM slack_users WHERE team_id = ?1 AND org_id = ?2")?
        .query_row(params![team_id, org_id], |r| r.get(0))?)
}

/// Unlinks the org's workspace `team_id` (its users go with it); returns
/// whether it was linked to the org.
pub(crate) fn delete_workspace(tx: &Tx<'_>, team_id: &str, org_id: i64) -> Result<bool, Error> {
    Ok(tx
        .conn
        .prepare_cached("DELETE FROM slack_workspaces WHERE team_id = ?1 AND org_id = ?2")?
        .execute(params![team_id, org_id])?
        > 0)
}

/// Links (or re-links) user `user_id` of the org's workspace `team_id`.
pub(crate) fn upsert_user(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
    user_id: &str,
    name: &str,
    role: Role,
    now: i64,
) -> Result<(), Error> {
    tx.conn
        .prepare_cached(
            "INSERT INTO slack_users (team_id, org_id, user_id, name, role, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (team_id, org_id, user_id) DO UPDATE SET
                name = excluded.name, role = excluded.role, updated_ms = excluded.updated_ms",
        )?
        .execute(params![team_id, org_id, user_id, name, role.as_str(), now])?;
    Ok(())
}

/// The users linked in the org's workspaces.
pub(crate) fn list_users(tx: &Tx<'_>, org_id: i64) -> Result<Vec<UserView>, Error> {
    let mut stmt = tx.conn.prepare_cached(
        "SELECT team_id, user_id, name, role, updated_ms FROM slack_users
         WHERE org_id = ?1 ORDER BY team_id, user_id",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        let role: String = r.get(3)?;
        Ok(UserView {
            team_id: r.get(0)?,
            user_id: r.get(1)?,
            name: r.get(2)?,
            // The column's CHECK admits only valid roles.
            role: Role::parse(&role).unwrap_or(Role::Auditor),
            updated_at_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Unlinks user `user_id` of the org's workspace `team_id`; returns whether
/// it was linked.
pub(crate) fn delete_user(
    tx: &Tx<'_>,
    team_id: &str,
    user_id: &str,
    org_id: i64,
) -> Result<bool, Error> {
    Ok(tx
        .conn
        .prepare_cached(
            "DELETE FROM slack_users WHERE team_id = ?1 AND org_id = ?2 AND user_id = ?3",
        )?
        .execute(params![team_id, org_id, user_id])?
        > 0)
}

/// User `user_id` of workspace `team_id` as org `org_id` linked them: name
/// and role, if linked.
pub(crate) fn user(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
    user_id: &str,
) -> Result<Option<(String, Role)>, Error> {
    let row: Option<(String, String)> = tx
        .conn
        .prepare_cached(
            "SELECT name, role FROM slack_users WHERE team_id = ?1 AND org_id = ?2 AND user_id = ?3",
        )?
        .query_row(params![team_id, org_id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(name, role)| Role::parse(&role).map(|role| (name, role))))
}

/// Records a verified request's signature `mac`, kept until `expires_ms`
/// (when its timestamp has left the replay window), after forgetting those
/// that have; returns whether it was new.
pub(crate) fn accept_once(
    tx: &Tx<'_>,
    mac: &[u8; 32],
    expires_ms: i64,
    now: i64,
) -> Result<bool, Error> {
    tx.conn
        .prepare_cached("DELETE FROM slack_requests WHERE expires_ms < ?1")?
        .execute([now])?;
    Ok(tx
        .conn
        .prepare_cached(
            "INSERT INTO slack_requests (mac, expires_ms) VALUES (?1, ?2)
             ON CONFLICT (mac) DO NOTHING",
        )?
        .execute(params![mac.as_slice(), expires_ms])?
        == 1)
}

/// A run result owed to Slack, as stored.
#[derive(Debug)]
pub(crate) struct Notice {
    pub(crate) run_id: String,
    pub(crate) org_id: i64,
    pub(crate) role: Role,
    pub(crate) submitter: String,
    pub(crate) actor: String,
    pub(crate) response_url: SealedSecret,
    pub(crate) expires_ms: i64,
}

/// Stores `notice` (replacing one for the same run).
pub(crate) fn insert_notice(tx: &Tx<'_>, notice: &Notice) -> Result<(), Error> {
    tx.conn
        .prepare_cached(
            "INSERT OR REPLACE INTO slack_notices
             (run_id, org_id, role, submitter, actor, response_url, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            notice.run_id,
            notice.org_id,
            notice.role.as_str(),
            notice.submitter,
            notice.actor,
            serde_json::to_string(&notice.response_url)?,
            notice.expires_ms
        ])?;
    Ok(())
}

/// The notices not yet expired at `now`, oldest deadline first, after
/// deleting those that have.
pub(crate) fn pending_notices(tx: &Tx<'_>, now: i64) -> Result<Vec<Notice>, Error> {
    tx.conn
        .prepare_cached("DELETE FROM slack_notices WHERE expires_ms <= ?1")?
        .execute([now])?;
    let mut stmt = tx.conn.prepare_cached(
        "SELECT run_id, org_id, role, submitter, actor, response_url, expires_ms
         FROM slack_notices ORDER BY expires_ms, run_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut notices = Vec::new();
    for row in rows {
        let (run_id, org_id, role, submitter, actor, url, expires_ms) = row?;
        // The column's CHECK admits only valid roles.
        let Some(role) = Role::parse(&role) else {
            continue;
        };
        notices.push(Notice {
            run_id,
            org_id,
            role,
            submitter,
            actor,
            response_url: serde_json::from_str(&url)?,
            expires_ms,
        });
    }
    Ok(notices)
}

/// Forgets the notice of run `run_id` (delivered, refused for good, or
/// given up).
pub(crate) fn delete_notice(tx: &Tx<'_>, run_id: &str) -> Result<(), Error> {
    tx.conn
        .prepare_cached("DELETE FROM slack_notices WHERE run_id = ?1")?
        .execute([run_id])?;
    Ok(())
}
