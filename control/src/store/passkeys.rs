//! Rows of `passkeys`: the passkeys people registered in the web console
//! (public keys only), before and after an admin certifies them.

use super::tx::Tx;
use crate::error::Error;
use sealrun_wire::passkey::Passkey;

/// Stores `passkey` as user `user_id`'s; `false` if that credential is
/// registered already.
pub(crate) fn insert(
    tx: &Tx<'_>,
    user_id: i64,
    passkey: &Passkey,
    now: i64,
) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "INSERT INTO passkeys (credential_id, user_id, public_key, origin, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (credential_id) DO NOTHING",
        )?
        .execute(params![
            passkey.credential_id,
            user_id,
            passkey.public_key,
            passkey.origin,
            now
        ])?
        == 1)
}

/// User `user_id`'s passkeys, oldest first.
pub(crate) fn of_user(tx: &Tx<'_>, user_id: i64) -> Result<Vec<Passkey>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT credential_id, public_key, origin FROM passkeys WHERE user_id = ?1
         ORDER BY created_ms, credential_id",
    )?;
    let rows = stmt.query_map(params![user_id], |r| {
        Ok(Passkey {
            credential_id: r.get(0)?,
            public_key: r.get(1)?,
            origin: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
