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
