//! Sealing a secret to a target's public key, and opening it with the keypair.

use crate::envelope::{self, ENVELOPE_VERSION};
use crate::{Error, KeyId, PublicKey, Secret, TargetKeypair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_box::aead::OsRng;
use crypto_box::aead::rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Bytes a sealed box adds to its plaintext: the ephemeral public key (32) and the
/// Poly1305 tag (16).
pub const SEAL_OVERHEAD: usize = 32 + 16;

/// A secret sealed to one target's public key: all the control plane ever stores.
///
/// Serialized with serde as `{"version": 1, "key_id": "k1_...", "ciphertext": "<base64>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Version of the sealed envelope format (see [`ENVELOPE_VERSION`]).
    pub version: u8,
    /// Id of the public key the secret was sealed to.
    pub key_id: KeyId,
    /// The libsodium sealed box, standard base64.
    pub ciphertext: String,
}

/// Seals `value` for the secret called `name` on `target`, so that only the holder of
/// the matching [`TargetKeypair`] can open it, and only under that name and target.
///
/// Refuses a weak (low-order) public key with [`Error::InvalidPublicKey`], as
/// libsodium does, and names or targets over 65535 bytes with [`Error::FieldTooLong`].
pub fn seal(
    public_key: &PublicKey,
    name: &str,
    target: &str,
    value: &[u8],
) -> Result<SealedSecret, Error> {
    seal_with_rng(&mut OsRng, public_key, name, target, value)
}

/// [`seal`] with the source of the ephemeral key made explicit, so a test can fix it
/// and compare the output byte for byte with libsodium's.
fn seal_with_rng(
    rng: &mut impl CryptoRngCore,
    public_key: &PublicKey,
    name: &str,
    target: &str,
    value: &[u8],
) -> Result<SealedSecret, Error> {
    if public_key.is_weak() {
        return Err(Error::InvalidPublicKey(
            "a low-order point, which would let anyone open what is sealed to it".into(),
        ));
    }
    let plaintext = envelope::encode(name, target, value)?;
    let sealed = public_key
        .to_crypto_box()
        .seal(rng, &plaintext)
        .map_err(|_| Error::Seal)?;
    Ok(SealedSecret {
        version: ENVELOPE_VERSION,
        key_id: public_key.key_id(),
        ciphertext: STANDARD.encode(sealed),
    })
}

/// Opens a sealed secret, checking that it was sealed to this keypair, for
/// `expected_name` on `expected_target`.
///
/// Checks, in order: the format version, the key id (a mismatch is
/// [`Error::WrongKey`], naming both ids), the base64 and length of the ciphertext,
/// its authenticity ([`Error::Tampered`]), then the name and target bound inside.
pub fn open(
    keypair: &TargetKeypair,
    expected_name: &str,
    expected_target: &str,
    sealed: &SealedSecret,
) -> Result<Secret, Error> {
    if sealed.version != ENVELOPE_VERSION {
        return Err(Error::UnsupportedVersion(sealed.version));
    }
    let have = keypair.key_id();
    if sealed.key_id != have {
        return Err(Error::WrongKey {
            sealed_for: sealed.key_id.clone(),
            have,
        });
    }
    let ciphertext = STANDARD
        .decode(sealed.ciphertext.as_bytes())
        .map_err(Error::InvalidCiphertext)?;
    let min = SEAL_OVERHEAD + envelope::MIN_LEN;
    if ciphertext.len() < min {
        return Err(Error::Truncated {
            len: ciphertext.len(),
            min,
        });
    }
    let plaintext = Zeroizing::new(
        keypair
            .secret_key()
            .unseal(&ciphertext)
            .map_err(|_| Error::Tampered)?,
    );
    let envelope = envelope::decode(&plaintext)?;
    if envelope.name != expected_name {
        return Err(Error::NameMismatch {
            expected: expected_name.to_owned(),
            found: envelope.name.to_owned(),
        });
    }
    if envelope.target != expected_target {
        return Err(Error::TargetMismatch {
            expected: expected_target.to_owned(),
            found: envelope.target.to_owned(),
        });
    }
    Ok(Secret::new(envelope.value.to_vec()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crypto_box::aead::rand_core::{CryptoRng, RngCore};

    /// Hands out fixed bytes: the ephemeral secret key of one test vector.
    struct FixedRng(Vec<u8>);

    impl RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            unreachable!("sealing only draws the ephemeral key with fill_bytes")
        }
        fn next_u64(&mut self) -> u64 {
            unreachable!("sealing only draws the ephemeral key with fill_bytes")
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            assert!(
                dest.len() <= self.0.len(),
                "asked for more bytes than the vector holds"
            );
            let rest = self.0.split_off(dest.len());
            dest.copy_from_slice(&self.0);
            self.0 = rest;
        }
        fn try_fill_bytes(
            &mut self,
            dest: &mut [u8],
        ) -> Result<(), crypto_box::aead::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for FixedRng {}

    #[test]
    fn sealing_with_libsodiums_ephemeral_key_gives_libsodiums_bytes() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../tests/vectors/pynacl_vectors.json")).unwrap();
        let public_key = PublicKey::from_base64(vectors["public_key"].as_str().unwrap()).unwrap();
        let cases = vectors["deterministic"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let field = |k: &str| case[k].as_str().unwrap();
            let ephemeral = STANDARD.decode(field("ephemeral_secret_key")).unwrap();
            let value = STANDARD.decode(field("value")).unwrap();
            let sealed = seal_with_rng(
                &mut FixedRng(ephemeral),
                &public_key,
                field("name"),
                field("target"),
                &value,
            )
            .unwrap();
            assert_eq!(
                sealed.ciphertext,
                field("ciphertext"),
                "case {}",
                field("name")
            );
            assert_eq!(sealed.key_id.0, vectors["key_id"].as_str().unwrap());
        }
    }
}
