//! Write-only secrets for sealrun.
//!
//! Whoever sets a secret seals it on their own machine with the target's public key;
//! the control plane stores only the [`SealedSecret`]; only an agent holding that
//! target's [`TargetKeypair`] can [`open`] it, and only under the name and target it
//! was sealed for.
//!
//! ```
//! use sealrun_vault::{open, seal, Error, TargetKeypair};
//!
//! // On the agent: the target's keypair. Only its public half leaves the machine.
//! let keypair = TargetKeypair::generate();
//! let public_key = keypair.public_key();
//!
//! // On the admin's machine: seal the value for one secret name on one target.
//! let sealed = seal(&public_key, "PGPASSWORD", "prod-db", b"hunter2")?;
//! assert_eq!(sealed.key_id, keypair.key_id());
//!
//! // On the agent, at execution time: open it, naming what it must be.
//! let secret = open(&keypair, "PGPASSWORD", "prod-db", &sealed)?;
//! assert_eq!(secret.expose(), b"hunter2");
//! assert_eq!(format!("{secret:?}"), "***");
//!
//! // A control plane that files the ciphertext under another name is caught.
//! let moved = open(&keypair, "AWS_SECRET_ACCESS_KEY", "prod-db", &sealed);
//! assert!(matches!(moved, Err(Error::NameMismatch { .. })));
//! # Ok::<(), Error>(())
//! ```
//!
//! # Cryptography
//!
//! A sealed secret is a libsodium sealed box (`crypto_box_seal`: an ephemeral X25519
//! key agreement, then XSalsa20-Poly1305 with the nonce
//! `BLAKE2b-192(ephemeral_pk || recipient_pk)`), built with RustCrypto's
//! [`crypto_box`]. It is byte-compatible with libsodium, so any libsodium binding
//! (PyNaCl, libsodium.js, GitHub's secret tooling) can seal for sealrun; the interop
//! tests prove it in both directions.
//!
//! The sealed plaintext is not the bare value but a versioned *envelope* that binds the
//! secret's name and target to it (all lengths big-endian):
//!
//! ```text
//! b"SRVE" | u8 version (= 1) | u16 name_len | name | u16 target_len | target | value
//! ```
//!
//! [`SealedSecret::ciphertext`] is standard base64 (with padding) of
//! `ephemeral_pk (32) || ciphertext of the envelope || tag (16)`, so it is
//! [`SEAL_OVERHEAD`] + 9 + name + target + value bytes long before encoding.
//!
//! # Key ids
//!
//! [`KeyId`] is `"k1_"` + lowercase hex of the first 16 bytes of
//! `SHA-256("sealrun key id v1" || public_key_bytes)`.
//!
//! # Memory hygiene
//!
//! Every plaintext buffer this crate makes (the envelope before sealing, the envelope
//! after opening, key file contents) is zeroized when dropped, and so are [`Secret`]
//! and the secret half of [`TargetKeypair`]. No [`Error`] ever contains a value or key
//! material.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod envelope;
mod error;
mod keypair;
mod public_key;
mod sealed;
mod secret;

pub use envelope::ENVELOPE_VERSION;
pub use error::Error;
pub use keypair::TargetKeypair;
pub use public_key::{KeyId, PUBLIC_KEY_LEN, PublicKey};
pub use sealed::{SEAL_OVERHEAD, SealedSecret, open, seal};
pub use secret::Secret;
