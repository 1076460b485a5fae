//! Target keypairs and the key file they live in.
//!
//! Key file format (text, UTF-8, exactly two lines):
//!
//! ```text
//! sealrun-target-key v1
//! <standard base64 of the 32-byte X25519 secret key>
//! ```
//!
//! The file is created with mode `0600` and loading refuses a file that group or
//! others can read or write, as ssh does for private keys. The public key and key id
//! are derived from the secret key, so they are not stored.

use crate::{Error, KeyId, PublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_box::SecretKey;
use crypto_box::aead::OsRng;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// First line of every key file.
const HEADER: &str = "sealrun-target-key v1";
/// A valid key file is ~67 bytes; reading more than this means it is something else.
const MAX_KEY_FILE_LEN: u64 = 4096;
/// Permission bits that would let group or others at the key.
const GROUP_OTHER_BITS: u32 = 0o077;

/// A target's X25519 keypair: only the agents serving that target hold one.
///
/// `Debug` shows only the key id; the secret half is zeroized on drop.
pub struct TargetKeypair {
    // Boxed so the key lives at one heap address for its whole life: moving the
    // keypair around then never leaves copies of the secret on the stack.
    secret: Box<SecretKey>,
    public: PublicKey,
}

impl TargetKeypair {
    /// Generates a fresh keypair from the operating system's CSPRNG.
    pub fn generate() -> TargetKeypair {
        TargetKeypair::from_secret(Box::new(SecretKey::generate(&mut OsRng)))
    }

    fn from_secret(secret: Box<SecretKey>) -> TargetKeypair {
        let public = PublicKey::from_bytes(secret.public_key().to_bytes());
        TargetKeypair { secret, public }
    }

    /// Builds a keypair from raw secret key bytes (for tests and key import).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> TargetKeypair {
        let bytes = Zeroizing::new(bytes);
        TargetKeypair::from_secret(Box::new(SecretKey::from_bytes(*bytes)))
    }

    /// The public half, which is what gets published for sealing.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// Id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    pub(crate) fn secret_key(&self) -> &SecretKey {
        &self.secret
    }

    /// 32 bytes derived from the secret half for one purpose, named by
    /// `context` (SHA-256 of the context, a zero byte and the secret): a
    /// second key that only holders of this one have, with no file of its
    /// own, which changes when the target is re-keyed. Different contexts
    /// give unrelated bytes, none of which reveals the secret.
    pub fn derive_seed(&self, context: &str) -> Zeroizing<[u8; 32]> {
        use sha2::Digest as _;
        let secret = Zeroizing::new(self.secret.to_bytes());
        let mut hash = sha2::Sha256::new();
        hash.update(context.as_bytes());
        hash.update([0u8]);
        hash.update(secret.as_slice());
        Zeroizing::new(hash.finalize().into())
    }

    /// Writes the keypair to a new key file with mode `0600`.
    ///
    /// The file is written under a temporary name in the same directory and then
    /// hard-linked into place, so the key file either appears complete or not at all,
    /// and an existing file is never overwritten ([`Error::KeyFileExists`]). Missing
    /// parent directories are created with mode `0700`.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err(parent))?;
        }
        if fs::symlink_metadata(path).is_ok() {
            return Err(Error::KeyFileExists {
                path: path.to_path_buf(),
            });
        }
        let tmp = temp_path(path);
        let written = write_new_key_file(&tmp, &self.contents());
        let linked = written.and_then(|()| fs::hard_link(&tmp, path));
        // The temporary name must go whether or not the link worked.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::KeyFileExists {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(Error::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn contents(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(self.secret.to_bytes());
        let mut out = Zeroizing::new(String::with_capacity(HEADER.len() + 48));
        out.push_str(HEADER);
        out.push('\n');
        STANDARD.encode_string(*secret, &mut out);
        out.push('\n');
        out
    }

    /// Loads a key file written by [`TargetKeypair::save`].
    ///
    /// Refuses, with [`Error::LoosePermissions`], a file with any group or other
    /// permission bit set (`0600` and `0400` are fine; `0640`, `0604`, `0644` are not).
    pub fn load(path: &Path) -> Result<TargetKeypair, Error> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |reason| Error::InvalidKeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io_err)?;
        // Check the mode of the file we opened, not of whatever the path names now.
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(invalid("not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & GROUP_OTHER_BITS != 0 {
            return Err(Error::LoosePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = Zeroizing::new(String::with_capacity(128));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => invalid("not UTF-8 text"),
                _ => io_err(e),
            })?;
        if text.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(invalid("far too large to be a key file"));
        }
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(invalid("first line is not \"sealrun-target-key v1\""));
        }
        let encoded = lines
            .next()
            .ok_or_else(|| invalid("missing the key line"))?;
        if lines.any(|line| !line.trim().is_empty()) {
            return Err(invalid("unexpected lines after the key"));
        }
        let decoded = Zeroizing::new(
            STANDARD
                .decode(encoded.trim())
                .map_err(|_| invalid("key line is not valid base64"))?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| invalid("key is not 32 bytes"))?;
        Ok(TargetKeypair::from_secret_bytes(bytes))
    }

    /// Loads the key file, or generates a keypair and saves it there if there is no
    /// file yet. The flag says whether a new key was created.
    pub fn load_or_generate(path: &Path) -> Result<(TargetKeypair, bool), Error> {
        match TargetKeypair::load(path) {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other.map(|kp| (kp, false)),
        }
        let keypair = TargetKeypair::generate();
        match keypair.save(path) {
            Ok(()) => Ok((keypair, true)),
            // Another process created it between our load and save: use theirs.
            Err(Error::KeyFileExists { .. }) => TargetKeypair::load(path).map(|kp| (kp, false)),
            Err(e) => Err(e),
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        rand_suffix()
    ));
    path.with_file_name(name)
}

fn rand_suffix() -> u64 {
    use crypto_box::aead::rand_core::RngCore as _;
    OsRng.next_u64()
}

fn write_new_key_file(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The umask can only clear bits from 0600, but be explicit rather than rely on it.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

impl Drop for TargetKeypair {
    fn drop(&mut self) {
        // crypto_box 0.9's SecretKey zeroizes its scalar on drop but not its copy of
        // the key bytes. Overwriting the boxed key in place with the all-zero key runs
        // that drop and then replaces the bytes at the same address with zeros;
        // black_box keeps the compiler from discarding the store as dead.
        *self.secret = SecretKey::from_bytes([0u8; 32]);
        std::hint::black_box(&mut *self.secret);
    }
}

impl fmt::Debug for TargetKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetKeypair")
            .field("key_id", &self.key_id().0)
            .finish_non_exhaustive()
    }
}
