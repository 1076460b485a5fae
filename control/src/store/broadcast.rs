//! Hints between the replicas of one PostgreSQL database, over
//! `LISTEN`/`NOTIFY`: a run was queued (wake a long poll), a run changed
//! (wake a follower), cached credentials or Slack keys are stale.
//!
//! Hints are never the truth, only a cue to read it: whoever is woken reads
//! the database. A lost hint costs latency (a long poll ends at its
//! timeout; a cache entry at its TTL), never a wrong answer; and after the
//! listening connection is (re)established every hint is assumed missed
//! ([`Heard::Missed`]). On SQLite there is one process and nothing to send.

use super::pg::DatabaseUrl;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// The channel every replica listens on.
const CHANNEL: &str = "sealrun_hints";
/// The longest payload `NOTIFY` takes is 8000 bytes; hints are far shorter.
const MAX_HINT: usize = 1000;
/// Wait before reconnecting a lost listener.
const RECONNECT: Duration = Duration::from_secs(1);

/// What the listener heard.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heard<'a> {
    /// Another replica's hint.
    Hint(&'a str),
    /// The listener was (re)connected: hints may have been missed.
    Missed,
    /// The listener lost its connection: until it is back, nothing is
    /// heard (caches should not be trusted).
    Deaf,
}

/// Sends this replica's hints to the others; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Broadcast {
    origin: String,
    outgoing: mpsc::UnboundedSender<String>,
}

impl Broadcast {
    /// Sends `hint` (best effort: a hint that cannot be sent is a hint
    /// lost, see the module documentation). Callable from any thread.
    pub(crate) fn send(&self, hint: &str) {
        if hint.len() <= MAX_HINT {
            let _ = self.outgoing.send(format!("{}:{hint}", self.origin));
        }
    }
}

/// The receiving side, run by [`Listener::run`] on the server's runtime.
pub(crate) struct Listener {
    url: DatabaseUrl,
    origin: String,
    outgoing: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A broadcast and its listener for the database at `url`.
pub(crate) fn channel(url: &DatabaseUrl) -> (Broadcast, Listener) {
    let origin = format!("{:016x}", rand::random::<u64>());
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Broadcast {
            origin: origin.clone(),
            outgoing: tx,
        },
        Listener {
            url: url.clone(),
            origin,
            outgoing: Mutex::new(Some(rx)),
        },
    )
}

impl Listener {
    /// Listens for the other replicas' hints and sends this one's, calling
    /// `heard` with each, until the returned future is dropped. Reconnects
    /// by itself. Runs once: a second call returns at once.
    pub(crate) async fn run(&self, heard: impl Fn(Heard<'_>)) {
        let Some(mut outgoing) = self.outgoing.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        loop {
            if let Err(e) = self.session(&mut outgoing, &heard).await {
                tracing::warn!(error = %e, "the replicas' hint channel was lost; reconnecting");
            }
            heard(Heard::Deaf);
            tokio::time::sleep(RECONNECT).await;
        }
    }

    /// One connection's life: `LISTEN`, then relay both ways until it fails.
    async fn session(
        &self,
        outgoing: &mut mpsc::UnboundedReceiver<String>,
        heard: &impl Fn(Heard<'_>),
    ) -> Result<(), tokio_postgres::Error> {
        use futures_util::StreamExt as _;
        let (client, mut connection) = self.url.config().connect(tokio_postgres::NoTls).await?;
        let (messages_tx, mut messages) = mpsc::unbounded_channel();
        // The connection yields notifications only when polled for messages.
        let pump = tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = stream.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if messages_tx.send(Ok(n.payload().to_owned())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = messages_tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let _stop_pump = AbortOnDrop(pump);
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        heard(Heard::Missed);
        loop {
            tokio::select! {
                message = messages.recv() => match message {
                    Some(Ok(payload)) => match payload.split_once(':') {
                        Some((origin, hint)) if origin != self.origin => heard(Heard::Hint(hint)),
                        _ => {} // this replica's own, or not a hint
                    },
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                },
                hint = outgoing.recv() => {
                    let Some(hint) = hint else { return Ok(()) };
                    client
                        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &hint])
                        .await?;
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
