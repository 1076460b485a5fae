//! Opened secret values.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret's plaintext value.
///
/// The bytes are zeroized when it is dropped, `Debug` and `Display` print `***`, and
/// it is not `Clone`, so every copy of the value in memory is one somebody asked for
/// with [`Secret::expose`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret {
    bytes: Vec<u8>,
}

impl Secret {
    /// Takes ownership of a plaintext value.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret { bytes }
    }

    /// The plaintext. Named so that every use stands out in review.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The plaintext as UTF-8, for APIs such as environment variables that need text.
    /// The error says only where the invalid UTF-8 starts, never what it is.
    pub fn expose_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.bytes)
    }

    /// Length of the value in bytes (not secret: the ciphertext reveals it anyway).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if the value is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
