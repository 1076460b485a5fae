//! The readiness probe's row: rewriting it proves the store can still
//! commit (and, through the writer, make durable) a change.

use super::tx::Tx;
use crate::error::Error;

/// Rewrites the probe row with `now_ms`.
pub(crate) fn probe(tx: &Tx<'_>, now_ms: i64) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO health_probe (id, at_ms) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
    )?
    .execute(params![now_ms])?;
    Ok(())
}
