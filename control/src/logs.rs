//! Run output: storing the agents' (already redacted) chunks idempotently,
//! enforcing the per-run cap, and reading it back in pages.
//!
//! The control plane stores bytes exactly as received: it never unmasks,
//! decodes or re-derives anything from them.

use crate::caller::Agent;
use crate::error::Error;
use crate::queue::no_such_run;
use crate::store::logs::{LogState, PageLimits};
use crate::store::{self, Tx};
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

/// Stores uploaded chunks of a run the agent holds (or finished, to fill in
/// what a retry brings late).
pub(crate) fn store(
    tx: &Tx<'_>,
    agent: &Agent,
    run_id: &str,
    chunks: &[LogChunk],
    max_chunk: u64,
    max_log: u64,
) -> Result<LogUploadAck, Error> {
    for c in chunks {
        if c.data.0.len() as u64 > max_chunk {
            return Err(Error::TooLarge(format!(
                "chunk {} holds {} bytes; the limit is {max_chunk}",
                c.seq,
                c.data.0.len()
            )));
        }
    }
    let Some(mut st) = store::logs::state(tx, agent.org_id, run_id)? else {
        return Err(no_such_run(run_id));
    };
    if st.holder.as_deref() != Some(agent.id.as_str()) {
        return Err(no_such_run(run_id));
    }
    match st.status.as_str() {
        "running" => {}
        "lost" => {
            return Err(Error::Conflict(format!(
                "run {run_id} is lost (its lease lapsed); its output is refused"
            )));
        }
        // Finished by this agent: only a late retry of what it said it made.
        _ => {
            let limit = st.final_seq.unwrap_or(0);
            if let Some(c) = chunks.iter().find(|c| c.seq >= limit) {
                return Err(Error::Conflict(format!(
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
        insert_chunk(tx, &mut st, chunk, max_log, run_id)?;
    }
    // Advance the contiguous prefix over what is now stored.
    let next = store::logs::first_gap(tx, st.n, st.next_seq)?;
    store::logs::save_state(tx, st.n, st.bytes, st.truncated, next)?;
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
    tx: &Tx<'_>,
    st: &mut LogState,
    chunk: &LogChunk,
    max_log: u64,
    run_id: &str,
) -> Result<(), Error> {
    let len = chunk.data.0.len() as u64;
    if let Some(existing) = store::logs::chunk(tx, st.n, chunk.seq)? {
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
        store::logs::insert_chunk(tx, st.n, chunk.seq, StreamKind::System, marker.as_bytes())?;
        // Chunks that arrived early, past the cut, are dropped as well, so the
        // marker is the last thing in the log.
        let dropped = store::logs::drop_after(tx, st.n, chunk.seq)?;
        st.bytes -= dropped.min(st.bytes);
        st.truncated = true;
        return Ok(());
    }
    store::logs::insert_chunk(tx, st.n, chunk.seq, chunk.stream, &chunk.data.0)?;
    st.bytes += len;
    Ok(())
}

/// A page of a run's output and where the run stands.
#[derive(Debug)]
pub struct Page {
    /// The chunks, in order.
    pub chunks: Vec<LogChunk>,
    /// The first `seq` after them.
    pub next_seq: u64,
    /// The run's status.
    pub status: RunStatus,
    /// Set once the run has ended and `chunks` reaches the end of its output.
    pub end: Option<RunEnd>,
}

/// Chunks with `seq >= from`. While the run is live, only the gap-free prefix
/// is served (a follower must never skip a chunk that arrives late); once it
/// has ended, everything stored is.
pub(crate) fn page(tx: &Tx<'_>, org_id: i64, run_id: &str, from: u64) -> Result<Page, Error> {
    let mut parsed = None;
    let read = store::logs::page(
        tx,
        org_id,
        run_id,
        from,
        |head| {
            let status = RunStatus::parse(&head.status);
            parsed = Some(status);
            match status {
                Some(s) if s.is_terminal() => u64::MAX >> 1,
                _ => head.contiguous,
            }
        },
        PageLimits {
            chunks: PAGE_CHUNKS,
            bytes: PAGE_BYTES,
        },
    )?;
    let Some((head, chunks, complete)) = read else {
        return Err(no_such_run(run_id));
    };
    let status = parsed.flatten().ok_or_else(|| {
        Error::internal(format_args!("run {run_id} has status {:?}", head.status))
    })?;
    let next_seq = chunks.last().map_or(from, |c| c.seq + 1);
    let end = (status.is_terminal() && complete).then_some(RunEnd {
        status,
        exit_code: head.exit_code,
        error: head.error,
    });
    Ok(Page {
        chunks,
        next_seq,
        status,
        end,
    })
}
