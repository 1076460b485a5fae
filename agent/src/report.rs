//! The agent's signed account of how a run ended
//! ([`sealrun_wire::report::RunReport`]), signed with the target's report
//! key: derived from the target's secret key, so only the target's agents
//! hold it, and certified with that key by an admin (`sealrun target
//! trust`). The control plane stores and shows run results; with the
//! report, a client can tell whether the one it shows is the agent's.

use sealrun_vault::TargetKeypair;
use sealrun_wire::agent::FinishRequest;
use sealrun_wire::report::{REPORT_KEY_CONTEXT, RunReport, report_key};
use sealrun_wire::trust::{Signed, SigningKey};

/// The target's report key.
pub fn key(keypair: &TargetKeypair) -> SigningKey {
    report_key(&keypair.derive_seed(REPORT_KEY_CONTEXT))
}

/// What the agent knows of a run before it ends, for its report.
#[derive(Clone, Debug)]
pub struct Subject {
    /// Target name.
    pub target: String,
    /// Run id.
    pub run_id: String,
    /// Names of the secrets the run was given (reported as opened only if
    /// the agent let it start).
    pub secrets: Vec<String>,
    /// The run's nonce, if it carried an intent.
    pub nonce: Option<String>,
}

/// `finish`, signed with `key` as the report of `subject`; `started`: the
/// agent let the run start (so it opened its secrets).
pub fn sign(
    key: &SigningKey,
    subject: &Subject,
    finish: &FinishRequest,
    started: bool,
    now_ms: i64,
) -> Signed<RunReport> {
    key.sign(&RunReport {
        target: subject.target.clone(),
        run_id: subject.run_id.clone(),
        status: finish.status.as_str().to_owned(),
        exit_code: finish.exit_code,
        stdout_redactions: finish.redactions.stdout,
        stderr_redactions: finish.redactions.stderr,
        log_chunks: finish.next_seq,
        secrets: if started {
            subject.secrets.clone()
        } else {
            Vec::new()
        },
        nonce: subject.nonce.clone(),
        finished_at_ms: now_ms,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_report_key_is_the_targets_own_and_no_other_targets() {
        let a = TargetKeypair::generate();
        let b = TargetKeypair::generate();
        assert_eq!(
            key(&a).public_key(),
            key(&a).public_key(),
            "derived, not random"
        );
        assert_ne!(key(&a).public_key(), key(&b).public_key());
    }
}
