//! The org's trust root, kept outside the control plane: people's Ed25519
//! signing keys, generated on their own machines, the admin keys each
//! machine trusts, and the statements they sign.
//!
//! The control plane stores and relays signed statements; it cannot make
//! one. Each is a [`Signed`] statement: the compact JSON its signer signed,
//! verbatim, so the bytes a verifier checks are the bytes that were signed
//! (no re-encoding), and a per-kind context ([`Statement::CONTEXT`]) in the
//! signed bytes, so a signature over one kind never verifies as another.
//!
//! - A [`TargetCertificate`], by an admin: this is target T's key, and this
//!   is T's declared spec and policy. The CLI seals secrets only to a
//!   certified key; an agent enforces the certified spec and policy.
//! - A [`UserCertificate`], by an admin: this is user U's signing key, with
//!   this role and these groups, until then.
//! - Runs and approvals, by the people who submit and approve them
//!   ([`crate::authority`]).
//!
//! A statement counts only if its signer is trusted where it is checked:
//! admin keys pinned out of band (`sealrun trust add` on a person's machine,
//! `trust_file` in an agent's configuration), never what the control plane
//! says.
//!
//! ```
//! use sealrun_wire::target::TargetSpec;
//! use sealrun_wire::trust::{SigningKey, TargetCertificate};
//!
//! let admin = SigningKey::generate();
//! let spec: TargetSpec = serde_json::from_str(
//!     r#"{"name": "prod-db", "image": "sealrun/busybox:latest"}"#,
//! ).unwrap();
//! let signed = admin.sign(&TargetCertificate {
//!     org: "acme".into(),
//!     target: "prod-db".into(),
//!     public_key: "hVb0c1Bq3yG6Xw2V2aI4o2hO6o2Rk1xk4Xh2gS2m9lE=".into(),
//!     key_id: "k1_00112233445566778899aabbccddeeff".into(),
//!     spec, report_key: None,
//!     issued_at_ms: 1_700_000_000_000,
//!     expires_at_ms: 1_800_000_000_000,
//! });
//! let trusted = [admin.public_key()];
//! let cert = signed.verify(&trusted).unwrap();
//! assert!(cert.check("acme", "prod-db", 1_750_000_000_000).is_ok());
//! // Another admin's (or the control plane's) key is not trusted here.
//! let other = SigningKey::generate();
//! assert!(signed.verify(&[other.public_key()]).is_err());
//! ```

use crate::role::Role;
use crate::target::TargetSpec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, Verifier as _, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::marker::PhantomData;
use zeroize::Zeroizing;

/// How a public signing key is written: `ed25519:` + base64 of its 32 bytes.
const KEY_PREFIX: &str = "ed25519:";
/// How a signing key file starts.
const SECRET_PREFIX: &str = "ed25519-secret:";

/// Why a key, a statement or a signature is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Not an `ed25519:<base64>` public key.
    #[error("not a public signing key (expected ed25519:<base64 of 32 bytes>): {0}")]
    BadKey(String),
    /// The signer is not among the keys trusted here.
    #[error(
        "the {what} is signed by key {key}, which is not a trusted admin key here (sealrun trust list; an agent's trust_file)"
    )]
    Untrusted {
        /// What was signed.
        what: &'static str,
        /// The signer's fingerprint.
        key: String,
    },
    /// The signature does not match the statement.
    #[error("the {0}'s signature does not verify: it was altered or forged")]
    BadSignature(&'static str),
    /// The signed text is not a statement of its kind.
    #[error("the signed {0} cannot be read: {1}")]
    Unreadable(&'static str, String),
    /// The statement is for another org, target or user.
    #[error("the {statement} is for {what} {found}, not {expected}")]
    Mismatch {
        /// What was signed.
        statement: &'static str,
        /// `org`, `target`, `user` or `key`.
        what: &'static str,
        /// What the statement names.
        found: String,
        /// What it should name.
        expected: String,
    },
    /// Past its expiry.
    #[error("the {0} expired (at {1} ms since the Unix epoch)")]
    Expired(&'static str, i64),
}

/// A person's public signing key: an admin's in a trust list, a user's in
/// their certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignerKey(VerifyingKey);

impl SignerKey {
    /// Parses `ed25519:<base64>`.
    pub fn parse(s: &str) -> Result<SignerKey, TrustError> {
        let bad = || TrustError::BadKey(s.chars().take(80).collect());
        let b64 = s.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let bytes: [u8; 32] = B64
            .decode(b64)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        VerifyingKey::from_bytes(&bytes)
            .map(SignerKey)
            .map_err(|_| bad())
    }

    /// A short, stable name for the key: `ak1_` + hex of the first 8 bytes
    /// of its SHA-256, to compare out of band.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("ak1_{}", hex::encode(&digest[..8]))
    }
}

impl fmt::Display for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({})", self.fingerprint())
    }
}

/// A person's signing key. It never leaves their machine; its secret half
/// is zeroized on drop and never printed.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new random key.
    pub fn generate() -> SigningKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed[..]);
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The key whose seed is `seed` (a key derived from another secret:
    /// `crate::report::report_key`).
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The key stored as [`SigningKey::to_text`].
    pub fn from_text(text: &str) -> Result<SigningKey, TrustError> {
        let bad = || TrustError::BadKey("a signing key file".into());
        let b64 = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
        let bytes = Zeroizing::new(B64.decode(b64).map_err(|_| bad())?);
        let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(seed)))
    }

    /// The text a key file holds: `ed25519-secret:` + base64 of the seed.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{SECRET_PREFIX}{}\n",
            B64.encode(self.0.to_bytes())
        ))
    }

    /// Its public half.
    pub fn public_key(&self) -> SignerKey {
        SignerKey(self.0.verifying_key())
    }

    /// Signs `statement`.
    pub fn sign<T: Statement>(&self, statement: &T) -> Signed<T> {
        // Serializing a statement (strings, integers, lists and maps with
        // string keys) cannot fail.
        let payload = serde_json::to_string(statement).unwrap_or_default();
        let signature = self.0.sign(&signed_bytes::<T>(&payload));
        Signed {
            payload,
            signer: self.public_key().to_string(),
            signature: B64.encode(signature.to_bytes()),
            kind: PhantomData,
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, ***)", self.public_key().fingerprint())
    }
}

/// A kind of signed statement.
pub trait Statement: Serialize + DeserializeOwned {
    /// What the statement is, in the signed bytes and in errors.
    const KIND: &'static str;
    /// The domain separation of its signatures.
    const CONTEXT: &'static [u8];
}

fn signed_bytes<T: Statement>(payload: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(T::CONTEXT.len() + payload.len());
    bytes.extend_from_slice(T::CONTEXT);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

/// A statement with its signer's signature.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    /// The statement, as the exact JSON text that was signed.
    pub payload: String,
    /// The signer's public key (`ed25519:...`).
    pub signer: String,
    /// Ed25519 signature over the kind's context and `payload`, base64.
    pub signature: String,
    #[serde(skip)]
    kind: PhantomData<fn() -> T>,
}

// By hand: derived impls would demand `T: Clone` etc., which the envelope,
// holding only text, does not need.
impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            payload: self.payload.clone(),
            signer: self.signer.clone(),
            signature: self.signature.clone(),
            kind: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        (&self.payload, &self.signer, &self.signature)
            == (&other.payload, &other.signer, &other.signature)
    }
}

impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("payload", &self.payload)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// `sha256:<hex>` of a statement's JSON text: what approvals bind (of a
/// signed run, [`Signed::digest`]; of a run no person signed, the text the
/// control plane stated).
pub fn digest_of(payload: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(payload.as_bytes())))
}

impl<T: Statement> Signed<T> {
    /// `sha256:<hex>` of the signed payload: what approvals of a signed run
    /// bind.
    pub fn digest(&self) -> String {
        digest_of(&self.payload)
    }

    /// The statement as it reads, without checking its signature: for one
    /// who stores and relays statements and checked each signature when it
    /// took it (the control plane), never for one who acts on it.
    pub fn claimed(&self) -> Result<T, TrustError> {
        serde_json::from_str(&self.payload)
            .map_err(|e| TrustError::Unreadable(T::KIND, e.to_string()))
    }

    /// The statement and its signer, if the signature is the signer's over
    /// it (whoever the signer is: [`Signed::verify`] also checks that).
    pub fn open(&self) -> Result<(T, SignerKey), TrustError> {
        let signer = SignerKey::parse(&self.signer)?;
        let bytes: [u8; 64] = B64
            .decode(&self.signature)
            .map_err(|_| TrustError::BadSignature(T::KIND))?
            .try_into()
            .map_err(|_| TrustError::BadSignature(T::KIND))?;
        signer
            .0
            .verify(
                &signed_bytes::<T>(&self.payload),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| TrustError::BadSignature(T::KIND))?;
        let statement = serde_json::from_str(&self.payload)
            .map_err(|e| TrustError::Unreadable(T::KIND, e.to_string()))?;
        Ok((statement, signer))
    }

    /// The statement, if a key in `trusted` signed it.
    pub fn verify(&self, trusted: &[SignerKey]) -> Result<T, TrustError> {
        let signer = SignerKey::parse(&self.signer)?;
        if !trusted.contains(&signer) {
            return Err(TrustError::Untrusted {
                what: T::KIND,
                key: signer.fingerprint(),
            });
        }
        Ok(self.open()?.0)
    }
}

/// Checks that `found` is `expected`.
pub(crate) fn same(
    statement: &'static str,
    what: &'static str,
    found: &str,
    expected: &str,
) -> Result<(), TrustError> {
    if found == expected {
        return Ok(());
    }
    Err(TrustError::Mismatch {
        statement,
        what,
        found: found.to_owned(),
        expected: expected.to_owned(),
    })
}

/// What an admin certifies of a target: its key (that `sealrun secret set`
/// seals to), and the spec and policy its agents enforce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetCertificate {
    /// The org's name.
    pub org: String,
    /// The target's name.
    pub target: String,
    /// The target's public key, base64 (as `sealrun_vault::PublicKey`).
    pub public_key: String,
    /// Its key id.
    pub key_id: String,
    /// The target as declared when it was certified: its images, network,
    /// user, limits, timeout and policy.
    pub spec: TargetSpec,
    /// The public half of the key its agents sign run reports with
    /// (`ed25519:...`; `crate::report`), if they presented one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_key: Option<String>,
    /// Unix milliseconds it was signed.
    pub issued_at_ms: i64,
    /// Unix milliseconds after which it no longer counts.
    pub expires_at_ms: i64,
}

impl Statement for TargetCertificate {
    const KIND: &'static str = "target certificate";
    const CONTEXT: &'static [u8] = b"sealrun target certificate v2\n";
}

impl TargetCertificate {
    /// Checks that it is for target `target` of org `org` and unexpired at
    /// `now_ms`. The caller then compares [`TargetCertificate::public_key`]
    /// with the key it was offered.
    pub fn check(&self, org: &str, target: &str, now_ms: i64) -> Result<(), TrustError> {
        same(Self::KIND, "org", &self.org, org)?;
        same(Self::KIND, "target", &self.target, target)?;
        if self.expires_at_ms < now_ms {
            return Err(TrustError::Expired(Self::KIND, self.expires_at_ms));
        }
        Ok(())
    }
}

/// What an admin certifies of a user: their signing key, role and groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCertificate {
    /// The org's name.
    pub org: String,
    /// The user's name.
    pub user: String,
    /// Their role.
    pub role: Role,
    /// Their groups (approval rules name them).
    pub groups: Vec<String>,
    /// Their public signing key (`ed25519:...`).
    pub public_key: String,
    /// Their passkeys (registered in the web console): approvals they
    /// assert with one of these count as signed ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passkeys: Vec<crate::passkey::Passkey>,
    /// Unix milliseconds it was signed.
    pub issued_at_ms: i64,
    /// Unix milliseconds after which it no longer counts.
    pub expires_at_ms: i64,
}

impl Statement for UserCertificate {
    const KIND: &'static str = "user certificate";
    const CONTEXT: &'static [u8] = b"sealrun user certificate v1\n";
}

impl UserCertificate {
    /// Checks that it is user `user`'s of org `org`, for key `key`, and
    /// unexpired at `now_ms`.
    pub fn check(
        &self,
        org: &str,
        user: &str,
        key: &SignerKey,
        now_ms: i64,
    ) -> Result<(), TrustError> {
        same(Self::KIND, "org", &self.org, org)?;
        same(Self::KIND, "user", &self.user, user)?;
        same(Self::KIND, "key", &self.public_key, &key.to_string())?;
        self.check_holder(org, user, now_ms)
    }

    /// Checks that it is user `user`'s of org `org` and unexpired at
    /// `now_ms`, whichever of its keys signed (a passkey's assertion is
    /// checked against [`passkeys`](UserCertificate::passkeys)).
    pub fn check_holder(&self, org: &str, user: &str, now_ms: i64) -> Result<(), TrustError> {
        same(Self::KIND, "org", &self.org, org)?;
        same(Self::KIND, "user", &self.user, user)?;
        if self.expires_at_ms < now_ms {
            return Err(TrustError::Expired(Self::KIND, self.expires_at_ms));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert() -> TargetCertificate {
        TargetCertificate {
            org: "acme".into(),
            target: "db".into(),
            public_key: "key".into(),
            key_id: "k1_x".into(),
            spec: serde_json::from_str(r#"{"name": "db", "image": "busybox"}"#).unwrap(),
            report_key: None,
            issued_at_ms: 10,
            expires_at_ms: 100,
        }
    }

    #[test]
    fn a_key_survives_its_text_forms() {
        let k = SigningKey::generate();
        let again = SigningKey::from_text(&k.to_text()).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        assert_eq!(
            SignerKey::parse(&k.public_key().to_string()).unwrap(),
            k.public_key()
        );
        assert!(!format!("{k:?}").contains(&*k.to_text()));
    }

    #[test]
    fn any_change_to_a_signed_certificate_breaks_its_signature() {
        let k = SigningKey::generate();
        let trusted = [k.public_key()];
        let signed = k.sign(&cert());
        assert_eq!(signed.verify(&trusted), Ok(cert()));
        let mut swapped = signed.clone();
        swapped.payload = swapped.payload.replace("\"key\"", "\"another key\"");
        assert_ne!(swapped.payload, signed.payload);
        assert_eq!(
            swapped.verify(&trusted),
            Err(TrustError::BadSignature("target certificate"))
        );
    }

    #[test]
    fn a_signature_over_one_kind_of_statement_never_verifies_as_another() {
        let k = SigningKey::generate();
        let user = UserCertificate {
            org: "acme".into(),
            user: "db".into(),
            role: Role::Admin,
            groups: vec![],
            public_key: k.public_key().to_string(),
            passkeys: Vec::new(),
            issued_at_ms: 10,
            expires_at_ms: 100,
        };
        let signed = k.sign(&user);
        assert!(signed.verify(&[k.public_key()]).is_ok());
        let as_target: Signed<TargetCertificate> = Signed {
            payload: signed.payload,
            signer: signed.signer,
            signature: signed.signature,
            kind: PhantomData,
        };
        assert_eq!(
            as_target.open().map(|_| ()),
            Err(TrustError::BadSignature("target certificate"))
        );
    }

    #[test]
    fn a_certificate_counts_for_its_org_and_target_until_it_expires() {
        let c = cert();
        assert!(matches!(
            c.check("other", "db", 50),
            Err(TrustError::Mismatch { what: "org", .. })
        ));
        assert!(matches!(
            c.check("acme", "web", 50),
            Err(TrustError::Mismatch { what: "target", .. })
        ));
        assert_eq!(
            c.check("acme", "db", 101),
            Err(TrustError::Expired("target certificate", 100))
        );
        assert_eq!(c.check("acme", "db", 50), Ok(()));
    }

    #[test]
    fn a_certificate_by_an_untrusted_key_is_refused_whoever_signed_it() {
        let admin = SigningKey::generate();
        let forger = SigningKey::generate();
        let forged = forger.sign(&cert());
        assert!(matches!(
            forged.verify(&[admin.public_key()]),
            Err(TrustError::Untrusted { .. })
        ));
        // A forger naming the trusted admin as signer fails the signature.
        let mut claimed = forged;
        claimed.signer = admin.public_key().to_string();
        assert_eq!(
            claimed.verify(&[admin.public_key()]),
            Err(TrustError::BadSignature("target certificate"))
        );
    }
}
