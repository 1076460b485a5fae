//! Resolves when the process is asked to stop (SIGINT or SIGTERM).

pub async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        // Without a SIGTERM handler we still stop on Ctrl-C.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The signals that ask a foreground client command (`sealrun run`, a
/// followed log) to stop: SIGINT (Ctrl-C), SIGTERM (a CI job canceled,
/// `timeout(1)`) and SIGHUP (its terminal went away). All three mean the same
/// thing to `sealrun run`: cancel the remote run, then report how it ended.
pub struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Takes over the three signals for this process.
    pub fn new() -> std::io::Result<Interrupts> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next one; its name. Cancel-safe.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted",
            _ = self.term.recv() => "terminated (SIGTERM)",
            _ = self.hup.recv() => "hung up (SIGHUP)",
        }
    }
}
