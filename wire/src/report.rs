//! What an agent says of a run it ran, signed with a key only the target's
//! agents hold ([`RunReport`]), so that the control plane, which stores and
//! shows run results, cannot change one unnoticed.
//!
//! The key is derived from the target's own secret key
//! ([`report_key`]); an admin certifies its public half with the target's
//! key (`TargetCertificate::report_key`), and a client checks a report
//! against that certificate, from admin keys it trusts.
//!
//! ```
//! use sealrun_wire::report::RunReport;
//! use sealrun_wire::trust::SigningKey;
//!
//! let agent = SigningKey::generate();
//! let report = agent.sign(&RunReport {
//!     target: "db".into(), run_id: "run_0123456789abcdef".into(),
//!     status: "failed".into(), exit_code: Some(3),
//!     stdout_redactions: 1, stderr_redactions: 0, log_chunks: 2,
//!     secrets: vec!["PGPASSWORD".into()], nonce: None, finished_at_ms: 1,
//! });
//! let said = report.check_by(&agent.public_key().to_string()).unwrap();
//! assert_eq!(said.exit_code, Some(3));
//! // Another key's report does not count.
//! assert!(report.check_by(&SigningKey::generate().public_key().to_string()).is_err());
//! ```

use crate::trust::{Signed, SigningKey, Statement, TrustError};
use serde::{Deserialize, Serialize};

/// The context a target's report key is derived under from its secret key
/// (`sealrun_vault::TargetKeypair::derive_seed`).
pub const REPORT_KEY_CONTEXT: &str = "sealrun run report key v1";

/// The report key of a target whose derived seed is `seed`.
pub fn report_key(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_seed(seed)
}

/// An agent's account of how a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// Target name.
    pub target: String,
    /// Run id.
    pub run_id: String,
    /// Terminal status, as the API names it (`succeeded`, `failed`...).
    pub status: String,
    /// The command's exit code.
    pub exit_code: Option<i64>,
    /// Masks written in standard output.
    pub stdout_redactions: u64,
    /// Masks written in standard error.
    pub stderr_redactions: u64,
    /// Log chunks it produced.
    pub log_chunks: u64,
    /// Names of the secrets it opened for the run.
    pub secrets: Vec<String>,
    /// The signed run's nonce, if it was signed or stated.
    pub nonce: Option<String>,
    /// Unix milliseconds it ended.
    pub finished_at_ms: i64,
}

impl Statement for RunReport {
    const KIND: &'static str = "run report";
    const CONTEXT: &'static [u8] = b"sealrun run report v1\n";
}

impl Signed<RunReport> {
    /// The report, if `key` (`ed25519:...`, a certified report key)
    /// signed it.
    pub fn check_by(&self, key: &str) -> Result<RunReport, TrustError> {
        let (report, signer) = self.open()?;
        if signer.to_string() != key {
            return Err(TrustError::Mismatch {
                statement: RunReport::KIND,
                what: "signer",
                found: signer.fingerprint(),
                expected: key.to_owned(),
            });
        }
        Ok(report)
    }
}

/// How a run ended as a record states it (the agent's request, the run the
/// control plane shows, an audit entry), to hold against the agent's
/// report: the one comparison every reader of a report makes.
#[derive(Clone, Copy, Debug)]
pub struct Ended<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// Target name, if the record names it.
    pub target: Option<&'a str>,
    /// Terminal status, as the API names it.
    pub status: &'a str,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Masks in standard output and standard error, if recorded.
    pub redactions: Option<(u64, u64)>,
}

/// One field a record states otherwise than the report: what, as signed,
/// as recorded.
pub type Difference = (&'static str, String, String);

impl RunReport {
    /// Every field `ended` states otherwise than this report.
    pub fn differences(&self, ended: &Ended<'_>) -> Vec<Difference> {
        let code = |c: Option<i64>| c.map_or_else(|| "none".to_owned(), |c| c.to_string());
        let masks = |m: Option<(u64, u64)>| {
            m.map_or_else(|| "none".to_owned(), |(o, e)| format!("{o}/{e}"))
        };
        let signed_masks = Some((self.stdout_redactions, self.stderr_redactions));
        let mut out = Vec::new();
        if self.run_id != ended.run_id {
            out.push(("run", self.run_id.clone(), ended.run_id.to_owned()));
        }
        if let Some(target) = ended.target.filter(|t| *t != self.target) {
            out.push(("target", self.target.clone(), target.to_owned()));
        }
        if self.status != ended.status {
            out.push(("status", self.status.clone(), ended.status.to_owned()));
        }
        if self.exit_code != ended.exit_code {
            out.push(("exit code", code(self.exit_code), code(ended.exit_code)));
        }
        if signed_masks != ended.redactions {
            out.push((
                "masks (stdout/stderr)",
                masks(signed_masks),
                masks(ended.redactions),
            ));
        }
        out
    }
}
