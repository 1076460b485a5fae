//! Rows of `tokens`: user, enrollment and agent tokens (hashes only).

use super::db::now_ms;
use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;
use crate::token::{NewToken, TokenKind};
use sealrun_wire::admin::{EnrollmentTokenView, Role, TokenView};

/// What is stored about a new token besides its id and hash.
#[derive(Debug)]
pub(crate) struct TokenRecord<'a> {
    pub(crate) org_id: i64,
    pub(crate) kind: TokenKind,
    pub(crate) name: &'a str,
    pub(crate) role: Option<Role>,
    /// User tokens: the user they belong to.
    pub(crate) user_id: Option<i64>,
    pub(crate) pool_id: Option<i64>,
    pub(crate) agent_id: Option<&'a str>,
    pub(crate) expires_ms: Option<i64>,
    /// How many agents an enrollment token may enroll (`None`: any number).
    pub(crate) max_uses: Option<u32>,
    /// Session tokens: the user token signed in with; the session is valid
    /// only while that token is.
    pub(crate) parent_id: Option<&'a str>,
}

/// Stores a new token; returns its creation time.
pub(crate) fn insert(tx: &Tx<'_>, new: &NewToken, rec: &TokenRecord<'_>) -> Result<i64, Error> {
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO tokens (id, org_id, kind, role, name, secret_sha256, pool_id, agent_id, created_ms, expires_ms, max_uses, user_id, parent_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        new.id,
        rec.org_id,
        rec.kind.as_str(),
        rec.role.map(Role::as_str),
        rec.name,
        new.secret_sha256.as_slice(),
        rec.pool_id,
        rec.agent_id,
        now,
        rec.expires_ms,
        rec.max_uses,
        rec.user_id,
        rec.parent_id
    ])?;
    Ok(now)
}

/// A token as authentication needs it.
#[derive(Debug)]
pub(crate) struct Credential {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) secret_sha256: Vec<u8>,
    /// User tokens: the user's id, name, role and when it was disabled.
    pub(crate) user: Option<(i64, String, String, Option<i64>)>,
    pub(crate) org_id: i64,
    pub(crate) org: String,
    pub(crate) pool_id: Option<i64>,
    pub(crate) agent_id: Option<String>,
    pub(crate) expires_ms: Option<i64>,
    pub(crate) revoked_ms: Option<i64>,
    /// Enrollment tokens: how many agents it may enroll, and has.
    pub(crate) max_uses: Option<i64>,
    pub(crate) uses: i64,
    /// Session tokens: whether the token signed in with is still valid
    /// (unrevoked, unexpired); `None` for other kinds.
    pub(crate) parent_valid: Option<bool>,
}

/// The token with id `id`, with its org's name.
pub(crate) fn credential(tx: &Tx<'_>, id: &str) -> Result<Option<Credential>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT t.kind, u.role, t.name, t.secret_sha256, t.org_id, o.name, t.pool_id,
                    t.agent_id, t.expires_ms, t.revoked_ms, t.max_uses, t.uses,
                    u.id, u.name, u.disabled_ms,
                    CASE WHEN t.parent_id IS NULL THEN NULL
                         ELSE p.id IS NOT NULL AND p.revoked_ms IS NULL
                              AND (p.expires_ms IS NULL OR p.expires_ms > ?2) END
             FROM tokens t JOIN orgs o ON o.id = t.org_id
             LEFT JOIN users u ON u.id = t.user_id
             LEFT JOIN tokens p ON p.id = t.parent_id WHERE t.id = ?1",
        )?
        .query_row(params![id, now_ms()], |r| {
            let user = match (r.get::<_, Option<i64>>(12)?, r.get(13)?, r.get(1)?) {
                (Some(id), Some(name), Some(role)) => Some((id, name, role, r.get(14)?)),
                _ => None,
            };
            Ok(Credential {
                kind: r.get(0)?,
                user,
                name: r.get(2)?,
                secret_sha256: r.get(3)?,
                org_id: r.get(4)?,
                org: r.get(5)?,
                pool_id: r.get(6)?,
                agent_id: r.get(7)?,
                expires_ms: r.get(8)?,
                revoked_ms: r.get(9)?,
                max_uses: r.get(10)?,
                uses: r.get(11)?,
                parent_valid: r.get(15)?,
            })
        })
        .optional()?)
}

/// The org's user tokens, newest first.
pub(crate) fn list_users(tx: &Tx<'_>, org_id: i64) -> Result<Vec<TokenView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT t.id, t.name, COALESCE(u.role, t.role), t.created_ms, t.revoked_ms, t.expires_ms,
                COALESCE(u.name, '')
         FROM tokens t LEFT JOIN users u ON u.id = t.user_id
         WHERE t.org_id = ?1 AND t.kind = 'user' ORDER BY t.created_ms DESC, t.id",
    )?;
    let rows = stmt.query_map(params![org_id], |r| {
        let role: String = r.get(2)?;
        Ok(TokenView {
            id: r.get(0)?,
            name: r.get(1)?,
            user: r.get(6)?,
            role: Role::parse(&role).unwrap_or(Role::Auditor),
            created_at_ms: r.get(3)?,
            revoked_at_ms: r.get(4)?,
            expires_at_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A token as revocation needs it.
#[derive(Debug)]
pub(crate) struct Revocable {
    pub(crate) kind: String,
    pub(crate) role: Option<String>,
    pub(crate) name: String,
    pub(crate) revoked_ms: Option<i64>,
    /// User tokens: the name of the user it belongs to.
    pub(crate) user: Option<String>,
}

/// The org's token `id`.
pub(crate) fn revocable(tx: &Tx<'_>, org_id: i64, id: &str) -> Result<Option<Revocable>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT t.kind, COALESCE(u.role, t.role), t.name, t.revoked_ms, u.name
             FROM tokens t LEFT JOIN users u ON u.id = t.user_id
             WHERE t.org_id = ?1 AND t.id = ?2",
        )?
        .query_row(params![org_id, id], |r| {
            Ok(Revocable {
                kind: r.get(0)?,
                role: r.get(1)?,
                name: r.get(2)?,
                revoked_ms: r.get(3)?,
                user: r.get(4)?,
            })
        })
        .optional()?)
}

/// How many unrevoked tokens of enabled admin users the org has.
pub(crate) fn active_admins(tx: &Tx<'_>, org_id: i64) -> Result<i64, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT COUNT(*) FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.org_id = ?1 AND t.kind = 'user' AND u.role = 'admin'
             AND u.disabled_ms IS NULL AND t.revoked_ms IS NULL",
        )?
        .query_row(params![org_id], |r| r.get(0))?)
}

/// Marks token `id` revoked.
pub(crate) fn revoke(tx: &Tx<'_>, id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached("UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// Whether token `id` is unrevoked and unexpired at `now`, its user (if it
/// has one) not disabled, and the token a session signed in with (if it is
/// one) just as valid.
pub(crate) fn active(tx: &Tx<'_>, id: &str, now: i64) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM tokens t LEFT JOIN users u ON u.id = t.user_id
             LEFT JOIN tokens p ON p.id = t.parent_id
             WHERE t.id = ?1 AND t.revoked_ms IS NULL
             AND (t.expires_ms IS NULL OR t.expires_ms > ?2) AND u.disabled_ms IS NULL
             AND (t.parent_id IS NULL OR (p.revoked_ms IS NULL
                  AND (p.expires_ms IS NULL OR p.expires_ms > ?2)))",
        )?
        .exists(params![id, now])?)
}

/// Marks every unrevoked token of user `user_id` revoked; returns how
/// many.
pub(crate) fn revoke_user(tx: &Tx<'_>, user_id: i64, now: i64) -> Result<usize, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE tokens SET revoked_ms = ?2 WHERE user_id = ?1 AND revoked_ms IS NULL",
        )?
        .execute(params![user_id, now])?)
}

/// Marks every unrevoked token of agent `agent_id` revoked.
pub(crate) fn revoke_agents(tx: &Tx<'_>, agent_id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE tokens SET revoked_ms = ?2 WHERE agent_id = ?1 AND revoked_ms IS NULL",
    )?
    .execute(params![agent_id, now])?;
    Ok(())
}

/// The enrollment tokens of pool `pool_id` (named `pool`), newest first.
pub(crate) fn list_enrollment(
    tx: &Tx<'_>,
    pool_id: i64,
    pool: &str,
) -> Result<Vec<EnrollmentTokenView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, created_ms, expires_ms, revoked_ms, max_uses, uses FROM tokens
         WHERE kind = 'enrollment' AND pool_id = ?1 ORDER BY created_ms DESC, id",
    )?;
    let rows = stmt.query_map(params![pool_id], |r| {
        Ok(EnrollmentTokenView {
            id: r.get(0)?,
            pool: pool.to_owned(),
            created_at_ms: r.get(1)?,
            expires_at_ms: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            revoked_at_ms: r.get(3)?,
            max_agents: r.get(4)?,
            agents_enrolled: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Counts one enrollment of enrollment token `id`, if it is unrevoked,
/// unexpired at `now` and not used up; returns whether it was.
pub(crate) fn use_enrollment(tx: &Tx<'_>, id: &str, now: i64) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE tokens SET uses = uses + 1
             WHERE id = ?1 AND kind = 'enrollment' AND revoked_ms IS NULL
             AND (expires_ms IS NULL OR expires_ms > ?2)
             AND (max_uses IS NULL OR uses < max_uses)",
        )?
        .execute(params![id, now])?
        == 1)
}
