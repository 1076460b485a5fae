//! Readiness: whether the control plane can serve both reads and writes now,
//! for `/health`. A store that can no longer write (a full or read-only disk,
//! a failing fsync) makes the control plane not ready, even though reads
//! still answer: every state change would fail.

use crate::error::Error;
use crate::service::Control;
use crate::store::{self, now_ms};

impl Control {
    /// `Ok` when the database answers a read, takes a write now (a probe
    /// row, rewritten through the writer, committed and made durable like
    /// any change), and has made every write durable since its latest
    /// failure. Each call writes: callers that may be called often (an
    /// unauthenticated `/health`) should not call it more than about once
    /// a second.
    pub async fn ready(&self) -> Result<(), Error> {
        let not_ready = |e: Error| Error::Unavailable(format!("not ready: {e}"));
        self.health().await.map_err(not_ready)?;
        self.db
            .write(|tx| store::health::probe(tx, now_ms()))
            .await
            .map_err(not_ready)?;
        if self.db.writable_since().is_none() {
            return Err(not_ready(Error::Unavailable(
                "the control plane's storage could not make its latest writes durable".into(),
            )));
        }
        Ok(())
    }
}
