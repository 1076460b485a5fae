//! Redacted output: uploaded by agents in sequenced chunks, read by users.

use crate::bytes::Base64Bytes;
use crate::run::RunStatus;
use serde::{Deserialize, Serialize};

/// Which stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
    /// Messages from sealrun itself (truncation marker, agent notices).
    System,
}

impl StreamKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
            StreamKind::System => "system",
        }
    }
}

/// One chunk of already-redacted output.
///
/// `seq` starts at 0 and increases by one per chunk of a run, across both
/// streams, so that order is total and gaps are detectable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Per-run sequence number.
    pub seq: u64,
    /// Source stream.
    pub stream: StreamKind,
    /// Redacted bytes.
    pub data: Base64Bytes,
}

/// `POST /v1/agent/runs/{id}/logs`: a batch of chunks, in `seq` order.
/// Idempotent: a chunk whose `seq` is already stored is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogUpload {
    /// The chunks.
    pub chunks: Vec<LogChunk>,
}

/// Answer to a log upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogUploadAck {
    /// Every chunk with `seq < next_seq` is stored (no gaps).
    pub next_seq: u64,
    /// Whether the per-run cap was hit; later chunks are dropped.
    pub truncated: bool,
    /// Whether a user asked to cancel the run (a faster path than heartbeats).
    pub cancel: bool,
}

/// `GET /v1/runs/{id}/logs`: stored chunks with `seq >= after`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// The chunks, in order.
    pub chunks: Vec<LogChunk>,
    /// Pass as `after` to continue.
    pub next_seq: u64,
    /// The run's status when the page was read.
    pub status: RunStatus,
}

/// One line of `GET /v1/runs/{id}/logs?follow=true` (newline-delimited JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEvent {
    /// A chunk of output.
    Chunk(LogChunk),
    /// The run reached a terminal state; no more lines follow.
    End(RunEnd),
}

/// How a run ended, as sent at the end of a followed log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEnd {
    /// Terminal status.
    pub status: RunStatus,
    /// Exit code, when the command exited.
    pub exit_code: Option<i64>,
    /// Error text, if any.
    pub error: Option<String>,
}
