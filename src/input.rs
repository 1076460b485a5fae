//! A run's input: what `sealrun run` forwards from its own stdin to the
//! command's, as `docker run -i` does.
//!
//! The bytes go to the control plane in one streamed `PUT /v1/runs/{id}/stdin`
//! and from there, never stored, to the agent and the command. Reading is
//! paced by the command: the control plane holds a few chunks at most, so a
//! command that reads slowly slows this reader down.

use crate::client::Client;
use anyhow::Result;
use bytes::Bytes;
use sealrun_wire::run::StdinSent;
use std::fs::File;
use std::io::{IsTerminal as _, Read as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};

/// Bytes read from stdin at a time (one chunk on the wire).
const CHUNK: usize = 64 * 1024;
/// Chunks read ahead of what the control plane has taken.
const AHEAD: usize = 4;

/// Whether this process's stdin can carry input for the command: it is
/// open, not a terminal (no interactive input: the command cannot prompt),
/// and not `/dev/null` (nothing to send; `< /dev/null` and a closed stdin
/// cost no request).
pub fn stdin_has_input() -> bool {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return false;
    }
    let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(ours) = File::from(fd).metadata() else {
        return false;
    };
    let is_null = std::fs::metadata("/dev/null")
        .is_ok_and(|null| ours.file_type().is_char_device() && ours.rdev() == null.rdev());
    !is_null
}

/// Streams this process's stdin to run `id`, until its end; says how much of
/// it reached the run.
///
/// Reads happen on a plain thread rather than the async runtime's blocking
/// pool: a read of a stdin that never ends (a pipe held open) cannot be
/// canceled, and the runtime would wait for it at exit; a thread dies with
/// the process.
pub async fn send(client: &Client, id: &str) -> Result<StdinSent> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(AHEAD);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut buf = vec![0u8; CHUNK];
                let read = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                buf.truncate(read);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    // The request is over: the run does not want more.
                    return;
                }
            }
        })?;
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    client
        .put_stream(&format!("/v1/runs/{}/stdin", crate::cmd::seg(id)), body)
        .await
}
