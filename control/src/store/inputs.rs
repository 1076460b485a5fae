//! Rows of `input_relays` and `input_chunks` (PostgreSQL only: SQLite has
//! one replica): a run's input passed from the replica its submitter sends
//! it to (the feeder's) to the replica its agent reads it from (the
//! reader's), when those differ. Chunks are sealed to a key only the
//! reader's replica holds, in memory, for this run (see `stdin.rs`); they
//! are deleted as they are read, and with their relay once the run ends.

use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;

/// One side of a relay: the replica it is on and, for the reader, the
/// public key chunks are sealed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Party {
    pub(crate) replica: String,
    pub(crate) key: Option<Vec<u8>>,
}

/// A relay as stored.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    pub(crate) feeder: Option<Party>,
    pub(crate) reader: Option<Party>,
    /// When the feeder's replica last said it is alive (Unix ms).
    pub(crate) feeder_seen_ms: Option<i64>,
    /// The reader is done with it ([`reader_done`]).
    pub(crate) reader_done: bool,
}

/// Which side attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Feeder,
    Reader,
}

/// Attaches `replica` as run `run_id`'s `side` (the reader with `key`, the
/// feeder as alive at `now`).
/// `None` if that side is attached already (input is sent and read once);
/// else the other side, if it is attached.
pub(crate) fn attach(
    tx: &Tx<'_>,
    run_id: &str,
    side: Side,
    replica: &str,
    key: &[u8],
    now: i64,
) -> Result<Option<Option<Party>>, Error> {
    // One statement each way, so that two sides attaching at once on two
    // replicas are ordered by the row's lock: the second sees the first.
    let other = match side {
        Side::Feeder => tx
            .prepare_cached(
                "INSERT INTO input_relays (run_id, feeder_replica, feeder_seen_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id) DO UPDATE
                     SET feeder_replica = excluded.feeder_replica,
                         feeder_seen_ms = excluded.feeder_seen_ms
                     WHERE input_relays.feeder_replica IS NULL
                 RETURNING reader_replica, reader_key",
            )?
            .query_row(params![run_id, replica, now], |r| {
                let replica: Option<String> = r.get(0)?;
                let key: Option<Vec<u8>> = r.get(1)?;
                Ok(replica.map(|replica| Party { replica, key }))
            }),
        Side::Reader => tx
            .prepare_cached(
                "INSERT INTO input_relays (run_id, reader_replica, reader_key)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id) DO UPDATE
                     SET reader_replica = excluded.reader_replica,
                         reader_key = excluded.reader_key
                     WHERE input_relays.reader_replica IS NULL
                 RETURNING feeder_replica",
            )?
            .query_row(params![run_id, replica, key], |r| {
                let replica: Option<String> = r.get(0)?;
                Ok(replica.map(|replica| Party { replica, key: None }))
            }),
    };
    Ok(other.optional()?)
}

/// Run `run_id`'s relay, if either side attached.
pub(crate) fn relay(tx: &Tx<'_>, run_id: &str) -> Result<Option<Relay>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT feeder_replica, reader_replica, reader_key, feeder_seen_ms, reader_done
             FROM input_relays WHERE run_id = ?1",
        )?
        .query_row(params![run_id], |r| {
            let feeder: Option<String> = r.get(0)?;
            let reader: Option<String> = r.get(1)?;
            let key: Option<Vec<u8>> = r.get(2)?;
            Ok(Relay {
                feeder: feeder.map(|replica| Party { replica, key: None }),
                reader: reader.map(|replica| Party { replica, key }),
                feeder_seen_ms: r.get(3)?,
                reader_done: r.get::<_, i64>(4)? != 0,
            })
        })
        .optional()?)
}

/// The feeder's replica is alive and still relaying run `run_id`'s input.
pub(crate) fn feeder_alive(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached("UPDATE input_relays SET feeder_seen_ms = ?2 WHERE run_id = ?1")?
        .execute(params![run_id, now])?;
    Ok(())
}

/// What [`put_if_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// The first this many are stored (at least one).
    Done(usize),
    /// `room` chunks are unread already.
    NoRoom,
    /// The relay is gone (its run ended) or its reader is done with it.
    Gone,
}

/// Stores the first of `chunks` (each a sequence number and its sealed
/// frame, in order) of run `run_id`'s input that fit with at most `room`
/// unread, if the relay is still recorded and read (deleting a relay
/// deletes its chunks: nothing is left behind once its run ended); those
/// stored before (`next_seq`) count as stored.
pub(crate) fn put_if_room(
    tx: &Tx<'_>,
    run_id: &str,
    chunks: &[(i64, Vec<u8>)],
    room: usize,
) -> Result<Put, Error> {
    let relay: Option<(i64, i64)> = tx
        .query_row(
            "SELECT next_seq, (SELECT COUNT(*) FROM input_chunks WHERE run_id = ?1)
             FROM input_relays WHERE run_id = ?1 AND reader_done = 0",
            params![run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((next_seq, unread)) = relay else {
        return Ok(Put::Gone);
    };
    // Those stored by a write whose answer was lost (then sent again) are
    // not stored twice.
    let stored = chunks.iter().take_while(|(seq, _)| *seq < next_seq).count();
    let free = room.saturating_sub(usize::try_from(unread).unwrap_or(usize::MAX));
    let fit = &chunks[stored..stored + free.min(chunks.len() - stored)];
    if stored == 0 && fit.is_empty() {
        return Ok(Put::NoRoom);
    }
    let mut insert =
        tx.prepare_cached("INSERT INTO input_chunks (run_id, seq, sealed) VALUES (?1, ?2, ?3)")?;
    for (seq, sealed) in fit {
        insert.execute(params![run_id, seq, sealed])?;
    }
    if let Some((last, _)) = fit.last() {
        tx.prepare_cached("UPDATE input_relays SET next_seq = ?2 WHERE run_id = ?1")?
            .execute(params![run_id, last + 1])?;
    }
    Ok(Put::Done(stored + fit.len()))
}

/// The reader of run `run_id`'s input is done with it (it read the end,
/// or stopped reading): nothing more is passed on, and what was is dropped.
pub(crate) fn reader_done(tx: &Tx<'_>, run_id: &str) -> Result<(), Error> {
    tx.prepare_cached("UPDATE input_relays SET reader_done = 1 WHERE run_id = ?1")?
        .execute(params![run_id])?;
    tx.prepare_cached("DELETE FROM input_chunks WHERE run_id = ?1")?
        .execute(params![run_id])?;
    Ok(())
}

/// Chunks of run `run_id`'s input not yet read.
pub(crate) fn unread(tx: &Tx<'_>, run_id: &str) -> Result<i64, Error> {
    Ok(tx.query_row(
        "SELECT COUNT(*) FROM input_chunks WHERE run_id = ?1",
        params![run_id],
        |r| r.get(0),
    )?)
}

/// Takes (reads and deletes) up to `limit` of run `run_id`'s chunks, in
/// order.
pub(crate) fn take(tx: &Tx<'_>, run_id: &str, limit: i64) -> Result<Vec<(i64, Vec<u8>)>, Error> {
    let mut taken = tx
        .prepare_cached(
            "DELETE FROM input_chunks WHERE run_id = ?1 AND seq IN
                 (SELECT seq FROM input_chunks WHERE run_id = ?1 ORDER BY seq LIMIT ?2)
             RETURNING seq, sealed",
        )?
        .query_map(params![run_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(i64, Vec<u8>)>, _>>()?;
    taken.sort_by_key(|(seq, _)| *seq);
    Ok(taken)
}

/// The relays of runs that ended (or are gone).
const ENDED: &str = "SELECT r.run_id FROM input_relays r LEFT JOIN runs ON runs.id = r.run_id
     WHERE runs.id IS NULL OR runs.status NOT IN ('pending_approval', 'queued', 'running')";

/// Whether a relay of a run that ended is recorded.
pub(crate) fn any_ended(tx: &Tx<'_>) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(&format!("SELECT 1 FROM ({ENDED}) e LIMIT 1"))?
        .exists(params![])?)
}

/// Deletes the relays of runs that ended, with their chunks left unread.
/// Returns how many relays.
pub(crate) fn prune_ended(tx: &Tx<'_>) -> Result<usize, Error> {
    Ok(tx
        .prepare_cached(&format!(
            "DELETE FROM input_relays WHERE run_id IN ({ENDED})"
        ))?
        .execute(params![])?)
}
