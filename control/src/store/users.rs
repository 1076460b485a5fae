//! Rows of `users` (people: a name and one role per org; their tokens act
//! with it), `groups` and `group_members`.

use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;
use sealrun_wire::admin::Role;
use sealrun_wire::people::{GroupView, UserView};

/// A user as the domain needs it.
#[derive(Clone, Debug)]
pub(crate) struct UserRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) disabled_ms: Option<i64>,
}

fn role_of(s: &str) -> Role {
    // The column's CHECK admits only valid roles; the least a wrong one
    // could do is read.
    Role::parse(s).unwrap_or(Role::Auditor)
}

/// Creates user `name` in org `org_id`; `None` if the name is taken.
pub(crate) fn insert(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
    role: Role,
    now: i64,
) -> Result<Option<i64>, Error> {
    Ok(tx
        .prepare_cached(
            "INSERT INTO users (org_id, name, role, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (org_id, name) DO NOTHING RETURNING id",
        )?
        .query_row(params![org_id, name, role.as_str(), now], |r| r.get(0))
        .optional()?)
}

/// The org's user `name`, if any.
pub(crate) fn by_name(tx: &Tx<'_>, org_id: i64, name: &str) -> Result<Option<UserRow>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT id, name, role, disabled_ms FROM users WHERE org_id = ?1 AND name = ?2",
        )?
        .query_row(params![org_id, name], |r| {
            Ok(UserRow {
                id: r.get(0)?,
                name: r.get(1)?,
                role: role_of(&r.get::<_, String>(2)?),
                disabled_ms: r.get(3)?,
            })
        })
        .optional()?)
}

/// The name of user `user_id` (for approvals and messages), if it exists.
pub(crate) fn name(tx: &Tx<'_>, user_id: i64) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached("SELECT name FROM users WHERE id = ?1")?
        .query_row(params![user_id], |r| r.get(0))
        .optional()?)
}

/// Whether user `user_id` is a member of the org's group `group` (false if
/// there is no such group).
pub(crate) fn in_group(tx: &Tx<'_>, org_id: i64, user_id: i64, group: &str) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM group_members m JOIN groups g ON g.id = m.group_id
             WHERE g.org_id = ?1 AND g.name = ?2 AND m.user_id = ?3",
        )?
        .exists(params![org_id, group, user_id])?)
}

/// The org's users by name, with how many live (unrevoked, unexpired at
/// `now`) tokens each holds.
pub(crate) fn list(tx: &Tx<'_>, org_id: i64, now: i64) -> Result<Vec<UserView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT u.name, u.role, u.created_ms, u.disabled_ms,
                (SELECT COUNT(*) FROM tokens t WHERE t.user_id = u.id AND t.revoked_ms IS NULL
                 AND (t.expires_ms IS NULL OR t.expires_ms > ?2)),
                u.id, u.certificate
         FROM users u WHERE u.org_id = ?1 ORDER BY u.name",
    )?;
    let rows = stmt
        .query_map(params![org_id, now], |r| {
            Ok((
                UserView {
                    name: r.get(0)?,
                    role: role_of(&r.get::<_, String>(1)?),
                    created_at_ms: r.get(2)?,
                    disabled_at_ms: r.get(3)?,
                    tokens: r.get(4)?,
                    groups: Vec::new(),
                    certificate: None,
                },
                r.get::<_, i64>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (mut view, id, certificate) in rows {
        view.groups = groups_of(tx, id)?;
        view.certificate = certificate.map(|c| serde_json::from_str(&c)).transpose()?;
        out.push(view);
    }
    Ok(out)
}

/// The names of the groups user `user_id` belongs to, sorted.
pub(crate) fn groups_of(tx: &Tx<'_>, user_id: i64) -> Result<Vec<String>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.user_id = ?1 ORDER BY g.name",
    )?;
    let rows = stmt.query_map(params![user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Stores `certificate` (JSON of a signed `UserCertificate`) as user
/// `user_id`'s.
pub(crate) fn set_certificate(tx: &Tx<'_>, user_id: i64, certificate: &str) -> Result<(), Error> {
    tx.prepare_cached("UPDATE users SET certificate = ?2 WHERE id = ?1")?
        .execute(params![user_id, certificate])?;
    Ok(())
}

/// User `user_id`'s certificate (JSON), if an admin certified its key.
pub(crate) fn certificate(tx: &Tx<'_>, user_id: i64) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached("SELECT certificate FROM users WHERE id = ?1")?
        .query_row(params![user_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Marks user `user_id` disabled at `now`.
pub(crate) fn disable(tx: &Tx<'_>, user_id: i64, now: i64) -> Result<(), Error> {
    tx.prepare_cached("UPDATE users SET disabled_ms = ?2 WHERE id = ?1 AND disabled_ms IS NULL")?
        .execute(params![user_id, now])?;
    Ok(())
}

/// How many enabled admins of the org hold a live token at `now`, other
/// than user `except` (so the org is never left without a way in).
pub(crate) fn admins_with_tokens(
    tx: &Tx<'_>,
    org_id: i64,
    except: i64,
    now: i64,
) -> Result<i64, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT COUNT(DISTINCT u.id) FROM users u JOIN tokens t ON t.user_id = u.id
             WHERE u.org_id = ?1 AND u.id != ?2 AND u.role = 'admin' AND u.disabled_ms IS NULL
             AND t.revoked_ms IS NULL AND (t.expires_ms IS NULL OR t.expires_ms > ?3)",
        )?
        .query_row(params![org_id, except, now], |r| r.get(0))?)
}

/// Creates group `name` in org `org_id`; `None` if the name is taken.
pub(crate) fn insert_group(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
    now: i64,
) -> Result<Option<i64>, Error> {
    Ok(tx
        .prepare_cached(
            "INSERT INTO groups (org_id, name, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (org_id, name) DO NOTHING RETURNING id",
        )?
        .query_row(params![org_id, name, now], |r| r.get(0))
        .optional()?)
}

/// The id of the org's group `name`, if any.
pub(crate) fn group_id(tx: &Tx<'_>, org_id: i64, name: &str) -> Result<Option<i64>, Error> {
    Ok(tx
        .prepare_cached("SELECT id FROM groups WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| r.get(0))
        .optional()?)
}

/// Adds user `user_id` to group `group_id`; returns whether it was not a
/// member yet.
pub(crate) fn add_member(tx: &Tx<'_>, group_id: i64, user_id: i64) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "INSERT INTO group_members (group_id, user_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![group_id, user_id])?
        == 1)
}

/// Removes user `user_id` from group `group_id`; returns whether it was a
/// member.
pub(crate) fn remove_member(tx: &Tx<'_>, group_id: i64, user_id: i64) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?
        .execute(params![group_id, user_id])?
        == 1)
}

/// Deletes group `group_id` and its memberships.
pub(crate) fn delete_group(tx: &Tx<'_>, group_id: i64) -> Result<(), Error> {
    tx.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
        .execute(params![group_id])?;
    tx.prepare_cached("DELETE FROM groups WHERE id = ?1")?
        .execute(params![group_id])?;
    Ok(())
}

/// The names of group `group_id`'s members, by name.
pub(crate) fn members(tx: &Tx<'_>, group_id: i64) -> Result<Vec<String>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT u.name FROM group_members m JOIN users u ON u.id = m.user_id
         WHERE m.group_id = ?1 ORDER BY u.name",
    )?;
    let rows = stmt.query_map(params![group_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The org's groups by name, with their members.
pub(crate) fn list_groups(tx: &Tx<'_>, org_id: i64) -> Result<Vec<GroupView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, name, created_ms FROM groups WHERE org_id = ?1 ORDER BY name",
    )?;
    let groups = stmt
        .query_map(params![org_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(groups.len());
    for (id, name, created_at_ms) in groups {
        out.push(GroupView {
            name,
            members: members(tx, id)?,
            created_at_ms,
        });
    }
    Ok(out)
}
