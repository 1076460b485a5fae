//! Rows of `slack_workspaces` (signing secrets, sealed; one per team and
//! org), `slack_users`, the accepted requests and the owed notices.

use super::sql::Optional as _;
use super::tx::Tx;
use super::writer::now_ms;
use crate::error::Error;
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
    let mut stmt = tx.prepare_cached(
        "SELECT org_id, sealed FROM slack_workspaces WHERE team_id = ?1 ORDER BY org_id",
    )?;
    let rows = stmt.query_map(params![team_id], |r| {
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
    tx.prepare_cached(
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
    tx.prepare_cached(
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
    let mut stmt = tx.prepare_cached(
        "SELECT team_id, created_ms, updated_ms, approvals_channel FROM slack_workspaces
         WHERE org_id = ?1 ORDER BY team_id",
    )?;
    let rows = stmt.query_map(params![org_id], |r| {
        Ok(WorkspaceView {
            team_id: r.get(0)?,
            linked_at_ms: r.get(1)?,
            updated_at_ms: r.get(2)?,
            approvals_channel: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many users org `org_id` linked in workspace `team_id`.
pub(crate) fn count_users(tx: &Tx<'_>, team_id: &str, org_id: i64) -> Result<i64, Error> {
    Ok(tx
        .prepare_cached("SELECT COUNT(*) FROM slack_users WHERE team_id = ?1 AND org_id = ?2")?
        .query_row(params![team_id, org_id], |r| r.get(0))?)
}

/// Unlinks the org's workspace `team_id` (its users go with it); returns
/// whether it was linked to the org.
pub(crate) fn delete_workspace(tx: &Tx<'_>, team_id: &str, org_id: i64) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached("DELETE FROM slack_workspaces WHERE team_id = ?1 AND org_id = ?2")?
        .execute(params![team_id, org_id])?
        > 0)
}

/// Links (or re-links) Slack user `user_id` of the org's workspace
/// `team_id` to sealrun user `sealrun_user_id`.
pub(crate) fn upsert_user(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
    user_id: &str,
    sealrun_user_id: i64,
    now: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO slack_users (team_id, org_id, user_id, sealrun_user_id, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (team_id, org_id, user_id) DO UPDATE SET
                sealrun_user_id = excluded.sealrun_user_id, updated_ms = excluded.updated_ms",
    )?
    .execute(params![team_id, org_id, user_id, sealrun_user_id, now])?;
    Ok(())
}

/// The users linked in the org's workspaces, with the sealrun user each is.
pub(crate) fn list_users(tx: &Tx<'_>, org_id: i64) -> Result<Vec<UserView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT s.team_id, s.user_id, u.name, u.role, s.updated_ms, u.disabled_ms IS NOT NULL
         FROM slack_users s JOIN users u ON u.id = s.sealrun_user_id
         WHERE s.org_id = ?1 ORDER BY s.team_id, s.user_id",
    )?;
    let rows = stmt.query_map(params![org_id], |r| {
        let role: String = r.get(3)?;
        Ok(UserView {
            team_id: r.get(0)?,
            user_id: r.get(1)?,
            name: r.get(2)?,
            // The column's CHECK admits only valid roles.
            role: Role::parse(&role).unwrap_or(Role::Auditor),
            updated_at_ms: r.get(4)?,
            disabled: r.get(5)?,
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
        .prepare_cached(
            "DELETE FROM slack_users WHERE team_id = ?1 AND org_id = ?2 AND user_id = ?3",
        )?
        .execute(params![team_id, org_id, user_id])?
        > 0)
}

/// The sealrun user Slack user `user_id` of workspace `team_id` is linked
/// to in org `org_id`, if linked and that user is not disabled.
pub(crate) fn user(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
    user_id: &str,
) -> Result<Option<(i64, String, Role)>, Error> {
    let row: Option<(i64, String, String)> = tx.prepare_cached(
            "SELECT u.id, u.name, u.role FROM slack_users s JOIN users u ON u.id = s.sealrun_user_id
             WHERE s.team_id = ?1 AND s.org_id = ?2 AND s.user_id = ?3 AND u.disabled_ms IS NULL",
        )?
        .query_row(params![team_id, org_id, user_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(row.and_then(|(id, name, role)| Role::parse(&role).map(|role| (id, name, role))))
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
    tx.prepare_cached("DELETE FROM slack_requests WHERE expires_ms < ?1")?
        .execute(params![now])?;
    Ok(tx
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
    /// The submitter's sealrun user (0: owed since before users existed).
    pub(crate) user_id: i64,
    pub(crate) submitter: String,
    pub(crate) actor: String,
    pub(crate) response_url: SealedSecret,
    pub(crate) expires_ms: i64,
}

/// How long a replica's hold on a row of Slack's outbox lasts unrenewed:
/// holders renew theirs every few seconds, and a replica that died is
/// taken over after at most this long.
pub(crate) const HOLD_MS: i64 = 30_000;

/// Who works on a row of Slack's outbox, and until when (see
/// [`claim_notices`], [`claim_approval_posts`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hold<'a> {
    /// The replica's id.
    pub(crate) holder: &'a str,
    /// Now.
    pub(crate) now: i64,
    /// When an unrenewed hold lapses.
    pub(crate) until: i64,
}

impl Hold<'_> {
    /// `holder`'s hold from now, for [`HOLD_MS`].
    pub(crate) fn from_now(holder: &str) -> Hold<'_> {
        let now = now_ms();
        Hold {
            holder,
            now,
            until: now + HOLD_MS,
        }
    }
}

/// Stores `notice` (replacing one for the same run), held by `hold`'s
/// replica, which waits for the run's end.
pub(crate) fn insert_notice(tx: &Tx<'_>, notice: &Notice, hold: Hold<'_>) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO slack_notices
             (run_id, org_id, role, submitter, actor, response_url, expires_ms, user_id,
              holder, held_until_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (run_id) DO UPDATE SET org_id = excluded.org_id, role = excluded.role,
             submitter = excluded.submitter, actor = excluded.actor,
             response_url = excluded.response_url, expires_ms = excluded.expires_ms,
             user_id = excluded.user_id, holder = excluded.holder,
             held_until_ms = excluded.held_until_ms",
    )?
    .execute(params![
        notice.run_id,
        notice.org_id,
        notice.role.as_str(),
        notice.submitter,
        notice.actor,
        serde_json::to_string(&notice.response_url)?,
        notice.expires_ms,
        notice.user_id,
        hold.holder,
        hold.until
    ])?;
    Ok(())
}

/// Renews `hold`'s replica's hold on the notices it works on, and takes
/// those nobody holds any more (their replica stopped or died, or they
/// predate holds): the notices newly taken, oldest deadline first, after
/// deleting those expired. Each notice is thus waited on by one replica
/// at a time, and by another one once its holder is gone.
pub(crate) fn claim_notices(tx: &Tx<'_>, hold: Hold<'_>) -> Result<Vec<Notice>, Error> {
    tx.prepare_cached("DELETE FROM slack_notices WHERE expires_ms <= ?1")?
        .execute(params![hold.now])?;
    tx.prepare_cached("UPDATE slack_notices SET held_until_ms = ?2 WHERE holder = ?1")?
        .execute(params![hold.holder, hold.until])?;
    // Taken and read in one statement; `RETURNING` has no order of its own.
    let mut stmt = tx.prepare_cached(
        "UPDATE slack_notices SET holder = ?1, held_until_ms = ?2
         WHERE holder IS NULL OR held_until_ms IS NULL OR held_until_ms <= ?3
         RETURNING run_id, org_id, role, submitter, actor, response_url, expires_ms,
                   COALESCE(user_id, 0)",
    )?;
    let rows = stmt.query_map(params![hold.holder, hold.until, hold.now], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, i64>(7)?,
        ))
    })?;
    let mut notices = Vec::new();
    for row in rows {
        let (run_id, org_id, role, submitter, actor, url, expires_ms, user_id) = row?;
        // The column's CHECK admits only valid roles.
        let Some(role) = Role::parse(&role) else {
            continue;
        };
        notices.push(Notice {
            run_id,
            org_id,
            role,
            user_id,
            submitter,
            actor,
            response_url: serde_json::from_str(&url)?,
            expires_ms,
        });
    }
    notices.sort_by(|a, b| (a.expires_ms, &a.run_id).cmp(&(b.expires_ms, &b.run_id)));
    Ok(notices)
}

/// Drops every hold of `holder` on Slack's outbox.
pub(crate) fn release_holds(tx: &Tx<'_>, holder: &str) -> Result<(), Error> {
    for sql in [
        "UPDATE slack_notices SET holder = NULL, held_until_ms = NULL WHERE holder = ?1",
        "UPDATE slack_approval_posts SET holder = NULL, held_until_ms = NULL WHERE holder = ?1",
    ] {
        tx.prepare_cached(sql)?.execute(params![holder])?;
    }
    Ok(())
}

/// Forgets the notice of run `run_id` (delivered, refused for good, or
/// given up).
pub(crate) fn delete_notice(tx: &Tx<'_>, run_id: &str) -> Result<(), Error> {
    tx.prepare_cached("DELETE FROM slack_notices WHERE run_id = ?1")?
        .execute(params![run_id])?;
    Ok(())
}

/// Sets (or, with `None`, clears) the approvals channel of org `org_id`'s
/// link of workspace `team_id`, with its sealed bot token; `false` if the
/// org has not linked the workspace.
pub(crate) fn set_approvals(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
    channel: Option<(&str, &SealedSecret)>,
) -> Result<bool, Error> {
    let (channel, token) = match channel {
        Some((c, t)) => (Some(c), Some(serde_json::to_string(t)?)),
        None => (None, None),
    };
    let changed = tx
        .prepare_cached(
            "UPDATE slack_workspaces SET approvals_channel = ?3, bot_token = ?4
             WHERE team_id = ?1 AND org_id = ?2",
        )?
        .execute(params![team_id, org_id, channel, token])?;
    if channel.is_none() {
        tx.prepare_cached("DELETE FROM slack_approval_posts WHERE team_id = ?1 AND org_id = ?2")?
            .execute(params![team_id, org_id])?;
    }
    Ok(changed == 1)
}

/// Org `org_id`'s sealed bot token for workspace `team_id`, if it set an
/// approvals channel.
pub(crate) fn bot_token(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
) -> Result<Option<SealedSecret>, Error> {
    let sealed: Option<String> = tx
        .prepare_cached(
            "SELECT bot_token FROM slack_workspaces
             WHERE team_id = ?1 AND org_id = ?2 AND approvals_channel IS NOT NULL",
        )?
        .query_row(params![team_id, org_id], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(sealed.map(|s| serde_json::from_str(&s)).transpose()?)
}

/// Queues the approval message of org `org_id`'s run `run_id` for every
/// workspace the org linked with an approvals channel; how many.
pub(crate) fn queue_approval_posts(
    tx: &Tx<'_>,
    org_id: i64,
    run_id: &str,
    now: i64,
) -> Result<usize, Error> {
    Ok(tx
        .prepare_cached(
            "INSERT INTO slack_approval_posts (run_id, team_id, org_id, channel, created_ms)
             SELECT ?2, team_id, org_id, approvals_channel, ?3 FROM slack_workspaces
             WHERE org_id = ?1 AND approvals_channel IS NOT NULL
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![org_id, run_id, now])?)
}

/// An approval message owed to (or posted in) a Slack channel.
pub(crate) struct ApprovalPost {
    pub(crate) run_id: String,
    pub(crate) team_id: String,
    pub(crate) org_id: i64,
    pub(crate) channel: String,
    pub(crate) ts: Option<String>,
    pub(crate) shown: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) bot_token: Option<SealedSecret>,
    /// The Slack user (in that workspace) linked to the run's submitter.
    pub(crate) requester: Option<String>,
}

/// The approval messages not settled yet that `hold`'s replica holds,
/// oldest first (at most `limit`): it renews its hold on those it held and
/// takes those nobody holds (new, or their replica stopped or died), so a
/// message is posted and updated by one replica at a time.
pub(crate) fn claim_approval_posts(
    tx: &Tx<'_>,
    hold: Hold<'_>,
    limit: u32,
) -> Result<Vec<ApprovalPost>, Error> {
    tx.prepare_cached(
        "UPDATE slack_approval_posts SET holder = ?1, held_until_ms = ?2
         WHERE (run_id, team_id, org_id) IN (
             SELECT run_id, team_id, org_id FROM slack_approval_posts
             WHERE holder IS NULL OR holder = ?1 OR held_until_ms IS NULL
                OR held_until_ms <= ?3
             ORDER BY created_ms, run_id LIMIT ?4)",
    )?
    .execute(params![hold.holder, hold.until, hold.now, limit])?;
    let mut stmt = tx.prepare_cached(
        "SELECT p.run_id, p.team_id, p.org_id, p.channel, p.ts, p.shown, p.attempts, w.bot_token,
                (SELECT su.user_id FROM slack_users su JOIN runs r ON r.id = p.run_id
                 WHERE su.team_id = p.team_id AND su.org_id = p.org_id
                   AND su.sealrun_user_id = r.submitter_user_id
                 ORDER BY su.user_id LIMIT 1)
         FROM slack_approval_posts p
         JOIN slack_workspaces w ON w.team_id = p.team_id AND w.org_id = p.org_id
         WHERE p.holder = ?1
         ORDER BY p.created_ms, p.run_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![hold.holder, limit], |r| {
        Ok((
            ApprovalPost {
                run_id: r.get(0)?,
                team_id: r.get(1)?,
                org_id: r.get(2)?,
                channel: r.get(3)?,
                ts: r.get(4)?,
                shown: r.get(5)?,
                attempts: r.get(6)?,
                bot_token: None,
                requester: r.get(8)?,
            },
            r.get::<_, Option<String>>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut post, sealed) = row?;
        post.bot_token = sealed.map(|s| serde_json::from_str(&s)).transpose()?;
        out.push(post);
    }
    Ok(out)
}

/// Records what the approval message of run `run_id` in workspace
/// `team_id` shows now (and its Slack id once posted).
pub(crate) fn approval_post_shown(
    tx: &Tx<'_>,
    run_id: &str,
    team_id: &str,
    org_id: i64,
    ts: &str,
    shown: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE slack_approval_posts SET ts = ?4, shown = ?5, attempts = 0
             WHERE run_id = ?1 AND team_id = ?2 AND org_id = ?3",
    )?
    .execute(params![run_id, team_id, org_id, ts, shown])?;
    Ok(())
}

/// Counts a failed post of the approval message; the attempts so far.
pub(crate) fn approval_post_failed(
    tx: &Tx<'_>,
    run_id: &str,
    team_id: &str,
    org_id: i64,
) -> Result<u32, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE slack_approval_posts SET attempts = attempts + 1
             WHERE run_id = ?1 AND team_id = ?2 AND org_id = ?3 RETURNING attempts",
        )?
        .query_row(params![run_id, team_id, org_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Forgets the approval message of run `run_id` in workspace `team_id`.
pub(crate) fn delete_approval_post(
    tx: &Tx<'_>,
    run_id: &str,
    team_id: &str,
    org_id: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "DELETE FROM slack_approval_posts WHERE run_id = ?1 AND team_id = ?2 AND org_id = ?3",
    )?
    .execute(params![run_id, team_id, org_id])?;
    Ok(())
}

/// The approvals channel org `org_id` set for workspace `team_id`, if any.
pub(crate) fn approvals_channel(
    tx: &Tx<'_>,
    team_id: &str,
    org_id: i64,
) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT approvals_channel FROM slack_workspaces WHERE team_id = ?1 AND org_id = ?2",
        )?
        .query_row(params![team_id, org_id], |r| r.get(0))
        .optional()?
        .flatten())
}
