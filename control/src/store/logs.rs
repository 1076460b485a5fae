//! Rows of `log_chunks` and the log bookkeeping columns of `runs`.

use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;
use sealrun_wire::Base64Bytes;
use sealrun_wire::log::{LogChunk, StreamKind};

/// A run's log state, as stored.
#[derive(Debug)]
pub(crate) struct LogState {
    /// The run's row number (chunks are keyed by it).
    pub(crate) n: i64,
    pub(crate) status: String,
    /// The agent holding (or that held) it.
    pub(crate) holder: Option<String>,
    pub(crate) cancel: bool,
    pub(crate) bytes: u64,
    pub(crate) truncated: bool,
    pub(crate) next_seq: u64,
    pub(crate) final_seq: Option<u64>,
}

/// The org's run `run_id`'s log state.
pub(crate) fn state(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<Option<LogState>, Error> {
    Ok(tx.prepare_cached(
            "SELECT n, status, agent_id, cancel_requested, log_bytes, log_truncated, log_next_seq, log_final_seq
             FROM runs WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![org_id, run_id], |r| {
            Ok(LogState {
                n: r.get(0)?,
                status: r.get(1)?,
                holder: r.get(2)?,
                cancel: r.get(3)?,
                bytes: r.get(4)?,
                truncated: r.get(5)?,
                next_seq: r.get(6)?,
                final_seq: r.get(7)?,
            })
        })
        .optional()?)
}

/// Saves the bookkeeping of run row `n`.
pub(crate) fn save_state(
    tx: &Tx<'_>,
    n: i64,
    bytes: u64,
    truncated: bool,
    next_seq: u64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE runs SET log_bytes = ?2, log_truncated = ?3, log_next_seq = ?4 WHERE n = ?1",
    )?
    .execute(params![n, bytes, truncated, next_seq])?;
    Ok(())
}

/// The bytes of chunk `seq` of run row `n`, if stored.
pub(crate) fn chunk(tx: &Tx<'_>, n: i64, seq: u64) -> Result<Option<Vec<u8>>, Error> {
    Ok(tx
        .prepare_cached("SELECT data FROM log_chunks WHERE run_n = ?1 AND seq = ?2")?
        .query_row(params![n, seq], |r| r.get(0))
        .optional()?)
}

/// Stores chunk `seq` of run row `n`.
pub(crate) fn insert_chunk(
    tx: &Tx<'_>,
    n: i64,
    seq: u64,
    stream: StreamKind,
    data: &[u8],
) -> Result<(), Error> {
    tx.prepare_cached("INSERT INTO log_chunks (run_n, seq, stream, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![n, seq, stream.as_str(), data])?;
    Ok(())
}

/// Deletes the chunks of run row `n` after `seq`; returns their total size.
pub(crate) fn drop_after(tx: &Tx<'_>, n: i64, seq: u64) -> Result<u64, Error> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM log_chunks WHERE run_n = ?1 AND seq > ?2 RETURNING length(data)",
        )?
        .query_map(params![n, seq], |r| r.get::<_, u64>(0))?
        .sum::<Result<u64, _>>()?)
}

/// The first `seq` at or after `from` that run row `n` lacks.
pub(crate) fn first_gap(tx: &Tx<'_>, n: i64, from: u64) -> Result<u64, Error> {
    let mut next = from;
    let mut stmt = tx
        .prepare_cached("SELECT seq FROM log_chunks WHERE run_n = ?1 AND seq >= ?2 ORDER BY seq")?;
    stmt.each(params![n, from], |r| {
        let seq: u64 = r.get(0)?;
        if seq != next {
            return Ok(false);
        }
        next += 1;
        Ok(true)
    })?;
    Ok(next)
}

/// What a page read needs to know about the run.
#[derive(Debug)]
pub(crate) struct PageHead {
    pub(crate) status: String,
    /// The end of the gap-free prefix stored.
    pub(crate) contiguous: u64,
    pub(crate) exit_code: Option<i64>,
    pub(crate) error: Option<String>,
}

/// How much one page may hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageLimits {
    pub(crate) chunks: usize,
    pub(crate) bytes: usize,
}

/// The org's run `run_id` and its chunks from `from` (below `upto(head)`),
/// read in one snapshot; with whether the chunks reach the end of what
/// is stored. On a reader's `Tx` only (`Db::read`: one snapshot).
pub(crate) fn page(
    tx: &Tx<'_>,
    org_id: i64,
    run_id: &str,
    from: u64,
    upto: impl FnOnce(&PageHead) -> u64,
    limits: PageLimits,
) -> Result<Option<(PageHead, Vec<LogChunk>, bool)>, Error> {
    // `Db::read` runs this in one read transaction: one snapshot for both reads.
    let head: Option<(i64, PageHead)> = tx.prepare_cached(
            "SELECT n, status, log_next_seq, exit_code, error FROM runs WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![org_id, run_id], |r| {
            Ok((
                r.get(0)?,
                PageHead {
                    status: r.get(1)?,
                    contiguous: r.get(2)?,
                    exit_code: r.get(3)?,
                    error: r.get(4)?,
                },
            ))
        })
        .optional()?;
    let Some((n, head)) = head else {
        return Ok(None);
    };
    let upto = upto(&head);
    let mut chunks = Vec::new();
    let mut size = 0usize;
    let mut complete = true;
    {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, stream, data FROM log_chunks
             WHERE run_n = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq",
        )?;
        stmt.each(params![n, from, upto], |r| {
            if chunks.len() >= limits.chunks || (size >= limits.bytes && !chunks.is_empty()) {
                complete = false;
                return Ok(false);
            }
            let data: Vec<u8> = r.get(2)?;
            size += data.len();
            chunks.push(LogChunk {
                seq: r.get(0)?,
                stream: stream_from(&r.get::<_, String>(1)?),
                data: Base64Bytes(data),
            });
            Ok(true)
        })?;
    }
    Ok(Some((head, chunks, complete)))
}

fn stream_from(s: &str) -> StreamKind {
    match s {
        "stdout" => StreamKind::Stdout,
        "stderr" => StreamKind::Stderr,
        _ => StreamKind::System,
    }
}

/// Whether every chunk the agent said it made for the org's run `run_id`
/// is stored (true for a missing run: nothing more will come).
pub(crate) fn complete(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<bool, Error> {
    let row: Option<(u64, Option<u64>)> = tx
        .prepare_cached(
            "SELECT log_next_seq, log_final_seq FROM runs WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![org_id, run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.is_none_or(|(next, last)| last.is_none_or(|last| next >= last)))
}

/// The last chunks of the org's run `run_id` holding at least `min_bytes`
/// (or all of them), in order, read in one snapshot with `head`. On a
/// reader's `Tx` only (`Db::read`: one snapshot).
pub(crate) fn tail<T>(
    tx: &Tx<'_>,
    org_id: i64,
    run_id: &str,
    min_bytes: usize,
    head: impl FnOnce(&Tx<'_>) -> Result<T, Error>,
) -> Result<(T, Vec<u8>), Error> {
    // `Db::read` runs this in one read transaction: one snapshot for both reads.
    let first = head(tx)?;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT data FROM log_chunks
             WHERE run_n = (SELECT n FROM runs WHERE org_id = ?1 AND id = ?2) ORDER BY seq DESC",
        )?;
        let mut size = 0;
        if min_bytes > 0 {
            stmt.each(params![org_id, run_id], |r| {
                let data: Vec<u8> = r.get(0)?;
                size += data.len();
                chunks.push(data);
                Ok(size < min_bytes)
            })?;
        }
    }
    Ok((first, chunks.into_iter().rev().flatten().collect()))
}
