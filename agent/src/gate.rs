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
//! before is refused. A target or runbook certificate older than the newest
//! one the agent ran a run under is refused too: an admin who tightens a
//! target's policy or a runbook's rules and certifies it again is not
//! undone by a control plane relaying the old certificate. Whatever the
//! control plane says.
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
    /// The target's or runbook's certificate is older than one the agent
    /// already ran a run under.
    #[error(
        "the certificate of {what} (issued at {shown} ms) is older than one this agent already ran under (issued at {seen} ms): the control plane is relaying a superseded declaration"
    )]
    Superseded {
        /// `target NAME` or `runbook NAME`.
        what: String,
        /// When the newest one seen was issued.
        seen: i64,
        /// When the one shown was issued.
        shown: i64,
    },
    /// The nonce could not be recorded (so the run must not start).
    #[error("cannot record the run's nonce: {0}")]
    State(#[from] StateError),
}

/// Fewest nonce lines appended before the file is compacted.
const COMPACT_AFTER: usize = 1024;

/// The check, with what it remembers.
#[derive(Debug)]
pub struct Gate {
    trusted: Vec<SignerKey>,
    seen: HashMap<String, i64>,
    /// Nonce lines appended since the file last held only live ones. Once
    /// they are as many as the live nonces (and at least `compact_after`),
    /// the expired ones are dropped from memory and the file rewritten: the
    /// file stays within twice what a restart must refuse, and the pruning
    /// costs O(1) a run, amortized.
    appended: usize,
    compact_after: usize,
    /// Per target (by name) and runbook (`runbook:NAME`; no target name
    /// has a colon), when the newest certificate run under was issued.
    certified: HashMap<String, i64>,
    state: StateDir,
}

impl Gate {
    /// A gate trusting `trusted`, remembering the nonces a previous process
    /// of this agent recorded in `state`.
    pub fn load(trusted: Vec<SignerKey>, state: StateDir, now_ms: i64) -> Result<Gate, StateError> {
        Ok(Gate {
            trusted,
            seen: state.load_nonces(now_ms)?,
            appended: 0,
            compact_after: COMPACT_AFTER,
            certified: state.load_certified()?,
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
        let mut shown = vec![(
            assignment.target.clone(),
            format!("target {}", assignment.target),
            ok.target_certified_at_ms,
        )];
        if let Some((name, issued)) = &ok.runbook_certified {
            shown.push((
                format!("runbook:{name}"),
                format!("runbook {name}"),
                *issued,
            ));
        }
        let mut newer = false;
        for (key, what, issued) in &shown {
            match self.certified.get(key).copied() {
                Some(seen) if *issued < seen => {
                    return Err(Refused::Superseded {
                        what: what.clone(),
                        seen,
                        shown: *issued,
                    });
                }
                Some(seen) if *issued == seen => {}
                _ => newer = true,
            }
        }
        if newer {
            for (key, _, issued) in shown {
                self.certified.insert(key, issued);
            }
            self.state.store_certified(&self.certified)?;
        }
        if self.appended >= self.seen.len().max(self.compact_after) {
            self.seen.retain(|_, expires| *expires >= now_ms);
            self.state.store_nonces(&self.seen)?;
            self.appended = 0;
        }
        self.state.append_nonce(&ok.nonce, ok.expires_at_ms)?;
        self.appended += 1;
        tracing::info!(
            run = %assignment.run_id,
            submitter = %ok.submitter,
            signed = ok.signed,
            approvers = ?ok.approvers,
            break_glass = ok.break_glass,
            "run authorized by its signatures"
        );
        self.seen.insert(ok.nonce, ok.expires_at_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sealrun_wire::authority::{Authority, Mandate, RunIntent};
    use sealrun_wire::role::Role;
    use sealrun_wire::run::RunbookCall;
    use sealrun_wire::runbook::RunbookCertificate;
    use sealrun_wire::target::TargetSpec;
    use sealrun_wire::trust::{SigningKey, TargetCertificate, UserCertificate};

    const NOW: i64 = 1_000_000;

    /// An admin, a certified operator, and this agent's key for target `db`.
    struct Org {
        admin: SigningKey,
        alice: SigningKey,
        keypair: TargetKeypair,
        spec: TargetSpec,
    }

    impl Org {
        fn new() -> Org {
            Org {
                admin: SigningKey::generate(),
                alice: SigningKey::generate(),
                keypair: TargetKeypair::generate(),
                spec: serde_json::from_str(r#"{"name": "db", "image": "busybox"}"#).unwrap(),
            }
        }

        /// A run of `echo` signed by alice (nonce `nonce`), under a target
        /// certificate issued at `issued`.
        fn run(&self, nonce: &str, issued: i64) -> Assignment {
            self.run_expiring(nonce, issued, NOW + 1000)
        }

        /// [`Org::run`] whose signature expires at `expires`.
        fn run_expiring(&self, nonce: &str, issued: i64, expires: i64) -> Assignment {
            self.run_of(nonce, issued, expires, None)
        }

        /// A signed run of runbook `hello` (`echo`), certified at
        /// `runbook_issued`, under a target certificate issued at `issued`.
        fn runbook_run(&self, nonce: &str, issued: i64, runbook_issued: i64) -> Assignment {
            self.run_of(nonce, issued, NOW + 1000, Some(runbook_issued))
        }

        fn run_of(
            &self,
            nonce: &str,
            issued: i64,
            expires: i64,
            runbook_issued: Option<i64>,
        ) -> Assignment {
            let intent = RunIntent {
                org: "acme".into(),
                target: "db".into(),
                argv: vec!["echo".into()],
                env: Default::default(),
                secrets: vec![],
                image: "busybox".into(),
                timeout_secs: 3600,
                stdin: false,
                submitter: "alice".into(),
                break_glass: None,
                nonce: nonce.into(),
                issued_at_ms: NOW,
                expires_at_ms: expires,
                runbook: runbook_issued.map(|_| RunbookCall {
                    name: "hello".into(),
                    params: Default::default(),
                }),
            };
            let runbook = runbook_issued.map(|issued_at_ms| {
                self.admin.sign(&RunbookCertificate {
                    org: "acme".into(),
                    runbook: serde_json::from_str(
                        r#"{"name": "hello", "targets": ["db"], "argv": ["echo"]}"#,
                    )
                    .unwrap(),
                    issued_at_ms,
                    expires_at_ms: NOW * 2,
                })
            });
            let authority = Authority {
                target: Some(self.admin.sign(&TargetCertificate {
                    org: "acme".into(),
                    target: "db".into(),
                    public_key: self.keypair.public_key().to_base64(),
                    key_id: self.keypair.key_id().0,
                    spec: self.spec.clone(),
                    report_key: None,
                    issued_at_ms: issued,
                    expires_at_ms: NOW * 2,
                })),
                runbook,
                mandate: Mandate::Submitter {
                    run: self.alice.sign(&intent),
                    certificate: self.admin.sign(&UserCertificate {
                        org: "acme".into(),
                        user: "alice".into(),
                        role: Role::Operator,
                        groups: vec![],
                        public_key: self.alice.public_key().to_string(),
                        passkeys: Vec::new(),
                        issued_at_ms: 0,
                        expires_at_ms: NOW * 2,
                    }),
                },
                approvals: vec![],
            };
            Assignment {
                run_id: format!("run_{nonce}"),
                target: "db".into(),
                image: "busybox".into(),
                allowed_images: vec!["busybox".into()],
                argv: intent.argv,
                env: Default::default(),
                secrets: vec![],
                timeout_secs: 3600,
                limits: self.spec.limits.clone(),
                network: None,
                user: None,
                stdin: false,
                authority: Some(Box::new(authority)),
            }
        }

        fn gate(&self, dir: &std::path::Path) -> Gate {
            let state = StateDir::open(dir).unwrap();
            Gate::load(vec![self.admin.public_key()], state, NOW).unwrap()
        }
    }

    #[test]
    fn a_signed_run_is_admitted_once_even_across_a_restart() {
        let org = Org::new();
        let dir = tempfile::tempdir().unwrap();
        let run = org.run("00112233445566778899aabbccddeeff", 10);
        let mut gate = org.gate(dir.path());
        gate.admit(&run, &org.keypair, NOW).unwrap();
        assert!(matches!(
            gate.admit(&run, &org.keypair, NOW),
            Err(Refused::Replayed(_))
        ));
        drop(gate);
        let mut restarted = org.gate(dir.path());
        assert!(matches!(
            restarted.admit(&run, &org.keypair, NOW),
            Err(Refused::Replayed(_))
        ));
        // Positive control: another signed run goes through.
        let other = org.run("ffeeddccbbaa99887766554433221100", 10);
        restarted.admit(&other, &org.keypair, NOW).unwrap();
    }

    #[test]
    fn a_target_certificate_older_than_one_already_run_under_is_refused_even_across_a_restart() {
        let org = Org::new();
        let dir = tempfile::tempdir().unwrap();
        let mut gate = org.gate(dir.path());
        gate.admit(&org.run("0000000000000001", 20), &org.keypair, NOW)
            .unwrap();
        drop(gate);
        let mut gate = org.gate(dir.path());
        let refused = gate
            .admit(&org.run("0000000000000002", 10), &org.keypair, NOW)
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Refused::Superseded {
                    seen: 20,
                    shown: 10,
                    ..
                }
            ),
            "{refused}"
        );
        // Positive control: the same certificate, and a newer one, count.
        gate.admit(&org.run("0000000000000003", 20), &org.keypair, NOW)
            .unwrap();
        gate.admit(&org.run("0000000000000004", 30), &org.keypair, NOW)
            .unwrap();
    }

    #[test]
    fn a_runbook_certificate_older_than_one_a_run_ran_under_is_refused() {
        let org = Org::new();
        let dir = tempfile::tempdir().unwrap();
        let mut gate = org.gate(dir.path());
        gate.admit(
            &org.runbook_run("0000000000000011", 20, 50),
            &org.keypair,
            NOW,
        )
        .unwrap();
        drop(gate);
        // After a restart too: the control plane relays the runbook's
        // older (say, looser) definition.
        let mut gate = org.gate(dir.path());
        let refused = gate
            .admit(
                &org.runbook_run("0000000000000012", 20, 40),
                &org.keypair,
                NOW,
            )
            .unwrap_err();
        assert!(
            matches!(&refused, Refused::Superseded { what, seen: 50, shown: 40 } if what == "runbook hello"),
            "{refused}"
        );
        // Positive control: the same definition counts.
        gate.admit(
            &org.runbook_run("0000000000000013", 20, 50),
            &org.keypair,
            NOW,
        )
        .unwrap();
    }

    #[test]
    fn the_nonce_file_is_compacted_to_the_live_nonces_which_are_still_refused() {
        let org = Org::new();
        let dir = tempfile::tempdir().unwrap();
        let mut gate = org.gate(dir.path());
        gate.compact_after = 4;
        for i in 0..3 {
            let run = org.run_expiring(&format!("{i:016x}"), 10, NOW + 1);
            gate.admit(&run, &org.keypair, NOW).unwrap();
        }
        let live = org.run_expiring("00000000000000aa", 10, NOW + 1000);
        gate.admit(&live, &org.keypair, NOW).unwrap();
        let file = dir.path().join(crate::state::NONCES_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 4);
        // The three short-lived nonces have expired: the fifth run's record
        // compacts the file to the live one and its own.
        let later = NOW + 2;
        let next = org.run_expiring("00000000000000bb", 10, NOW + 1000);
        gate.admit(&next, &org.keypair, later).unwrap();
        let kept = std::fs::read_to_string(&file).unwrap();
        assert_eq!(kept.lines().count(), 2, "{kept}");
        assert!(kept.contains("00000000000000aa") && kept.contains("00000000000000bb"));
        // The live nonce is still refused, by this process and the next.
        assert!(matches!(
            gate.admit(&live, &org.keypair, later),
            Err(Refused::Replayed(_))
        ));
        drop(gate);
        assert!(matches!(
            org.gate(dir.path()).admit(&live, &org.keypair, later),
            Err(Refused::Replayed(_))
        ));
    }

    #[test]
    fn an_unsigned_run_is_refused() {
        let org = Org::new();
        let dir = tempfile::tempdir().unwrap();
        let mut run = org.run("0000000000000005", 10);
        run.authority = None;
        assert!(matches!(
            org.gate(dir.path()).admit(&run, &org.keypair, NOW),
            Err(Refused::Unauthorized(Refusal::Unsigned))
        ));
    }
}
