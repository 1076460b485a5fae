//! Passkeys (WebAuthn): a person's signature given in a browser, checked by
//! whoever holds their certificate, not by the server that served the page.
//!
//! A passkey is registered in the web console and certified by an admin
//! like a signing key (`trust::UserCertificate::passkeys`: its
//! credential id, its P-256 public key and the origin it lives at). An
//! approval in the console asks the authenticator to sign a challenge that
//! is the hash of the approval statement under its signing context
//! ([`challenge`]); the assertion (authenticator data, client data,
//! signature) travels with the statement to the agent, which checks it here:
//!
//! - the client data says `webauthn.get`, this challenge and the passkey's
//!   origin (a page of another site cannot have asked for it);
//! - the authenticator data is for the origin's host (the RP id) and says
//!   the person was present and verified (PIN or biometric);
//! - the ECDSA P-256 signature over authenticator data and the client
//!   data's hash is the certified key's.
//!
//! So a control plane that serves the page cannot make up an approval with
//! a certified passkey, nor count one for another run: the statement names
//! the run's digest, and only the authenticator can sign it. (What a
//! certificate is worth depends on how its passkey reached the admin: see
//! ARCHITECTURE.md's threat model.)
//!
//! ```
//! use sealrun_wire::passkey::{Passkey, PasskeyError};
//!
//! // What a browser's `response.getPublicKey()` gives is SPKI DER; a key
//! // that is not a P-256 one is refused.
//! let bad = Passkey::new("AAEC", b"not a key", "https://localhost:8443");
//! assert!(matches!(bad, Err(PasskeyError::BadKey(_))));
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The COSE algorithm passkeys must use: ES256 (ECDSA P-256 with SHA-256).
pub const ALGORITHM: i64 = -7;

/// The prefix of a passkey's public key text.
const KEY_PREFIX: &str = "p256:";
/// Authenticator data flags: the user was present, and verified.
const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;

/// Why a passkey or one of its assertions is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasskeyError {
    /// Not a P-256 public key (SPKI DER, base64url).
    #[error("not a P-256 public key: {0}")]
    BadKey(String),
    /// The origin is not `https://host[:port]`.
    #[error("passkey origin {0:?} is not https://host[:port]")]
    BadOrigin(String),
    /// A field is not base64url or not what it should decode to.
    #[error("the passkey assertion's {0} is malformed")]
    Malformed(&'static str),
    /// The assertion is by another credential.
    #[error("the assertion is by another passkey")]
    OtherCredential,
    /// The client data is not a `webauthn.get` of this challenge at this
    /// origin.
    #[error("the passkey assertion is not for this statement at {expected}: {found}")]
    WrongClientData {
        /// What was expected (the origin).
        expected: String,
        /// What it says.
        found: String,
    },
    /// The authenticator data is for another site, or the person was not
    /// present and verified.
    #[error("the passkey assertion {0}")]
    WrongAuthenticatorData(&'static str),
    /// The signature is not the passkey's.
    #[error("the passkey assertion's signature is not the certified key's")]
    BadSignature,
}

/// A registered passkey: what an admin certifies for a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passkey {
    /// The credential id (base64url, no padding).
    pub credential_id: String,
    /// `p256:` + base64url of the public key's SPKI DER.
    pub public_key: String,
    /// The web origin it was registered at (`https://host[:port]`): only
    /// assertions made for pages of that origin count.
    pub origin: String,
}

/// A passkey's signature over a challenge, as a browser returns it
/// (`navigator.credentials.get`), every field base64url without padding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAssertion {
    /// The credential that signed.
    pub credential_id: String,
    /// `response.authenticatorData`.
    pub authenticator_data: String,
    /// `response.clientDataJSON`.
    pub client_data_json: String,
    /// `response.signature` (ASN.1 DER ECDSA).
    pub signature: String,
}

/// The client data fields that are checked.
#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

/// The challenge a passkey signs for a statement's JSON text `payload`
/// whose kind signs under `context` (`Statement::CONTEXT` in `trust`): the
/// SHA-256 of both, so an assertion over it is bound to that statement as an
/// Ed25519 signature is.
pub fn challenge(context: &[u8], payload: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(context);
    h.update(payload.as_bytes());
    h.finalize().into()
}

/// [`challenge`] as the browser is given it (base64url).
pub fn challenge_text(context: &[u8], payload: &str) -> String {
    B64URL.encode(challenge(context, payload))
}

impl Passkey {
    /// A passkey with credential id `credential_id` (base64url), public key
    /// `spki_der` (what `response.getPublicKey()` returns) and `origin`.
    pub fn new(
        credential_id: &str,
        spki_der: &[u8],
        origin: &str,
    ) -> Result<Passkey, PasskeyError> {
        let id = B64URL
            .decode(credential_id)
            .map_err(|_| PasskeyError::Malformed("credential id"))?;
        if id.is_empty() || id.len() > 1023 {
            return Err(PasskeyError::Malformed("credential id"));
        }
        VerifyingKey::from_public_key_der(spki_der)
            .map_err(|e| PasskeyError::BadKey(e.to_string()))?;
        rp_id(origin)?;
        Ok(Passkey {
            credential_id: credential_id.to_owned(),
            public_key: format!("{KEY_PREFIX}{}", B64URL.encode(spki_der)),
            origin: origin.to_owned(),
        })
    }

    fn key(&self) -> Result<(VerifyingKey, Vec<u8>), PasskeyError> {
        let bad = || PasskeyError::BadKey(self.public_key.chars().take(80).collect());
        let der = self
            .public_key
            .strip_prefix(KEY_PREFIX)
            .and_then(|b| B64URL.decode(b).ok())
            .ok_or_else(bad)?;
        let key = VerifyingKey::from_public_key_der(&der).map_err(|_| bad())?;
        Ok((key, der))
    }

    /// A short, stable name for the passkey: `pk1_` + hex of the first 8
    /// bytes of its public key's SHA-256, to compare out of band before
    /// certifying it.
    pub fn fingerprint(&self) -> String {
        let der = self
            .public_key
            .strip_prefix(KEY_PREFIX)
            .and_then(|b| B64URL.decode(b).ok())
            .unwrap_or_default();
        format!("pk1_{}", hex::encode(&Sha256::digest(&der)[..8]))
    }

    /// The WebAuthn relying party id: the origin's host.
    pub fn rp_id(&self) -> Result<&str, PasskeyError> {
        rp_id(&self.origin)
    }

    /// Checks that `assertion` is this passkey's signature over `challenge`,
    /// made for a page of its origin with the person present and verified.
    pub fn verify(
        &self,
        challenge: &[u8; 32],
        assertion: &PasskeyAssertion,
    ) -> Result<(), PasskeyError> {
        if assertion.credential_id != self.credential_id {
            return Err(PasskeyError::OtherCredential);
        }
        let decode = |field: &'static str, text: &str| {
            B64URL
                .decode(text.trim_end_matches('='))
                .map_err(|_| PasskeyError::Malformed(field))
        };
        let auth = decode("authenticator data", &assertion.authenticator_data)?;
        let client_json = decode("client data", &assertion.client_data_json)?;
        let signature = decode("signature", &assertion.signature)?;
        let client: ClientData = serde_json::from_slice(&client_json)
            .map_err(|_| PasskeyError::Malformed("client data"))?;
        let expected = B64URL.encode(challenge);
        if client.kind != "webauthn.get"
            || client.challenge.trim_end_matches('=') != expected
            || client.origin != self.origin
            || client.cross_origin
        {
            return Err(PasskeyError::WrongClientData {
                expected: self.origin.clone(),
                found: format!(
                    "type {:?}, origin {:?}, cross-origin {}, {} challenge",
                    client.kind,
                    client.origin,
                    client.cross_origin,
                    if client.challenge.trim_end_matches('=') == expected {
                        "the right"
                    } else {
                        "another"
                    }
                ),
            });
        }
        if auth.len() < 37 {
            return Err(PasskeyError::Malformed("authenticator data"));
        }
        if auth[..32] != Sha256::digest(self.rp_id()?.as_bytes())[..] {
            return Err(PasskeyError::WrongAuthenticatorData("is for another site"));
        }
        let flags = auth[32];
        if flags & USER_PRESENT == 0 || flags & USER_VERIFIED == 0 {
            return Err(PasskeyError::WrongAuthenticatorData(
                "does not say the person was present and verified",
            ));
        }
        let (key, _) = self.key()?;
        let signature = Signature::from_der(&signature).map_err(|_| PasskeyError::BadSignature)?;
        let mut signed = auth;
        signed.extend_from_slice(&Sha256::digest(&client_json));
        key.verify(&signed, &signature)
            .map_err(|_| PasskeyError::BadSignature)
    }
}

/// The WebAuthn relying party id of `origin` (`https://host[:port]`): its
/// host.
pub fn rp_id(origin: &str) -> Result<&str, PasskeyError> {
    let bad = || PasskeyError::BadOrigin(origin.chars().take(200).collect());
    let rest = origin.strip_prefix("https://").ok_or_else(bad)?;
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => rest,
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if valid { Ok(host) } else { Err(bad()) }
}

/// A test authenticator (P-256 key and the passkey it registers), for the
/// tests here and of `authority`.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    pub(crate) const ORIGIN: &str = "https://localhost:8443";
    pub(crate) const PRESENT_AND_VERIFIED: u8 = USER_PRESENT | USER_VERIFIED;

    /// A test authenticator: a P-256 key and the passkey it registers.
    pub(crate) struct Authenticator {
        key: SigningKey,
        pub(crate) passkey: Passkey,
    }

    impl Authenticator {
        pub(crate) fn new() -> Authenticator {
            let key = SigningKey::random(&mut rand::rngs::OsRng);
            let spki = p256::PublicKey::from(key.verifying_key())
                .to_public_key_der()
                .unwrap();
            let passkey = Passkey::new("Y3JlZA", spki.as_bytes(), ORIGIN).unwrap();
            Authenticator { key, passkey }
        }

        /// An assertion over `challenge` as a browser at `origin` for
        /// `rp_id` would return, with `flags`.
        pub(crate) fn assert(
            &self,
            challenge: &[u8; 32],
            origin: &str,
            rp_id: &str,
            flags: u8,
        ) -> PasskeyAssertion {
            let client = serde_json::json!({
                "type": "webauthn.get",
                "challenge": B64URL.encode(challenge),
                "origin": origin,
                "crossOrigin": false,
            })
            .to_string();
            let mut auth = Sha256::digest(rp_id.as_bytes()).to_vec();
            auth.push(flags);
            auth.extend_from_slice(&7u32.to_be_bytes());
            let mut signed = auth.clone();
            signed.extend_from_slice(&Sha256::digest(client.as_bytes()));
            let signature: Signature = self.key.sign(&signed);
            PasskeyAssertion {
                credential_id: self.passkey.credential_id.clone(),
                authenticator_data: B64URL.encode(&auth),
                client_data_json: B64URL.encode(client.as_bytes()),
                signature: B64URL.encode(signature.to_der().as_bytes()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::testing::{Authenticator, ORIGIN};
    use super::*;

    const OK: u8 = USER_PRESENT | USER_VERIFIED;

    #[test]
    fn an_assertion_over_the_challenge_at_the_passkeys_origin_verifies() {
        let a = Authenticator::new();
        let c = [7u8; 32];
        a.passkey
            .verify(&c, &a.assert(&c, ORIGIN, "localhost", OK))
            .unwrap();
    }

    #[test]
    fn an_assertion_over_another_challenge_is_refused() {
        let a = Authenticator::new();
        let assertion = a.assert(&[8u8; 32], ORIGIN, "localhost", OK);
        let err = a.passkey.verify(&[7u8; 32], &assertion).unwrap_err();
        assert!(matches!(err, PasskeyError::WrongClientData { .. }), "{err}");
    }

    #[test]
    fn an_assertion_made_for_another_origin_is_refused() {
        let a = Authenticator::new();
        let c = [7u8; 32];
        let err = a
            .passkey
            .verify(&c, &a.assert(&c, "https://evil.example", "localhost", OK))
            .unwrap_err();
        assert!(matches!(err, PasskeyError::WrongClientData { .. }));
        let err = a
            .passkey
            .verify(&c, &a.assert(&c, ORIGIN, "evil.example", OK))
            .unwrap_err();
        assert_eq!(
            err,
            PasskeyError::WrongAuthenticatorData("is for another site")
        );
    }

    #[test]
    fn an_assertion_without_user_verification_is_refused() {
        let a = Authenticator::new();
        let c = [7u8; 32];
        for flags in [USER_PRESENT, USER_VERIFIED, 0] {
            let err = a
                .passkey
                .verify(&c, &a.assert(&c, ORIGIN, "localhost", flags))
                .unwrap_err();
            assert!(
                matches!(err, PasskeyError::WrongAuthenticatorData(_)),
                "{flags}"
            );
        }
    }

    #[test]
    fn an_assertion_by_another_key_is_refused() {
        let a = Authenticator::new();
        let mut b = Authenticator::new();
        b.passkey.credential_id = a.passkey.credential_id.clone();
        let c = [7u8; 32];
        let err = a
            .passkey
            .verify(&c, &b.assert(&c, ORIGIN, "localhost", OK))
            .unwrap_err();
        assert_eq!(err, PasskeyError::BadSignature);
    }

    #[test]
    fn a_tampered_authenticator_data_breaks_the_signature() {
        let a = Authenticator::new();
        let c = [7u8; 32];
        let mut assertion = a.assert(&c, ORIGIN, "localhost", OK);
        let mut auth = B64URL.decode(&assertion.authenticator_data).unwrap();
        auth[33] ^= 1; // the signature counter
        assertion.authenticator_data = B64URL.encode(&auth);
        assert_eq!(
            a.passkey.verify(&c, &assertion).unwrap_err(),
            PasskeyError::BadSignature
        );
    }

    #[test]
    fn the_origin_must_be_https_and_its_host_is_the_rp_id() {
        let a = Authenticator::new();
        assert_eq!(a.passkey.rp_id().unwrap(), "localhost");
        assert_eq!(
            rp_id("https://console.example.com").unwrap(),
            "console.example.com"
        );
        for bad in [
            "http://localhost:8443",
            "https://",
            "https://a b",
            "localhost",
        ] {
            assert!(rp_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fingerprint_names_the_key_not_the_credential() {
        let a = Authenticator::new();
        let mut renamed = a.passkey.clone();
        renamed.credential_id = "b3RoZXI".into();
        assert_eq!(a.passkey.fingerprint(), renamed.fingerprint());
        assert!(a.passkey.fingerprint().starts_with("pk1_"));
        assert_ne!(
            a.passkey.fingerprint(),
            Authenticator::new().passkey.fingerprint()
        );
    }
}
