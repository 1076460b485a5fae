//! Run output: storing the agents' (already redacted) chunks idempotently,
//! enforcing the per-run cap, and reading it back in pages.
//!
//! The API stores bytes exactly as received: it never unmasks, decodes or
//! re-derives anything from them.

use crate::auth::Agent;
use crate::error::ApiError;
use crate::queue::no_such_run;
use rusqlite::{Connection, OptionalExtension as _, params};
use sealrun_wire::Base64Bytes;
use sealrun_wire::log::{LogChunk, LogUploadAck, RunEnd, StreamKind};
use sealrun_wire::run::RunStatus;

/// Most bytes of output one page carries (a page always has at least one
/// chunk if any is available).
const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most chunks one page carries.
const PAGE_CHUNKS: usize = 1000;

/// The text stored, as a `system` chunk, where output was cut.
pub(crate) fn truncation_marker(limit: u64) -> String {
    format!("\n[sealrun] log exceeded limit of {limit} bytes; further output dropped\n")
}

fn stream_from(s: &str) -> StreamKind {
    match s {
        "stdout" => StreamKind::Stdout,
        "stderr" => StreamKind::Stderr,
        _ => StreamKind::System,
    }
}

/// The run's log state, as stored.
struct LogState {
    n: i64,
    status: String,
    cancel: bool,
    bytes: u64,
    truncated: bool,
    next_seq: u64,
    final_seq: Option<u64>,
}

/// Stores uploaded chunks of a run the agent holds (or finished, to fill in
/// what a retry brings late).
pub(crate) fn store(
    conn: &Connection,
    agent: &Agent,
    run_id: &str,
    chunks: &[LogChunk],
    max_chunk: u64,
    max_log: u64,
) -> Result<LogUploadAck, ApiError> {
    for c in chunks {
        if c.data.0.len() as u64 > max_chunk {
            return Err(ApiError::too_large(format!(
                "chunk {} holds {} bytes; the limit is {max_chunk}",
                c.seq,
                c.data.0.len()
            )));
        }
    }
    let row: Option<(Option<String>, LogState)> = conn
        .prepare_cached(
            "SELECT n, status, agent_id, cancel_requested, log_bytes, log_truncated, log_next_seq, log_final_seq
             FROM runs WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![agent.org_id, run_id], |r| {
            Ok((
                r.get(2)?,
                LogState {
                    n: r.get(0)?,
                    status: r.get(1)?,
                    cancel: r.get(3)?,
                    bytes: r.get(4)?,
                    truncated: r.get(5)?,
                    next_seq: r.get(6)?,
                    final_seq: r.get(7)?,
                },
            ))
        })
        .optional()?;
    let Some((holder, mut st)) = row else {
        return Err(no_such_run(run_id));
    };
    if holder.as_deref() != Some(agent.id.as_str()) {
        return Err(no_such_run(run_id));
    }
    match st.status.as_str() {
        "running" => {}
        "lost" => {
            return Err(ApiError::conflict(format!(
                "run {run_id} is lost (its lease lapsed); its output is refused"
            )));
        }
        // Finished by this agent: only a late retry of what it said it made.
        _ => {
            let limit = st.final_seq.unwrap_or(0);
            if let Some(c) = chunks.iter().find(|c| c.seq >= limit) {
                return Err(ApiError::conflict(format!(
                    "run {run_id} has ended with {limit} chunks; chunk {} comes too late",
                    c.seq
                )));
            }
        }
    }
    let mut highest = None::<u64>;
    let mut sorted: Vec<&LogChunk> = chunks.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    for chunk in sorted {
        highest = Some(highest.map_or(chunk.seq, |h| h.max(chunk.seq)));
        if st.truncated {
            continue;
        }
        insert_chunk(conn, &mut st, chunk, max_log, run_id)?;
    }
    // Advance the contiguous prefix over what is now stored.
    let mut next = st.next_seq;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT seq FROM log_chunks WHERE run_n = ?1 AND seq >= ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![st.n, next])?;
        while let Some(r) = rows.next()? {
            let seq: u64 = r.get(0)?;
            if seq != next {
                break;
            }
            next += 1;
        }
    }
    conn.prepare_cached(
        "UPDATE runs SET log_bytes = ?2, log_truncated = ?3, log_next_seq = ?4 WHERE n = ?1",
    )?
    .execute(params![st.n, st.bytes, st.truncated, next])?;
    // Once truncated, everything the agent sent counts as taken (and dropped),
    // so it stops retrying.
    let ack_next = if st.truncated {
        next.max(highest.map_or(0, |h| h + 1))
    } else {
        next
    };
    Ok(LogUploadAck {
        next_seq: ack_next,
        truncated: st.truncated,
        cancel: st.cancel,
    })
}

fn insert_chunk(
    conn: &Connection,
    st: &mut LogState,
    chunk: &LogChunk,
    max_log: u64,
    run_id: &str,
) -> Result<(), ApiError> {
    let len = chunk.data.0.len() as u64;
    let existing: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM log_chunks WHERE run_n = ?1 AND seq = ?2")?
        .query_row(params![st.n, chunk.seq], |r| r.get(0))
        .optional()?;
    if let Some(existing) = existing {
        if existing != chunk.data.0 {
            // A retry must resend the same bytes; keep what arrived first.
            tracing::warn!(
                run = run_id,
                seq = chunk.seq,
                "log chunk resent with different content; kept the first"
            );
        }
        return Ok(());
    }
    if st.bytes + len > max_log {
        let marker = truncation_marker(max_log);
        conn.prepare_cached(
            "INSERT INTO log_chunks (run_n, seq, stream, data) VALUES (?1, ?2, 'system', ?3)",
        )?
        .execute(params![st.n, chunk.seq, marker.as_bytes()])?;
        // Chunks that arrived early, past the cut, are dropped as well, so the
        // marker is the last thing in the log.
        let dropped: u64 = conn
            .prepare_cached(
                "DELETE FROM log_chunks WHERE run_n = ?1 AND seq > ?2 RETURNING length(data)",
            )?
            .query_map(params![st.n, chunk.seq], |r| r.get::<_, u64>(0))?
            .sum::<Result<u64, _>>()?;
        st.bytes -= dropped.min(st.bytes);
        st.truncated = true;
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO log_chunks (run_n, seq, stream, data) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        st.n,
        chunk.seq,
        chunk.stream.as_str(),
        chunk.data.0
    ])?;
    st.bytes += len;
    Ok(())
}

/// What a page read needs to know about the run.
struct PageHead {
    n: i64,
    status: String,
    contiguous: u64,
    exit_code: Option<i64>,
    error: Option<String>,
}

/// A page of a run's output and where the run stands.
pub(crate) struct Page {
    pub(crate) chunks: Vec<LogChunk>,
    pub(crate) next_seq: u64,
    pub(crate) status: RunStatus,
    /// Set once the run has ended and `chunks` reaches the end of its output.
    pub(crate) end: Option<RunEnd>,
}

/// Chunks with `seq >= from`. While the run is live, only the gap-free prefix
/// is served (a follower must never skip a chunk that arrives late); once it
/// has ended, everything stored is.
pub(crate) fn page(
    conn: &Connection,
    org_id: i64,
    run_id: &str,
    from: u64,
) -> Result<Page, ApiError> {
    let tx = conn.unchecked_transaction()?; // one snapshot for both reads
    let row: Option<PageHead> = tx
        .prepare_cached(
            "SELECT n, status, log_next_seq, exit_code, error FROM runs WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![org_id, run_id], |r| {
            Ok(PageHead {
                n: r.get(0)?,
                status: r.get(1)?,
                contiguous: r.get(2)?,
                exit_code: r.get(3)?,
                error: r.get(4)?,
            })
        })
        .optional()?;
    let Some(PageHead {
        n,
        status,
        contiguous,
        exit_code,
        error,
    }) = row
    else {
        return Err(no_such_run(run_id));
    };
    let status = RunStatus::parse(&status)
        .ok_or_else(|| ApiError::internal(format_args!("run {run_id} has status {status:?}")))?;
    let upto = if status.is_terminal() {
        u64::MAX >> 1
    } else {
        contiguous
    };
    let mut chunks = Vec::new();
    let mut size = 0usize;
    let mut complete = true;
    {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, stream, data FROM log_chunks
             WHERE run_n = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![n, from, upto])?;
        while let Some(r) = rows.next()? {
            if chunks.len() >= PAGE_CHUNKS || (size >= PAGE_BYTES && !chunks.is_empty()) {
                complete = false;
                break;
            }
            let data: Vec<u8> = r.get(2)?;
            size += data.len();
            chunks.push(LogChunk {
                seq: r.get(0)?,
                stream: stream_from(&r.get::<_, String>(1)?),
                data: Base64Bytes(data),
            });
        }
    }
    tx.finish()?;
    let next_seq = chunks.last().map_or(from, |c| c.seq + 1);
    let end = (status.is_terminal() && complete).then_some(RunEnd {
        status,
        exit_code,
        error,
    });
    Ok(Page {
        chunks,
        next_seq,
        status,
        end,
    })
}
