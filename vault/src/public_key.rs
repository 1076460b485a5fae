//! Target public keys and the key ids derived from them.

use crate::Error;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use curve25519_dalek::montgomery::MontgomeryPoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Length of an X25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Domain separation for key ids, so a key id can never be confused with any other
/// SHA-256 of the same key bytes.
const KEY_ID_DOMAIN: &[u8] = b"sealrun key id v1";
/// Prefix of every key id; the digit is the derivation version.
const KEY_ID_PREFIX: &str = "k1_";
/// Number of digest bytes kept: 128 bits make an accidental collision impossible in
/// practice while keeping ids short enough to read aloud.
const KEY_ID_BYTES: usize = 16;

/// Identifies a target public key.
///
/// Derived from the public key bytes only, so anyone holding the public key computes
/// the same id: `"k1_"` followed by the lowercase hex of the first 16 bytes of
/// `SHA-256("sealrun key id v1" || public_key_bytes)`.
///
/// ```
/// # use sealrun_vault::{KeyId, PublicKey};
/// let id = PublicKey::from_bytes([9; 32]).key_id();
/// assert!(id.to_string().starts_with("k1_"));
/// assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    /// Derives the key id of raw public key bytes.
    pub fn derive(public_key: &[u8; PUBLIC_KEY_LEN]) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(public_key)
            .finalize();
        let mut id = String::with_capacity(KEY_ID_PREFIX.len() + 2 * KEY_ID_BYTES);
        id.push_str(KEY_ID_PREFIX);
        for byte in &digest[..KEY_ID_BYTES] {
            id.push(hex_digit(byte >> 4));
            id.push(hex_digit(byte & 0x0f));
        }
        KeyId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyId {
    type Err = Error;

    /// Parses a key id, checking its shape (it cannot check which key it names).
    fn from_str(s: &str) -> Result<KeyId, Error> {
        let well_formed = s.strip_prefix(KEY_ID_PREFIX).is_some_and(|hex| {
            hex.len() == 2 * KEY_ID_BYTES
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if well_formed {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(Error::InvalidKeyId(s.to_owned()))
        }
    }
}

/// A target's X25519 public key: what anyone needs to seal a secret for that target.
///
/// Its text form is standard base64 of the 32 key bytes (what `crypto_box_seal`
/// users such as GitHub's secrets API exchange).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
}

impl PublicKey {
    /// Wraps raw key bytes. Any 32 bytes are accepted here; [`crate::seal`] refuses
    /// keys that would make the box readable by anyone (see [`PublicKey::is_weak`]).
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> PublicKey {
        PublicKey { bytes }
    }

    /// Parses the base64 text form, refusing anything but 32 valid, strong key bytes.
    /// Surrounding whitespace is ignored, because keys are pasted from terminals.
    pub fn from_base64(s: &str) -> Result<PublicKey, Error> {
        let decoded = STANDARD
            .decode(s.trim())
            .map_err(|e| Error::InvalidPublicKey(format!("not valid base64: {e}")))?;
        let bytes: [u8; PUBLIC_KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            Error::InvalidPublicKey(format!(
                "expected {PUBLIC_KEY_LEN} bytes, got {}",
                decoded.len()
            ))
        })?;
        let key = PublicKey::from_bytes(bytes);
        if key.is_weak() {
            return Err(Error::InvalidPublicKey(
                "a low-order point, which would let anyone open what is sealed to it".into(),
            ));
        }
        Ok(key)
    }

    /// Standard base64 of the key bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// The key's id (see [`KeyId`]).
    pub fn key_id(&self) -> KeyId {
        KeyId::derive(&self.bytes)
    }

    /// True for a low-order point (or one on the twist's small subgroup).
    ///
    /// A Diffie-Hellman with such a key yields the all-zero shared secret, so anything
    /// sealed to it could be opened by anyone. libsodium's `crypto_box_seal` refuses
    /// these keys by checking for an all-zero shared secret; `crypto_box` does not, so
    /// we check here the same way: a clamped scalar is a multiple of the cofactor 8,
    /// which sends exactly the small-order points to zero.
    pub fn is_weak(&self) -> bool {
        let any_clamped_scalar = [0x5a; 32];
        MontgomeryPoint(self.bytes)
            .mul_clamped(any_clamped_scalar)
            .0
            == [0u8; 32]
    }

    pub(crate) fn to_crypto_box(&self) -> crypto_box::PublicKey {
        crypto_box::PublicKey::from_bytes(self.bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.key_id().0).finish()
    }
}

impl fmt::Display for PublicKey {
    /// The base64 text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<PublicKey, Error> {
        PublicKey::from_base64(s)
    }
}
