//! A run's output followed as it is written: the one loop behind
//! `GET /v1/runs/{id}/logs?follow=true` (NDJSON) and the console's live log
//! (server-sent events). Each adapter only encodes what this yields.

use crate::error::ApiError;
use crate::state::AppState;
use sealrun_control::{Member, Page, RunWatch, User};
use sealrun_wire::log::LogEvent;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A followed log with no news yields [`Followed::KeepAlive`] this often, so
/// idle connections are not cut by proxies.
const FOLLOW_KEEPALIVE: Duration = Duration::from_secs(15);

/// What a followed log yields next.
#[derive(Debug)]
pub(crate) enum Followed {
    /// Chunks, in order, ending with [`LogEvent::End`] once the run has
    /// ended and all of its output was sent (the last item then).
    Events(Vec<LogEvent>),
    /// Nothing new for a while: send something that clients skip.
    KeepAlive,
}

/// A log being followed.
pub(crate) struct Follow {
    state: AppState,
    /// Resolves once the follower's token (or console session) is revoked or
    /// expires.
    revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
    who: Member,
    run_id: String,
    watch: RunWatch,
    /// First `seq` not yet yielded.
    next: u64,
    pending: Option<Page>,
    done: bool,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("run_id", &self.run_id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Follow {
    /// Starts following run `id`'s output from `after`, as `user`: refused
    /// as reading the log is (permission, unknown run).
    pub(crate) async fn start(
        state: AppState,
        user: User,
        id: String,
        after: u64,
    ) -> Result<Follow, ApiError> {
        let who = Member::from(&user);
        // Subscribe before the first read, so nothing written in between is missed.
        let watch = state.control.watch_run(&who, &id)?;
        let first = state.control.log_page(&who, id.clone(), after).await?;
        let revoked = {
            let control = Arc::clone(&state.control);
            Box::pin(async move { control.revoked(&user).await })
        };
        Ok(Follow {
            state,
            revoked,
            who,
            run_id: id,
            watch,
            next: after,
            pending: Some(first),
            done: false,
        })
    }

    /// The next piece of the log; `None` ends it (the run ended, the
    /// credential was revoked, the server is shutting down, or a read failed:
    /// the client reconnects from the last `seq` it saw, and nothing is
    /// lost).
    pub(crate) async fn next(&mut self) -> Option<Followed> {
        if self.done {
            return None;
        }
        loop {
            // Also between pages, for a run whose output never pauses.
            if futures_util::FutureExt::now_or_never(&mut self.revoked).is_some() {
                self.done = true;
                return None;
            }
            let page = match self.pending.take() {
                Some(p) => p,
                None => {
                    let page = self
                        .state
                        .control
                        .log_page(&self.who, self.run_id.clone(), self.next)
                        .await;
                    match page {
                        Ok(p) => p,
                        Err(_) => return None,
                    }
                }
            };
            let mut events: Vec<LogEvent> = page.chunks.into_iter().map(LogEvent::Chunk).collect();
            self.next = page.next_seq;
            if let Some(end) = page.end {
                events.push(LogEvent::End(end));
                self.done = true;
                return Some(Followed::Events(events));
            }
            if !events.is_empty() {
                return Some(Followed::Events(events));
            }
            tokio::select! {
                () = self.watch.changed() => {}
                () = tokio::time::sleep(FOLLOW_KEEPALIVE) => return Some(Followed::KeepAlive),
                () = self.state.control.shutting_down() => return None,
                // Ended without an `end` event: the client's reconnect is
                // refused (401), which is how it learns why.
                () = &mut self.revoked => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}
