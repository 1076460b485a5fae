//! The agent's own check of who authorized a run, before anything of it is
//! opened or created.
//!
//! With a trust file (admin public keys, configured on the agent's host:
//! [`crate::AgentConfig::trusted_admins`]), every run must carry the
//! signatures [`sealrun_wire::authority::authorize`] accepts: its
//! submitter's, certified by one of those admins, over exactly what the
//! agent is handed; the target's certificate, for this agent's key, whose
//! declaration and policy the run stays within; and the approvals that
//! policy demands. A signed run runs at most once: its nonce is recorded
//! (synced to the state directory) before it starts, and a nonce seen
//! before is refused. Whatever the control plane says.
//!
//! Without a trust file the agent runs what the control plane hands it,
//! and says so loudly at start.

use crate::state::{StateDir, StateError};
use sealrun_vault::TargetKeypair;
use sealrun_wire::agent::Assignment;
use sealrun_wire::authority::{Refusal, authorize};
use sealrun_wire::trust::SignerKey;
use std::collections::HashMap;

/// Why the gate refuses a run.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The signatures do not authorize it.
    #[error(transparent)]
    Unauthorized(#[from] Refusal),
    /// This agent ran a run with this signature before.
    #[error(
        "replayed: this agent already ran the signed run with nonce {0} (a signed run runs once)"
    )]
    Replayed(String),
    /// The nonce could not be recorded (so the run must not start).
    #[error("cannot record the run's nonce: {0}")]
    State(#[from] StateError),
}

/// The check, with what it remembers.
#[derive(Debug)]
pub struct Gate {
    trusted: Vec<SignerKey>,
    seen: HashMap<String, i64>,
    state: StateDir,
}

impl Gate {
    /// A gate trusting `trusted`, remembering the nonces a previous process
    /// of this agent recorded in `state`.
    pub fn load(trusted: Vec<SignerKey>, state: StateDir, now_ms: i64) -> Result<Gate, StateError> {
        Ok(Gate {
            trusted,
            seen: state.load_nonces(now_ms)?,
            state,
        })
    }

    /// Checks `assignment` (its target's key being `keypair`) and records
    /// its nonce; `Ok` means it may run.
    pub fn admit(
        &mut self,
        assignment: &Assignment,
        keypair: &TargetKeypair,
        now_ms: i64,
    ) -> Result<(), Refused> {
        let Some(authority) = &assignment.authority else {
            return Err(Refusal::Unsigned.into());
        };
        let ok = authorize(
            &assignment.execution(),
            authority,
            &self.trusted,
            &keypair.public_key().to_base64(),
            now_ms,
        )?;
        if self.seen.contains_key(&ok.nonce) {
            return Err(Refused::Replayed(ok.nonce));
        }
        self.seen.retain(|_, expires| *expires >= now_ms);
        self.state.append_nonce(&ok.nonce, ok.expires_at_ms)?;
        tracing::info!(
            run = %assignment.run_id,
            submitter = %ok.submitter,
            approvers = ?ok.approvers,
            break_glass = ok.break_glass,
            "run authorized by its signatures"
        );
        self.seen.insert(ok.nonce, ok.expires_at_ms);
        Ok(())
    }
}
