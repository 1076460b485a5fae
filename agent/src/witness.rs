//! The agent as a witness of the control plane's audit history.
//!
//! The audit chain alone catches an edit only if nobody recomputes the
//! hashes after it; whoever can write the database can. So every agent
//! remembers the last link of its org's chain it saw (in its state
//! directory, across restarts), and before it polls for work, and again
//! before it runs what it was handed, it asks for the chain from that link
//! on and checks that it extends what it saw
//! ([`sealrun_wire::audit::witness`]). A rewritten or cut history makes the
//! agent refuse the run in hand, report it, and stop taking work: it exits
//! with [`crate::Error::AuditRewritten`], loudly, and stays refused on
//! restart (it still remembers the link), until an operator looks.

use crate::client::{CallError, ControlPlane};
use crate::state::{StateDir, StateError};
use sealrun_wire::agent::AuditLinksRequest;
use sealrun_wire::audit::{AuditLink, WitnessError, witness};

/// Why a check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// History changed since the agent saw it: fatal.
    #[error(transparent)]
    Rewritten(#[from] WitnessError),
    /// The chain could not be read (retry; no work meanwhile).
    #[error("cannot read the audit chain: {0}")]
    Call(#[from] CallError),
    /// The remembered link cannot be stored.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What the agent saw of its org's audit chain.
#[derive(Debug)]
pub struct Witness {
    seen: Option<AuditLink>,
    state: StateDir,
}

impl Witness {
    /// The witness, remembering what a previous process of this agent saw.
    pub fn load(state: StateDir) -> Result<Witness, StateError> {
        Ok(Witness {
            seen: state.load_audit_head()?,
            state,
        })
    }

    /// The last link it saw.
    pub fn seen(&self) -> Option<&AuditLink> {
        self.seen.as_ref()
    }

    /// Reads the chain from the remembered link on and checks that it
    /// extends it; remembers the new last link.
    pub async fn check(&mut self, client: &ControlPlane) -> Result<(), CheckError> {
        let before = self.seen.clone();
        loop {
            let from_seq = self.seen.as_ref().map_or(0, |s| s.seq);
            let shown = client.audit_links(&AuditLinksRequest { from_seq }).await?;
            let next = witness(self.seen.as_ref(), &shown.links, shown.head_seq)?;
            let advanced = next.as_ref().map(|l| l.seq) != self.seen.as_ref().map(|l| l.seq);
            self.seen = next;
            let caught_up = self.seen.as_ref().map_or(0, |l| l.seq) >= shown.head_seq;
            if caught_up || !advanced {
                break;
            }
        }
        if self.seen != before {
            if let Some(head) = &self.seen {
                self.state.store_audit_head(head)?;
            }
        }
        Ok(())
    }
}
