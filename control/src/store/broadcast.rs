//! Hints between the replicas of one PostgreSQL database, over
//! `LISTEN`/`NOTIFY`: a run was queued (wake a long poll), a run changed
//! (wake a follower), cached credentials or Slack keys are stale.
//!
//! Hints are never the truth, only a cue to read it: whoever is woken reads
//! the database. A lost hint costs latency (a long poll ends at its
//! timeout; a cache entry at its TTL), never a wrong answer; and after the
//! listening connection is (re)established every hint is assumed missed
//! ([`Heard::Missed`]). On SQLite there is one process and nothing to send.

use super::pg::Connector;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// The channel every replica listens on.
const CHANNEL: &str = "sealrun_hints";
/// The longest payload `NOTIFY` takes is 8000 bytes; hints are far shorter.
const MAX_HINT: usize = 1000;
/// Hints waiting to be sent go out together, up to this many: one
/// statement, one transaction, one wake-up of each listener, instead of one
/// of each per hint (under load a replica makes hints faster than one round
/// trip each, and PostgreSQL's CPU is what replicas share). Each is still a
/// notification of its own, which replicas of every version read.
const MAX_TOGETHER: usize = 64;
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
    outgoing: mpsc::UnboundedSender<String>,
}

impl Broadcast {
    /// Sends `hint` (best effort: a hint that cannot be sent is a hint
    /// lost, see the module documentation). Callable from any thread.
    pub(crate) fn send(&self, hint: &str) {
        if hint.len() <= MAX_HINT {
            let _ = self.outgoing.send(hint.to_owned());
        }
    }
}

#[cfg(test)]
impl Broadcast {
    /// A broadcast whose hints a test reads from the receiver.
    pub(crate) fn to_test() -> (Broadcast, mpsc::UnboundedReceiver<String>) {
        let (outgoing, sent) = mpsc::unbounded_channel();
        (Broadcast { outgoing }, sent)
    }
}

/// The receiving side, run by [`Listener::run`] on the server's runtime.
pub(crate) struct Listener {
    connector: Connector,
    origin: String,
    outgoing: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("database", &self.connector.location())
            .finish_non_exhaustive()
    }
}

/// A broadcast and its listener for the database `connector` reaches.
pub(crate) fn channel(connector: &Connector) -> (Broadcast, Listener) {
    let origin = format!("{:016x}", rand::random::<u64>());
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Broadcast { outgoing: tx },
        Listener {
            connector: connector.clone(),
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
        // Hints taken off the queue whose sending failed: sent first on the
        // next connection (a hint sent twice costs a look; one lost, a
        // revoked token trusted or a run left waiting).
        let mut unsent = Vec::new();
        loop {
            if let Err(e) = self.session(&mut outgoing, &mut unsent, &heard).await {
                tracing::warn!(error = %super::pg::with_causes(&e), "the replicas' hint channel was lost; reconnecting");
            }
            heard(Heard::Deaf);
            tokio::time::sleep(RECONNECT).await;
        }
    }

    /// One connection's life: `LISTEN`, then relay both ways until it fails.
    async fn session(
        &self,
        outgoing: &mut mpsc::UnboundedReceiver<String>,
        unsent: &mut Vec<String>,
        heard: &impl Fn(Heard<'_>),
    ) -> Result<(), tokio_postgres::Error> {
        use futures_util::StreamExt as _;
        let (client, mut connection) = self.connector.connect_here().await?;
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
        client
            .batch_execute(&format!("{}; LISTEN {CHANNEL}", self.connector.setup()))
            .await?;
        // Said on each (re)connection: that this replica hears the others.
        tracing::info!("the replicas' hint channel is open");
        heard(Heard::Missed);
        if !unsent.is_empty() {
            notify(&client, unsent).await?;
        }
        loop {
            tokio::select! {
                message = messages.recv() => match message {
                    // `origin.n:hint` (`origin:hint` from older replicas).
                    Some(Ok(payload)) => match payload.split_once(':') {
                        Some((from, hint))
                            if from.split_once('.').map_or(from, |(origin, _)| origin)
                                != self.origin =>
                        {
                            heard(Heard::Hint(hint));
                        }
                        _ => {} // this replica's own, or not a hint
                    },
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                },
                hint = outgoing.recv() => {
                    let Some(hint) = hint else { return Ok(()) };
                    *unsent = self.payloads(hint, outgoing);
                    notify(&client, unsent).await?;
                }
            }
        }
    }

    /// The payloads of `first` and of the hints waiting behind it, up to
    /// [`MAX_TOGETHER`], in the order they were sent: `origin.n:hint`, `n`
    /// counting within the statement. The count keeps two equal hints
    /// apart: PostgreSQL delivers equal notifications of one transaction
    /// once, and two runs queued for one target must wake two agents.
    fn payloads(
        &self,
        first: String,
        outgoing: &mut mpsc::UnboundedReceiver<String>,
    ) -> Vec<String> {
        let mut payloads = vec![format!("{}.0:{first}", self.origin)];
        while payloads.len() < MAX_TOGETHER {
            let Ok(hint) = outgoing.try_recv() else { break };
            payloads.push(format!("{}.{}:{hint}", self.origin, payloads.len()));
        }
        payloads
    }
}

/// Sends `payloads`, one notification each, in their order (PostgreSQL
/// delivers a transaction's in the order sent), and empties it; left as
/// they are if the connection was lost meanwhile, for the next one to send.
async fn notify(
    client: &tokio_postgres::Client,
    payloads: &mut Vec<String>,
) -> Result<(), tokio_postgres::Error> {
    let sent = client
        .execute(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
            &[&CHANNEL, &*payloads],
        )
        .await;
    match sent {
        Ok(_) => payloads.clear(),
        // Refused for what they are (a payload too long): sending them
        // again would be refused again, and hold up every hint after them.
        // Anything else (the connection lost, a full queue, a cancel) may
        // pass: they are sent again on the next connection.
        Err(e) if e.code().is_some_and(|c| c.code().starts_with("22")) => {
            tracing::warn!(error = %super::pg::with_causes(&e), hints = payloads.len(), "the database refused hints for the other replicas; they are dropped");
            payloads.clear();
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hints_sent_together_are_each_heard_once_and_in_order_by_another_replica() {
        let dir = tempfile::tempdir().expect("a directory");
        let Some(database) = sealrun_testkit::require_postgres(dir.path()) else {
            return;
        };
        let url = Connector::new(&database.url_text.parse().expect("a URL")).expect("a connector");
        let (sender, sending) = channel(&url);
        // (A listener stops once its replica's sending side is dropped.)
        let (_quiet, listening) = channel(&url);
        let (heard_tx, mut heard) = mpsc::unbounded_channel::<Option<String>>();
        let hear = |h: Heard<'_>| match h {
            Heard::Hint(hint) => {
                let _ = heard_tx.send(Some(hint.to_owned()));
            }
            Heard::Missed => {
                let _ = heard_tx.send(None);
            }
            Heard::Deaf => {}
        };
        // More than go out together, so in several statements; the same
        // hint twice is heard twice (two runs queued, two agents to wake).
        let hints: Vec<String> = ["r:run_0123", "a", "q:7", "q:7", "k"]
            .into_iter()
            .map(str::to_owned)
            .chain((0..2 * MAX_TOGETHER).map(|i| format!("q:{i}")))
            .collect();
        let check = async {
            // Both listen before anything is sent.
            assert_eq!(heard.recv().await, Some(None));
            assert_eq!(heard.recv().await, Some(None));
            for hint in &hints {
                sender.send(hint);
            }
            let mut got = Vec::new();
            while got.len() < hints.len() {
                match heard.recv().await {
                    Some(Some(hint)) => got.push(hint),
                    other => panic!("{other:?} after {got:?}"),
                }
            }
            assert_eq!(got, hints);
        };
        let ran = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::select! {
                () = check => {}
                () = sending.run(&hear) => unreachable!("a listener runs until dropped"),
                () = listening.run(&hear) => unreachable!("a listener runs until dropped"),
            }
        })
        .await;
        database.drop_database();
        ran.expect("every hint heard within 20 s");
    }
}
