//! Sealing a secret to a target's public key, and opening it with the keypair.

use crate::envelope::{self, ENVELOPE_VERSION};
use crate::{Error, KeyId, PublicKey, Secret, TargetKeypair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_box::aead::OsRng;
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
    if public_key.is_weak() {
        return Err(Error::InvalidPublicKey(
            "a low-order point, which would let anyone open what is sealed to it".into(),
        ));
    }
    let plaintext = envelope::encode(name, target, value)?;
    let sealed = public_key
        .to_crypto_box()
        .seal(&mut OsRng, &plaintext)
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
