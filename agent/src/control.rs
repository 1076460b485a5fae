//! Run control: why a run is being stopped, and the handle through which the
//! rest of the agent (heartbeats, the uploader, shutdown) asks for it.
//!
//! This module depends on nothing else in the agent, so that the executor, the
//! uploader and the daemon can all use it without importing one another.
//!
//! There is one stop type, [`Stop`], for both what is requested from outside a
//! run and what the executor itself decides (a timeout). Its precedence is its
//! derived [`Ord`]: variants are declared from weakest to strongest, and a later
//! variant always wins over an earlier one. Two stops of the same variant never
//! replace each other: the first reason given is the one reported.

use std::sync::Arc;
use tokio::sync::watch;

/// Why a run is stopped, from the weakest reason to the strongest.
///
/// **The declaration order is the precedence** (the derived `Ord`): do not
/// reorder the variants without meaning to change which reason a run reports.
/// Use [`Stop::outranks`] to decide whether one stop replaces another; it
/// compares variants only, never the message of [`Stop::Fail`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// A user canceled: SIGTERM, then SIGKILL after the grace period; `canceled`.
    Cancel,
    /// The run's timeout passed (decided by the executor, never requested from
    /// outside): SIGTERM, then SIGKILL after the grace period; `timed_out`.
    /// Cancel and timeout are both polite stops: the executor acts on whichever
    /// comes first and ignores the other.
    Timeout,
    /// The agent is shutting down and the grace period is over: SIGKILL; `error`.
    Shutdown,
    /// The agent cannot carry on with the run (e.g. its log upload was refused,
    /// or its output stream broke): SIGKILL; `error` with this message.
    Fail(String),
    /// The run is no longer this agent's (lease lapsed, or the agent gives up):
    /// SIGKILL, remove the container, report nothing.
    Abandon,
}

impl Stop {
    /// Whether this is [`Stop::Abandon`].
    pub fn is_abandon(&self) -> bool {
        matches!(self, Stop::Abandon)
    }

    /// Whether `self` replaces `current`: it is of a later variant. A stop of the
    /// same variant does not (the first `Fail` message is kept).
    pub fn outranks(&self, current: &Stop) -> bool {
        std::mem::discriminant(self) != std::mem::discriminant(current) && self > current
    }

    /// The stronger of `current` and `new`, by [`Stop::outranks`].
    pub fn escalate(current: Option<Stop>, new: Stop) -> Option<Stop> {
        match current {
            Some(c) if !new.outranks(&c) => Some(c),
            _ => Some(new),
        }
    }
}

/// Predicate for [`watch::Receiver::wait_for`] on [`RunControl::subscribe`]:
/// the run is abandoned.
pub fn is_abandoned(stop: &Option<Stop>) -> bool {
    stop.as_ref().is_some_and(Stop::is_abandon)
}

/// The handle through which the agent (heartbeats, uploads, shutdown) stops a
/// run. Clones share one state. Requests only escalate (see [`Stop`]).
#[derive(Clone, Debug)]
pub struct RunControl {
    tx: Arc<watch::Sender<Option<Stop>>>,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl::new()
    }
}

impl RunControl {
    /// A control with no stop requested.
    pub fn new() -> RunControl {
        let (tx, _) = watch::channel(None);
        RunControl { tx: Arc::new(tx) }
    }

    /// Raises `request` unless a request of the same or a stronger variant is
    /// already made.
    pub fn request(&self, request: Stop) {
        self.tx.send_if_modified(|current| {
            let raise = current.as_ref().is_none_or(|c| request.outranks(c));
            if raise {
                *current = Some(request);
            }
            raise
        });
    }

    /// The strongest request made so far; `None` while the run may go on.
    pub fn current(&self) -> Option<Stop> {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every escalation.
    pub fn subscribe(&self) -> watch::Receiver<Option<Stop>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_requests_only_escalate() {
        let c = RunControl::new();
        c.request(Stop::Shutdown);
        c.request(Stop::Cancel);
        assert_eq!(c.current(), Some(Stop::Shutdown));
        c.request(Stop::Abandon);
        c.request(Stop::Fail("x".into()));
        assert_eq!(c.current(), Some(Stop::Abandon));
    }

    #[test]
    fn the_declaration_order_is_the_precedence() {
        let order = [
            Stop::Cancel,
            Stop::Timeout,
            Stop::Shutdown,
            Stop::Fail("x".into()),
            Stop::Abandon,
        ];
        for pair in order.windows(2) {
            assert!(pair[1].outranks(&pair[0]), "{pair:?}");
            assert!(!pair[0].outranks(&pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn the_first_failure_message_is_kept() {
        let c = RunControl::new();
        c.request(Stop::Fail("b: first".into()));
        c.request(Stop::Fail("a: second".into()));
        assert_eq!(c.current(), Some(Stop::Fail("b: first".into())));
        assert_eq!(
            Stop::escalate(Some(Stop::Fail("z".into())), Stop::Fail("a".into())),
            Some(Stop::Fail("z".into()))
        );
    }

    #[test]
    fn a_stop_does_not_replace_one_of_its_own_variant() {
        assert_eq!(
            Stop::escalate(Some(Stop::Cancel), Stop::Cancel),
            Some(Stop::Cancel)
        );
        assert_eq!(Stop::escalate(None, Stop::Cancel), Some(Stop::Cancel));
        assert_eq!(
            Stop::escalate(Some(Stop::Timeout), Stop::Shutdown),
            Some(Stop::Shutdown)
        );
    }

    #[test]
    fn subscribers_see_an_abandonment() {
        let c = RunControl::new();
        let rx = c.subscribe();
        assert!(!is_abandoned(&rx.borrow()));
        c.request(Stop::Abandon);
        assert!(is_abandoned(&rx.borrow()));
    }
}
