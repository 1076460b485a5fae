//! Write-only secrets for sealrun (work in progress: see issue 3).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies a target public key; derived from the key bytes (see issue 3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret sealed to one target's public key: all the control plane ever stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Version of the sealed envelope format.
    pub version: u8,
    /// Id of the public key the secret was sealed to.
    pub key_id: KeyId,
    /// The libsodium sealed box, standard base64.
    pub ciphertext: String,
}
