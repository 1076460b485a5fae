//! Rows of `agents` and `agent_targets` (which agent serves which target).

use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;
use sealrun_wire::admin::{AgentRef, AgentView};

/// Whether the org has an unrevoked agent named `name`.
pub(crate) fn name_taken(tx: &Tx<'_>, org_id: i64, name: &str) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM agents WHERE org_id = ?1 AND name = ?2 AND revoked_ms IS NULL",
        )?
        .exists(params![org_id, name])?)
}

/// Enrolls an agent.
pub(crate) fn insert(
    tx: &Tx<'_>,
    id: &str,
    org_id: i64,
    pool_id: i64,
    name: &str,
    now: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO agents (id, org_id, pool_id, name, registered_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, org_id, pool_id, name, now])?;
    Ok(())
}

/// An agent as authentication needs it.
#[derive(Debug)]
pub(crate) struct AgentRow {
    pub(crate) name: String,
    pub(crate) pool_id: i64,
    pub(crate) online: bool,
    pub(crate) revoked_ms: Option<i64>,
}

/// Agent `id`.
pub(crate) fn get(tx: &Tx<'_>, id: &str) -> Result<Option<AgentRow>, Error> {
    Ok(tx
        .prepare_cached("SELECT name, pool_id, online, revoked_ms FROM agents WHERE id = ?1")?
        .query_row(params![id], |r| {
            Ok(AgentRow {
                name: r.get(0)?,
                pool_id: r.get(1)?,
                online: r.get(2)?,
                revoked_ms: r.get(3)?,
            })
        })
        .optional()?)
}

/// The ids of the targets agent `id` serves.
pub(crate) fn target_ids(tx: &Tx<'_>, id: &str) -> Result<Vec<i64>, Error> {
    Ok(tx
        .prepare_cached("SELECT target_id FROM agent_targets WHERE agent_id = ?1")?
        .query_map(params![id], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?)
}

/// The org's unrevoked agents by name; `connected` if online and heard from
/// at or after `since`.
pub(crate) fn list(tx: &Tx<'_>, org_id: i64, since: i64) -> Result<Vec<AgentView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT a.id, a.name, p.name, a.online, a.last_seen_ms, a.version
         FROM agents a JOIN pools p ON p.id = a.pool_id
         WHERE a.org_id = ?1 AND a.revoked_ms IS NULL ORDER BY a.name",
    )?;
    let rows = stmt.query_map(params![org_id], |r| {
        let online: bool = r.get(3)?;
        let last_seen: Option<i64> = r.get(4)?;
        Ok(AgentView {
            id: r.get(0)?,
            name: r.get(1)?,
            pool: r.get(2)?,
            targets: Vec::new(),
            connected: online && last_seen.is_some_and(|s| s >= since),
            last_seen_ms: last_seen,
            version: r.get(5)?,
        })
    })?;
    let mut agents = rows.collect::<Result<Vec<_>, _>>()?;
    let mut targets = tx.prepare_cached(
        "SELECT t.name FROM agent_targets a JOIN targets t ON t.id = a.target_id
         WHERE a.agent_id = ?1 ORDER BY t.name",
    )?;
    for agent in &mut agents {
        agent.targets = targets
            .query_map(params![&agent.id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
    }
    Ok(agents)
}

/// The org's agent `id`: its name and when it was revoked.
pub(crate) fn revocable(
    tx: &Tx<'_>,
    org_id: i64,
    id: &str,
) -> Result<Option<(String, Option<i64>)>, Error> {
    Ok(tx
        .prepare_cached("SELECT name, revoked_ms FROM agents WHERE org_id = ?1 AND id = ?2")?
        .query_row(params![org_id, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Marks agent `id` revoked and offline; it serves nothing any more.
pub(crate) fn revoke(tx: &Tx<'_>, id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached("UPDATE agents SET revoked_ms = ?2, online = 0 WHERE id = ?1")?
        .execute(params![id, now])?;
    clear_targets(tx, id)
}

/// Records that agent `id` was heard from.
pub(crate) fn touch(tx: &Tx<'_>, id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached(TOUCH)?.execute(params![id, now])?;
    Ok(())
}

/// What [`touch`] says.
const TOUCH: &str = "UPDATE agents SET last_seen_ms = ?2 WHERE id = ?1";

/// [`touch`], sent with the transaction's next statement
/// (`Stmt::execute_later`).
pub(super) fn touch_later(tx: &Tx<'_>, id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached(TOUCH)?.execute_later(params![id, now])?;
    Ok(())
}

/// [`touch`]es agent `id` and returns its running runs, the most it
/// declared it runs at once, and whether it is connected: one round trip
/// (every poll takes both), two statements.
pub(crate) fn touch_and_slots(tx: &Tx<'_>, id: &str, now: i64) -> Result<(i64, i64, bool), Error> {
    touch_later(tx, id, now)?;
    // Counted by a statement of its own, after the touch: on PostgreSQL the
    // touch holds the agent's row, waiting first for a claim of the same
    // agent on another replica (claims run beside each other) to commit,
    // and only a statement begun after that sees the run it took. A count
    // inside the touch would use the snapshot taken before the wait.
    Ok(tx
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM runs WHERE agent_id = ?1 AND status = 'running'),
                    max_concurrency, online
             FROM agents WHERE id = ?1",
        )?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?)
}

/// What a poll of agent `id` would find if it claimed now, read without
/// claiming (see `queue::settle`).
#[derive(Debug)]
pub(crate) struct PollState {
    /// When the agent was last heard from.
    pub(crate) last_seen_ms: Option<i64>,
    /// Its running runs.
    pub(crate) held: i64,
    /// The most it declared it runs at once.
    pub(crate) max: i64,
    /// Whether it is connected.
    pub(crate) online: bool,
    /// Whether a run of one of its targets is queued.
    pub(crate) queued: bool,
    /// Whether a run was handed to it in poll `poll_id` and is running.
    pub(crate) in_poll: bool,
}

/// [`PollState`] of agent `id` asking in poll `poll_id`; `None` if there
/// is no such agent.
pub(crate) fn poll_state(
    tx: &Tx<'_>,
    id: &str,
    poll_id: Option<&str>,
) -> Result<Option<PollState>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT a.last_seen_ms, a.max_concurrency, a.online,
                    (SELECT COUNT(*) FROM runs WHERE agent_id = ?1 AND status = 'running'),
                    EXISTS (SELECT 1 FROM agent_targets t
                            JOIN runs r ON r.target_id = t.target_id AND r.status = 'queued'
                            WHERE t.agent_id = ?1),
                    EXISTS (SELECT 1 FROM runs
                            WHERE agent_id = ?1 AND status = 'running' AND poll_id = ?2)
             FROM agents a WHERE a.id = ?1",
        )?
        .query_row(params![id, poll_id], |r| {
            Ok(PollState {
                last_seen_ms: r.get(0)?,
                max: r.get(1)?,
                online: r.get(2)?,
                held: r.get(3)?,
                queued: r.get(4)?,
                in_poll: r.get(5)?,
            })
        })
        .optional()?)
}

/// How many of the org's agents other than `id` are connected (online,
/// unrevoked, heard from at or after `since`).
pub(crate) fn connected_others(
    tx: &Tx<'_>,
    org_id: i64,
    id: &str,
    since: i64,
) -> Result<i64, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT COUNT(*) FROM agents WHERE org_id = ?1 AND id != ?2 AND online = 1
             AND revoked_ms IS NULL AND last_seen_ms >= ?3",
        )?
        .query_row(params![org_id, id, since], |r| r.get(0))?)
}

/// How many agents of every org are connected (for metrics).
pub(crate) fn connected(tx: &Tx<'_>, since: i64) -> Result<u64, Error> {
    Ok(tx.prepare_cached(
            "SELECT COUNT(*) FROM agents WHERE online = 1 AND revoked_ms IS NULL AND last_seen_ms >= ?1",
        )?
        .query_row(params![since], |r| r.get(0))?)
}

/// The query of whether a connected agent (online, unrevoked, heard from
/// at or after `since`) serves target `target`, both SQL expressions: 1 or
/// 0. It stops at the first such agent: a submission asks it, and a target
/// may have a thousand.
pub(super) fn served_sql(target: &str, since: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM agent_targets t JOIN agents a ON a.id = t.agent_id
         WHERE t.target_id = {target} AND a.online = 1 AND a.revoked_ms IS NULL
           AND a.last_seen_ms >= {since} LIMIT 1) AS serving"
    )
}

/// Whether a connected agent (online, unrevoked, heard from at or after
/// `since`) serves target `target_id`.
pub(crate) fn served(tx: &Tx<'_>, target_id: i64, since: i64) -> Result<bool, Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| served_sql("?1", "?2"));
    let n: i64 = tx
        .prepare_cached(&SQL)?
        .query_row(params![target_id, since], |r| r.get(0))?;
    Ok(n > 0)
}

/// Agent `id` serves no target any more.
pub(crate) fn clear_targets(tx: &Tx<'_>, id: &str) -> Result<(), Error> {
    tx.prepare_cached("DELETE FROM agent_targets WHERE agent_id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Agent `id` serves target `target_id`.
pub(crate) fn add_target(tx: &Tx<'_>, id: &str, target_id: i64) -> Result<(), Error> {
    tx.prepare_cached("INSERT INTO agent_targets (agent_id, target_id) VALUES (?1, ?2)")?
        .execute(params![id, target_id])?;
    Ok(())
}

/// Agent `id` connected with `version` and `max_concurrency`.
pub(crate) fn set_connected(
    tx: &Tx<'_>,
    id: &str,
    version: &str,
    max_concurrency: u32,
    now: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
            "UPDATE agents SET version = ?2, max_concurrency = ?3, online = 1, last_seen_ms = ?4 WHERE id = ?1",
        )?
        .execute(params![id, version, max_concurrency, now])?;
    Ok(())
}

/// Agent `id` went away (it stays enrolled).
pub(crate) fn set_offline(tx: &Tx<'_>, id: &str) -> Result<(), Error> {
    tx.prepare_cached("UPDATE agents SET online = 0 WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Target `target_id` is served only by agents of pool `pool_id` from now on.
pub(crate) fn keep_pool_for_target(tx: &Tx<'_>, target_id: i64, pool_id: i64) -> Result<(), Error> {
    tx.prepare_cached(
        "DELETE FROM agent_targets WHERE target_id = ?1
             AND agent_id IN (SELECT id FROM agents WHERE pool_id != ?2)",
    )?
    .execute(params![target_id, pool_id])?;
    Ok(())
}

/// The agents that serve target `target_id` (connected or not), by name.
pub(crate) fn serving_agents(tx: &Tx<'_>, target_id: i64) -> Result<Vec<AgentRef>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT a.id, a.name FROM agent_targets t JOIN agents a ON a.id = t.agent_id
             WHERE t.target_id = ?1 ORDER BY a.name, a.id",
        )?
        .query_map(params![target_id], |r| {
            Ok(AgentRef {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Nobody serves target `target_id` any more.
pub(crate) fn drop_target(tx: &Tx<'_>, target_id: i64) -> Result<(), Error> {
    tx.prepare_cached("DELETE FROM agent_targets WHERE target_id = ?1")?
        .execute(params![target_id])?;
    Ok(())
}

/// A challenge handed to an agent (see `Control::agent_challenges`).
pub(crate) struct ChallengeRow {
    pub(crate) id: String,
    pub(crate) agent_id: String,
    pub(crate) target: String,
    pub(crate) key_id: String,
    pub(crate) nonce_hash: [u8; 32],
    pub(crate) expires_ms: i64,
}

/// Stores `row`, and forgets challenges that expired before `now`.
pub(crate) fn insert_challenge(tx: &Tx<'_>, row: &ChallengeRow, now: i64) -> Result<(), Error> {
    tx.prepare_cached("DELETE FROM agent_challenges WHERE expires_ms < ?1")?
        .execute(params![now])?;
    tx.prepare_cached(
        "INSERT INTO agent_challenges (id, agent_id, target, key_id, nonce_hash, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        row.id,
        row.agent_id,
        row.target,
        row.key_id,
        &row.nonce_hash[..],
        row.expires_ms
    ])?;
    Ok(())
}

/// Challenge `id` of agent `agent_id`, removed (a challenge is answered
/// once, rightly or not).
pub(crate) fn take_challenge(
    tx: &Tx<'_>,
    id: &str,
    agent_id: &str,
) -> Result<Option<ChallengeRow>, Error> {
    let row = tx
        .prepare_cached(
            "DELETE FROM agent_challenges WHERE id = ?1 AND agent_id = ?2
             RETURNING target, key_id, nonce_hash, expires_ms",
        )?
        .query_row(params![id, agent_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    Ok(row.map(|(target, key_id, hash, expires_ms)| {
        let mut nonce_hash = [0u8; 32];
        if hash.len() == 32 {
            nonce_hash.copy_from_slice(&hash);
        }
        ChallengeRow {
            id: id.to_owned(),
            agent_id: agent_id.to_owned(),
            target,
            key_id,
            nonce_hash,
            expires_ms,
        }
    }))
}
