//! The org's trust root, kept outside the control plane: admins' Ed25519
//! keys, generated on their own machines, and the target-key certificates
//! they sign.
//!
//! The control plane hands out each target's public key, and every secret
//! is sealed to it. A control plane that handed out a key of its own would
//! receive every secret set afterwards, so the CLI does not take the key on
//! the control plane's word: it seals only to a key that an admin certified
//! ([`SignedCertificate`]), signed by an admin key the user pinned out of
//! band (`sealrun trust add`), for this org and target, unexpired. The
//! control plane stores and relays certificates; it cannot make one.
//!
//! ```
//! use sealrun_wire::trust::{AdminSigningKey, TargetCertificate};
//!
//! let admin = AdminSigningKey::generate();
//! let cert = TargetCertificate {
//!     org: "acme".into(),
//!     target: "prod-db".into(),
//!     public_key: "hVb0c1Bq3yG6Xw2V2aI4o2hO6o2Rk1xk4Xh2gS2m9lE=".into(),
//!     key_id: "k1_00112233445566778899aabbccddeeff".into(),
//!     issued_at_ms: 1_700_000_000_000,
//!     expires_at_ms: 1_800_000_000_000,
//! };
//! let signed = admin.certify(cert);
//! let trusted = [admin.public_key()];
//! assert!(signed.verify(&trusted, "acme", "prod-db", 1_750_000_000_000).is_ok());
//! // Another admin's (or the control plane's) key is not trusted here.
//! let other = AdminSigningKey::generate();
//! assert!(signed.verify(&[other.public_key()], "acme", "prod-db", 1_750_000_000_000).is_err());
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// How an admin public key is written: `ed25519:` + base64 of its 32 bytes.
const KEY_PREFIX: &str = "ed25519:";
/// What a certificate signature covers, before the certificate's canonical
/// JSON: a signature for anything else never verifies as a certificate.
const CERT_CONTEXT: &[u8] = b"sealrun target certificate v1\n";

/// Why a key, a certificate or a signature is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Not an `ed25519:<base64>` public key.
    #[error("not an admin public key (expected ed25519:<base64 of 32 bytes>): {0}")]
    BadKey(String),
    /// The signer is not among the keys this machine trusts.
    #[error(
        "the certificate is signed by admin key {0}, which this machine does not trust (sealrun trust list)"
    )]
    Untrusted(String),
    /// The signature does not match the certificate.
    #[error("the certificate's signature does not verify: it was altered or forged")]
    BadSignature,
    /// The certificate is for another org or target.
    #[error("the certificate is for {what} {found}, not {expected}")]
    Mismatch {
        /// `org` or `target`.
        what: &'static str,
        /// What the certificate names.
        found: String,
        /// What it should name.
        expected: String,
    },
    /// Past its expiry.
    #[error("the certificate expired (at {0} ms since the Unix epoch)")]
    Expired(i64),
}

/// An admin's public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AdminKey(VerifyingKey);

impl AdminKey {
    /// Parses `ed25519:<base64>`.
    pub fn parse(s: &str) -> Result<AdminKey, TrustError> {
        let bad = || TrustError::BadKey(s.chars().take(80).collect());
        let b64 = s.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let bytes: [u8; 32] = B64
            .decode(b64)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        VerifyingKey::from_bytes(&bytes)
            .map(AdminKey)
            .map_err(|_| bad())
    }

    /// A short, stable name for the key: `ak1_` + hex of the first 8 bytes
    /// of its SHA-256, to compare out of band.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("ak1_{}", hex::encode(&digest[..8]))
    }
}

impl fmt::Display for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminKey({})", self.fingerprint())
    }
}

/// An admin's signing key. It never leaves the admin's machine; its
/// secret half is zeroized on drop and never printed.
pub struct AdminSigningKey(SigningKey);

impl AdminSigningKey {
    /// A new random key.
    pub fn generate() -> AdminSigningKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed[..]);
        AdminSigningKey(SigningKey::from_bytes(&seed))
    }

    /// The key stored as [`AdminSigningKey::to_text`].
    pub fn from_text(text: &str) -> Result<AdminSigningKey, TrustError> {
        let bad = || TrustError::BadKey("an admin signing key file".into());
        let b64 = text
            .trim()
            .strip_prefix("ed25519-secret:")
            .ok_or_else(bad)?;
        let bytes = Zeroizing::new(B64.decode(b64).map_err(|_| bad())?);
        let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
        Ok(AdminSigningKey(SigningKey::from_bytes(seed)))
    }

    /// The text a key file holds: `ed25519-secret:` + base64 of the seed.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "ed25519-secret:{}\n",
            B64.encode(self.0.to_bytes())
        ))
    }

    /// Its public half.
    pub fn public_key(&self) -> AdminKey {
        AdminKey(self.0.verifying_key())
    }

    /// Signs `certificate`.
    pub fn certify(&self, certificate: TargetCertificate) -> SignedCertificate {
        let signature = self.0.sign(&certificate.signed_bytes());
        SignedCertificate {
            certificate,
            signer: self.public_key().to_string(),
            signature: B64.encode(signature.to_bytes()),
        }
    }
}

impl fmt::Debug for AdminSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AdminSigningKey({}, ***)",
            self.public_key().fingerprint()
        )
    }
}

/// What an admin certifies: this is target `target`'s key in org `org`.
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
    /// Unix milliseconds it was signed.
    pub issued_at_ms: i64,
    /// Unix milliseconds after which it no longer counts.
    pub expires_at_ms: i64,
}

impl TargetCertificate {
    /// What the signature covers: a context string, then the compact JSON of
    /// the fields in declaration order (never reorder them).
    fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = CERT_CONTEXT.to_vec();
        // Serializing a struct of strings and integers cannot fail.
        bytes.extend(serde_json::to_vec(self).unwrap_or_default());
        bytes
    }
}

/// A [`TargetCertificate`] with its admin's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCertificate {
    /// What is certified.
    pub certificate: TargetCertificate,
    /// The signing admin's public key (`ed25519:...`).
    pub signer: String,
    /// Ed25519 signature, base64.
    pub signature: String,
}

impl SignedCertificate {
    /// Whether the signature is the signer's over the certificate (whoever
    /// the signer is: [`SignedCertificate::verify`] also checks that).
    pub fn check_signature(&self) -> Result<AdminKey, TrustError> {
        let signer = AdminKey::parse(&self.signer)?;
        let bytes: [u8; 64] = B64
            .decode(&self.signature)
            .map_err(|_| TrustError::BadSignature)?
            .try_into()
            .map_err(|_| TrustError::BadSignature)?;
        signer
            .0
            .verify(
                &self.certificate.signed_bytes(),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| TrustError::BadSignature)?;
        Ok(signer)
    }

    /// Checks that an admin key in `trusted` signed this certificate, for
    /// target `target` of org `org`, and that it has not expired at
    /// `now_ms`. The caller then compares [`TargetCertificate::public_key`]
    /// with the key it was offered.
    pub fn verify(
        &self,
        trusted: &[AdminKey],
        org: &str,
        target: &str,
        now_ms: i64,
    ) -> Result<(), TrustError> {
        let signer = AdminKey::parse(&self.signer)?;
        if !trusted.contains(&signer) {
            return Err(TrustError::Untrusted(signer.fingerprint()));
        }
        self.check_signature()?;
        let c = &self.certificate;
        if c.org != org {
            return Err(TrustError::Mismatch {
                what: "org",
                found: c.org.clone(),
                expected: org.to_owned(),
            });
        }
        if c.target != target {
            return Err(TrustError::Mismatch {
                what: "target",
                found: c.target.clone(),
                expected: target.to_owned(),
            });
        }
        if c.expires_at_ms < now_ms {
            return Err(TrustError::Expired(c.expires_at_ms));
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
            issued_at_ms: 10,
            expires_at_ms: 100,
        }
    }

    #[test]
    fn a_key_survives_its_text_forms() {
        let k = AdminSigningKey::generate();
        let again = AdminSigningKey::from_text(&k.to_text()).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        assert_eq!(
            AdminKey::parse(&k.public_key().to_string()).unwrap(),
            k.public_key()
        );
        assert!(!format!("{k:?}").contains(&*k.to_text()));
    }

    #[test]
    fn any_change_to_a_signed_certificate_breaks_its_signature() {
        let k = AdminSigningKey::generate();
        let trusted = [k.public_key()];
        let signed = k.certify(cert());
        assert_eq!(signed.verify(&trusted, "acme", "db", 50), Ok(()));
        let mut swapped = signed.clone();
        swapped.certificate.public_key = "another key".into();
        assert_eq!(
            swapped.verify(&trusted, "acme", "db", 50),
            Err(TrustError::BadSignature)
        );
    }

    #[test]
    fn a_certificate_counts_for_its_org_and_target_until_it_expires() {
        let k = AdminSigningKey::generate();
        let trusted = [k.public_key()];
        let signed = k.certify(cert());
        assert!(matches!(
            signed.verify(&trusted, "other", "db", 50),
            Err(TrustError::Mismatch { what: "org", .. })
        ));
        assert!(matches!(
            signed.verify(&trusted, "acme", "web", 50),
            Err(TrustError::Mismatch { what: "target", .. })
        ));
        assert_eq!(
            signed.verify(&trusted, "acme", "db", 101),
            Err(TrustError::Expired(100))
        );
    }

    #[test]
    fn a_certificate_by_an_untrusted_key_is_refused_whoever_signed_it() {
        let admin = AdminSigningKey::generate();
        let forger = AdminSigningKey::generate();
        let forged = forger.certify(cert());
        assert!(matches!(
            forged.verify(&[admin.public_key()], "acme", "db", 50),
            Err(TrustError::Untrusted(_))
        ));
        // A forger naming the trusted admin as signer fails the signature.
        let mut claimed = forged;
        claimed.signer = admin.public_key().to_string();
        assert_eq!(
            claimed.verify(&[admin.public_key()], "acme", "db", 50),
            Err(TrustError::BadSignature)
        );
    }
}
