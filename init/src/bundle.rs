//! The bundle: the framed message the agent writes to the container's stdin
//! and the shim reads back. The wire layout is documented in the crate root.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt as _;

use zeroize::Zeroizing;

use crate::checksum::Crc32;

/// The four bytes every bundle starts with ("SealRun Init Bundle").
pub const MAGIC: [u8; 4] = *b"SRIB";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the body: magic, version, flags, two reserved bytes, body length.
pub const HEADER_LEN: usize = 12;
/// Bytes after the body: the CRC-32 of header and body.
pub const TRAILER_LEN: usize = 4;
/// Bytes before each record's payload: tag and payload length.
pub const RECORD_HEADER_LEN: usize = 5;

/// Record tag of an environment variable.
pub const TAG_ENV: u8 = 0x01;
/// Record tag saying the run's input follows the bundle on stdin (empty
/// payload). Required, not optional: a shim that did not know it would hand
/// the command an empty stdin, and the command would act on no input as if
/// it were all of it.
pub const TAG_STDIN: u8 = 0x02;
/// Record tag of the run's deadline: 8 bytes, big-endian seconds after the
/// shim starts at which it kills the command (SIGKILL) and so ends the
/// container, whether or not an agent is still there to stop it. Required:
/// a shim that ignored it would let a command outlive a dead agent.
pub const TAG_DEADLINE: u8 = 0x03;
/// Record tag of the run's nonce: [`NONCE_LEN`] random bytes the agent
/// chooses per run and the shim puts in its own error line
/// ([`ShimNonce::signed_error_prefix`]), so that the agent can tell that line
/// from one the command prints. Required: a shim that skipped it would write
/// lines the agent takes for the command's.
pub const TAG_NONCE: u8 = 0x04;
/// Length of a [`ShimNonce`], in bytes.
pub const NONCE_LEN: usize = 16;
/// Record tag of one argument of the command, the program first: the
/// records, in order, are the command's argv. Required: a shim that skipped
/// them would run whatever its own command line says. A shim started with
/// `--` and a command line refuses a bundle that carries argv too (two
/// commands, one of them silently ignored); a shim started waiting
/// ([`WAITING_ENTRYPOINT`](crate::WAITING_ENTRYPOINT)) refuses one without.
pub const TAG_ARG: u8 = 0x05;
/// Most arguments one bundle may carry (the program included).
pub const MAX_ARGS: usize = 4096;
/// Records whose tag has this bit set are optional: a decoder that does not know
/// the tag skips the record. Unknown tags without it are refused, so that a
/// setting the shim must honour is never silently ignored.
pub const OPTIONAL_TAG_BIT: u8 = 0x80;

/// Most environment variables one bundle may carry.
pub const MAX_ENTRIES: usize = 1024;
/// Longest variable name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest variable value, in bytes.
///
/// Linux refuses to `execve` a program with any single `NAME=VALUE` string
/// (NUL included) longer than `MAX_ARG_STRLEN` = 128 KiB, so a longer value
/// could be decoded but never reach the command.
pub const MAX_VALUE_LEN: usize = 128 * 1024 - MAX_NAME_LEN - 2;
/// Largest body, in bytes. Linux gives argv and environment together a quarter
/// of the stack limit (2 MiB with the usual 8 MiB), and the container's own
/// environment and the command line need room too.
pub const MAX_BODY_LEN: usize = 1024 * 1024;

/// Why a bundle could not be built or read. No variant carries a name or value
/// from the bundle, so an error can be printed or logged as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The input ended before the bundle did: the agent wrote nothing, wrote a
    /// partial bundle, or the container's stdin was not attached.
    #[error("bundle is short: expected {expected} bytes, received {received}")]
    Truncated {
        /// Bytes needed to complete what has been read so far.
        expected: usize,
        /// Bytes received before the input ended.
        received: usize,
    },
    /// The input does not start with [`MAGIC`].
    #[error("input is not a sealrun bundle (bad magic)")]
    BadMagic,
    /// The bundle's version is not [`VERSION`].
    #[error("unsupported bundle version {found} (this shim reads version {VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The flags or reserved header bytes are not zero.
    #[error("bundle header has reserved bits set")]
    ReservedBits,
    /// The body would exceed [`MAX_BODY_LEN`].
    #[error("bundle body of {len} bytes exceeds the limit of {MAX_BODY_LEN}")]
    TooLarge {
        /// The body length declared or needed.
        len: usize,
    },
    /// The trailer does not match the header and body.
    #[error("bundle checksum mismatch")]
    ChecksumMismatch,
    /// A record does not fit its body or payload.
    #[error("malformed bundle record at body offset {offset}: {reason}")]
    MalformedRecord {
        /// Offset of the record within the body.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A record with an unknown tag that is not marked optional.
    #[error("unknown required bundle record tag {tag:#04x}")]
    UnknownRecord {
        /// The tag.
        tag: u8,
    },
    /// More than [`MAX_ENTRIES`] variables.
    #[error("bundle has more than {MAX_ENTRIES} environment variables")]
    TooManyEntries,
    /// More than [`MAX_ARGS`] arguments.
    #[error("bundle has more than {MAX_ARGS} arguments")]
    TooManyArgs,
    /// An argument contains a NUL byte (no `execve` argument can), or the
    /// program (the first argument) is empty.
    #[error("argument #{index} is invalid: {reason}")]
    InvalidArg {
        /// Position of the argument, the program being #0.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A variable name is empty, too long, not UTF-8, or contains `=` or NUL.
    #[error("environment variable #{index} has an invalid name: {reason}")]
    InvalidName {
        /// Position of the variable in the bundle.
        index: usize,
        /// What is wrong with the name.
        reason: &'static str,
    },
    /// A variable name appears twice.
    #[error("environment variable #{index} repeats an earlier name")]
    DuplicateName {
        /// Position of the second occurrence.
        index: usize,
    },
    /// A value is longer than [`MAX_VALUE_LEN`].
    #[error(
        "environment variable #{index} has a value of {len} bytes, over the limit of {MAX_VALUE_LEN}"
    )]
    ValueTooLong {
        /// Position of the variable in the bundle.
        index: usize,
        /// Length of the value.
        len: usize,
    },
    /// A value contains a NUL byte, which no process environment can hold.
    #[error("environment variable #{index} has a value containing a NUL byte")]
    ValueContainsNul {
        /// Position of the variable in the bundle.
        index: usize,
    },
    /// Reading the input failed.
    #[error("cannot read bundle: {0}")]
    Io(#[from] io::Error),
}

/// A run's nonce: how the shim signs the one error line it writes when the
/// command never ran, so that the agent can tell it from the same text
/// printed by the command (which does not know the nonce).
///
/// Known only to the agent and the shim: it travels in the bundle, the shim
/// makes itself non-dumpable before reading it (so the command, even as the
/// same user, cannot read the shim's memory or `/proc/1/*`), and the shim
/// writes it only when no command process exists (the command failed to
/// start). Wiped on drop; `Debug` does not show it.
///
/// ```
/// use sealrun_init::ShimNonce;
/// let nonce = ShimNonce::from_bytes([0xab; 16]);
/// assert_eq!(
///     &*nonce.signed_error_prefix(),
///     "sealrun-init[abababababababababababababababab]: error: "
/// );
/// assert_eq!(format!("{nonce:?}"), "ShimNonce(***)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ShimNonce(Zeroizing<[u8; NONCE_LEN]>);

impl ShimNonce {
    /// A nonce of these bytes (the agent draws them at random per run).
    pub fn from_bytes(bytes: [u8; NONCE_LEN]) -> Self {
        ShimNonce(Zeroizing::new(bytes))
    }

    /// How the shim's signed error line begins: [`crate::ERROR_PREFIX`]
    /// with the nonce, in hex and brackets, after the shim's name
    /// (`sealrun-init[<32 hex digits>]: error: `). The agent replaces
    /// [`Self::signature`] with [`crate::SHIM_NAME`] before the line reaches
    /// the run's output, so people see the plain prefix.
    pub fn signed_error_prefix(&self) -> Zeroizing<String> {
        let mut out = self.signature();
        out.push_str(&crate::ERROR_PREFIX[crate::SHIM_NAME.len()..]);
        out
    }

    /// `sealrun-init[<32 hex digits>]`: what a signed line starts with in
    /// place of [`crate::SHIM_NAME`].
    pub fn signature(&self) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = Zeroizing::new(String::with_capacity(
            crate::SHIM_NAME.len() + 2 + 2 * NONCE_LEN + crate::ERROR_PREFIX.len(),
        ));
        out.push_str(crate::SHIM_NAME);
        out.push('[');
        for b in self.0.iter() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out.push(']');
        out
    }
}

impl fmt::Debug for ShimNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShimNonce(***)")
    }
}

/// One variable. The name is not secret; the value is, and is wiped on drop.
struct EnvVar {
    name: String,
    value: Zeroizing<Vec<u8>>,
}

/// What the shim needs for one run: the command's argv (when the shim waits
/// for its run, [`crate::WAITING_ENTRYPOINT`]), the environment variables
/// (names and values: plain ones and secrets) to set on top of the
/// container's environment, and the run's settings (input, deadline, nonce).
///
/// Values are zeroized when the bundle is dropped, and `Debug` shows names only.
///
/// ```
/// let mut bundle = sealrun_init::Bundle::new();
/// bundle.push_env("DB_PASSWORD", b"hunter2hunter2")?;
/// assert_eq!(format!("{bundle:?}"), r#"Bundle { env: {"DB_PASSWORD": ***} }"#);
/// # Ok::<(), sealrun_init::BundleError>(())
/// ```
pub struct Bundle {
    /// The command's argv, the program first; empty when the shim's own
    /// command line names the command.
    argv: Vec<Vec<u8>>,
    env: Vec<EnvVar>,
    /// Whether the run's input follows the bundle.
    stdin: bool,
    /// Seconds after start at which the shim kills the command.
    deadline: Option<u64>,
    /// The run's nonce, for the shim's signed error line.
    nonce: Option<ShimNonce>,
    /// Length of the encoded body, kept so `push_env` can enforce
    /// [`MAX_BODY_LEN`] and `encode` can allocate exactly once.
    body_len: usize,
}

impl Bundle {
    /// An empty bundle. The agent sends one even for a run without secrets:
    /// the shim always waits for a bundle before it starts the command.
    pub fn new() -> Self {
        Bundle {
            argv: Vec::new(),
            env: Vec::new(),
            stdin: false,
            deadline: None,
            nonce: None,
            body_len: 0,
        }
    }

    /// Sets the run's nonce, with which the shim signs its error line
    /// ([`ShimNonce`]). The agent sets one on every bundle; a shim given
    /// none writes its errors unsigned, and the agent then takes them for
    /// the command's output.
    pub fn set_nonce(&mut self, nonce: ShimNonce) {
        if self.nonce.is_none() {
            self.body_len += RECORD_HEADER_LEN + NONCE_LEN;
        }
        self.nonce = Some(nonce);
    }

    /// The run's nonce, if the bundle carries one.
    pub fn nonce(&self) -> Option<&ShimNonce> {
        self.nonce.as_ref()
    }

    /// Sets the run's deadline: `secs` after the shim starts, it kills the
    /// command (SIGKILL), which ends the container.
    pub fn set_deadline(&mut self, secs: u64) {
        if self.deadline.is_none() {
            self.body_len += RECORD_HEADER_LEN + 8;
        }
        self.deadline = Some(secs);
    }

    /// The run's deadline, in seconds after the shim starts.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    /// Says that the run's input follows the bundle on stdin: the shim then
    /// leaves stdin to the command (which reads everything after the bundle)
    /// instead of replacing it with an empty one.
    pub fn attach_stdin(&mut self) {
        if !self.stdin {
            self.stdin = true;
            self.body_len += RECORD_HEADER_LEN;
        }
    }

    /// Whether the run's input follows the bundle on stdin.
    pub fn stdin_follows(&self) -> bool {
        self.stdin
    }

    /// Adds the variable `name=value`, checking every limit now so that
    /// [`encode`](Self::encode) cannot fail and the shim never refuses a bundle
    /// this crate produced.
    pub fn push_env(&mut self, name: &str, value: &[u8]) -> Result<(), BundleError> {
        let index = self.env.len();
        if index >= MAX_ENTRIES {
            return Err(BundleError::TooManyEntries);
        }
        check_name(index, name.as_bytes())?;
        if value.len() > MAX_VALUE_LEN {
            return Err(BundleError::ValueTooLong {
                index,
                len: value.len(),
            });
        }
        if value.contains(&0) {
            return Err(BundleError::ValueContainsNul { index });
        }
        if self.env.iter().any(|var| var.name == name) {
            return Err(BundleError::DuplicateName { index });
        }
        let body_len = self.body_len + RECORD_HEADER_LEN + 2 + name.len() + value.len();
        if body_len > MAX_BODY_LEN {
            return Err(BundleError::TooLarge { len: body_len });
        }
        self.env.push(EnvVar {
            name: name.to_owned(),
            // `to_vec` allocates exactly once, so no stale copy of the value is
            // left behind in a buffer freed by a reallocation.
            value: Zeroizing::new(value.to_vec()),
        });
        self.body_len = body_len;
        Ok(())
    }

    /// Appends one argument of the command (the program first), checking
    /// every limit now, as [`push_env`](Self::push_env) does.
    pub fn push_arg(&mut self, arg: &[u8]) -> Result<(), BundleError> {
        let index = self.argv.len();
        if index >= MAX_ARGS {
            return Err(BundleError::TooManyArgs);
        }
        if arg.contains(&0) {
            return Err(BundleError::InvalidArg {
                index,
                reason: "contains a NUL byte",
            });
        }
        if index == 0 && arg.is_empty() {
            return Err(BundleError::InvalidArg {
                index,
                reason: "the program is empty",
            });
        }
        let body_len = self.body_len + RECORD_HEADER_LEN + arg.len();
        if body_len > MAX_BODY_LEN {
            return Err(BundleError::TooLarge { len: body_len });
        }
        self.argv.push(arg.to_vec());
        self.body_len = body_len;
        Ok(())
    }

    /// The command's argv, the program first; empty when the bundle names no
    /// command.
    pub fn argv(&self) -> &[Vec<u8>] {
        &self.argv
    }

    /// Takes the command out of the bundle: the program and its arguments,
    /// or `None` when the bundle names none.
    pub fn take_argv(&mut self) -> Option<(OsString, Vec<OsString>)> {
        if self.argv.is_empty() {
            return None;
        }
        let taken: usize = self.argv.iter().map(|a| RECORD_HEADER_LEN + a.len()).sum();
        self.body_len -= taken;
        let mut argv = std::mem::take(&mut self.argv)
            .into_iter()
            .map(OsString::from_vec);
        let program = argv.next()?;
        Some((program, argv.collect()))
    }

    /// The variables, in the order they were pushed.
    pub fn env(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.env
            .iter()
            .map(|var| (var.name.as_str(), var.value.as_slice()))
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.env.len()
    }

    /// Whether the bundle carries no variable.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
    }

    /// Length of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body_len + TRAILER_LEN
    }

    /// The bundle in wire form, in a buffer that is wiped when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let total = self.encoded_len();
        // One allocation of the exact size: growing would leave copies of
        // values in freed memory.
        let mut out = Zeroizing::new(Vec::with_capacity(total));
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        // `push_env` keeps `body_len` <= MAX_BODY_LEN (1 MiB), which fits a u32;
        // the same holds for every record and name length below.
        out.extend_from_slice(&(self.body_len as u32).to_be_bytes());
        for arg in &self.argv {
            out.push(TAG_ARG);
            out.extend_from_slice(&(arg.len() as u32).to_be_bytes());
            out.extend_from_slice(arg);
        }
        for var in &self.env {
            let payload_len = 2 + var.name.len() + var.value.len();
            out.push(TAG_ENV);
            out.extend_from_slice(&(payload_len as u32).to_be_bytes());
            out.extend_from_slice(&(var.name.len() as u16).to_be_bytes());
            out.extend_from_slice(var.name.as_bytes());
            out.extend_from_slice(&var.value);
        }
        if self.stdin {
            out.push(TAG_STDIN);
            out.extend_from_slice(&0u32.to_be_bytes());
        }
        if let Some(secs) = self.deadline {
            out.push(TAG_DEADLINE);
            out.extend_from_slice(&8u32.to_be_bytes());
            out.extend_from_slice(&secs.to_be_bytes());
        }
        if let Some(nonce) = &self.nonce {
            out.push(TAG_NONCE);
            out.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
            out.extend_from_slice(&nonce.0[..]);
        }
        let mut crc = Crc32::new();
        crc.update(&out);
        out.extend_from_slice(&crc.finish().to_be_bytes());
        debug_assert_eq!(out.len(), total);
        out
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle::new()
    }
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Stands in for a value in `Debug` output.
        struct Masked;
        impl fmt::Debug for Masked {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }
        /// The variables as a map from name to `***`.
        struct Env<'a>(&'a [EnvVar]);
        impl fmt::Debug for Env<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|var| (&var.name, Masked)))
                    .finish()
            }
        }
        let mut d = f.debug_struct("Bundle");
        if !self.argv.is_empty() {
            // How many, not what: an argument can quote anything.
            d.field("argc", &self.argv.len());
        }
        d.field("env", &Env(&self.env));
        if self.stdin {
            d.field("stdin", &true);
        }
        if let Some(secs) = self.deadline {
            d.field("deadline_secs", &secs);
        }
        if let Some(nonce) = &self.nonce {
            d.field("nonce", nonce);
        }
        d.finish()
    }
}

/// Reads one bundle from `reader`, consuming exactly its bytes: the header's
/// length field says how many follow, so whatever the writer sends after the
/// bundle stays unread.
///
/// `reader` should be unbuffered (a `File` or a pipe, not `std::io::stdin()`,
/// whose buffer would swallow bytes past the bundle).
pub fn read_bundle<R: Read>(mut reader: R) -> Result<Bundle, BundleError> {
    let mut header = [0u8; HEADER_LEN];
    let received = read_full(&mut reader, &mut header)?;
    if received < HEADER_LEN {
        return Err(BundleError::Truncated {
            expected: HEADER_LEN,
            received,
        });
    }
    let body_len = parse_header(&header)?;

    let mut rest = Zeroizing::new(vec![0u8; body_len + TRAILER_LEN]);
    let received = read_full(&mut reader, &mut rest)?;
    if received < rest.len() {
        return Err(BundleError::Truncated {
            expected: HEADER_LEN + rest.len(),
            received: HEADER_LEN + received,
        });
    }
    let (body, trailer) = rest.split_at(body_len);
    let mut crc = Crc32::new();
    crc.update(&header);
    crc.update(body);
    if crc.finish().to_be_bytes() != trailer {
        return Err(BundleError::ChecksumMismatch);
    }
    decode_body(body)
}

/// Checks the fixed header and returns the body length.
fn parse_header(header: &[u8; HEADER_LEN]) -> Result<usize, BundleError> {
    if header[..4] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(BundleError::UnsupportedVersion { found: header[4] });
    }
    if header[5..8] != [0, 0, 0] {
        return Err(BundleError::ReservedBits);
    }
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if body_len > MAX_BODY_LEN {
        return Err(BundleError::TooLarge { len: body_len });
    }
    Ok(body_len)
}

/// Decodes the records of a checksummed body.
fn decode_body(body: &[u8]) -> Result<Bundle, BundleError> {
    let mut bundle = Bundle::new();
    let mut offset = 0;
    while offset < body.len() {
        let malformed = |reason| BundleError::MalformedRecord { offset, reason };
        let Some(record_header) = body.get(offset..offset + RECORD_HEADER_LEN) else {
            return Err(malformed("record header runs past the end of the body"));
        };
        let tag = record_header[0];
        let len = u32::from_be_bytes([
            record_header[1],
            record_header[2],
            record_header[3],
            record_header[4],
        ]) as usize;
        let start = offset + RECORD_HEADER_LEN;
        let Some(payload) = body.get(start..).and_then(|tail| tail.get(..len)) else {
            return Err(malformed("record payload runs past the end of the body"));
        };
        match tag {
            TAG_ENV => {
                let Some((name_len, rest)) = payload.split_first_chunk::<2>() else {
                    return Err(malformed(
                        "environment record is shorter than its name length",
                    ));
                };
                let name_len = usize::from(u16::from_be_bytes(*name_len));
                if name_len > rest.len() {
                    return Err(malformed(
                        "environment name runs past the end of the record",
                    ));
                }
                let (name, value) = rest.split_at(name_len);
                let index = bundle.len();
                check_name(index, name)?;
                let name = std::str::from_utf8(name).map_err(|_| BundleError::InvalidName {
                    index,
                    reason: "not UTF-8",
                })?;
                bundle.push_env(name, value)?;
            }
            TAG_ARG => {
                bundle.push_arg(payload)?;
            }
            TAG_STDIN => {
                if !payload.is_empty() {
                    return Err(malformed("stdin record has a payload"));
                }
                if bundle.stdin {
                    return Err(malformed("stdin record appears twice"));
                }
                bundle.attach_stdin();
            }
            TAG_DEADLINE => {
                let Ok(secs) = <[u8; 8]>::try_from(payload) else {
                    return Err(malformed("deadline record is not 8 bytes"));
                };
                if bundle.deadline.is_some() {
                    return Err(malformed("deadline record appears twice"));
                }
                bundle.set_deadline(u64::from_be_bytes(secs));
            }
            TAG_NONCE => {
                let Ok(bytes) = <[u8; NONCE_LEN]>::try_from(payload) else {
                    return Err(malformed("nonce record is not 16 bytes"));
                };
                if bundle.nonce.is_some() {
                    return Err(malformed("nonce record appears twice"));
                }
                bundle.set_nonce(ShimNonce::from_bytes(bytes));
            }
            tag if tag & OPTIONAL_TAG_BIT != 0 => {}
            tag => return Err(BundleError::UnknownRecord { tag }),
        }
        offset = start + len;
    }
    Ok(bundle)
}

/// Checks a variable name: 1..=[`MAX_NAME_LEN`] bytes, no `=`, no NUL.
fn check_name(index: usize, name: &[u8]) -> Result<(), BundleError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 255 bytes"
    } else if name.contains(&b'=') {
        "contains '='"
    } else if name.contains(&0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(BundleError::InvalidName { index, reason })
}

/// Fills `buf` from `reader` until it is full or the input ends; returns the
/// number of bytes read. Never reads past `buf`.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    //! Frames built by hand (with a valid checksum) to reach the record parser.
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A version-1 frame around `body`, with a correct checksum.
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        let mut crc = Crc32::new();
        crc.update(&out);
        out.extend_from_slice(&crc.finish().to_be_bytes());
        out
    }

    /// A record with `tag` and `payload`.
    fn record(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// An environment record payload.
    fn env_payload(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = (name.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn the_encoder_writes_the_documented_layout() {
        let mut bundle = Bundle::new();
        bundle.push_env("A", b"xy").unwrap();
        let expected = frame(&record(TAG_ENV, &env_payload(b"A", b"xy")));
        assert_eq!(&bundle.encode()[..], &expected[..]);
        assert_eq!(&expected[..12], b"SRIB\x01\x00\x00\x00\x00\x00\x00\x0a");
    }

    #[test]
    fn the_stdin_record_is_encoded_after_the_variables_and_round_trips() {
        let mut bundle = Bundle::new();
        bundle.push_env("A", b"xy").unwrap();
        bundle.attach_stdin();
        bundle.attach_stdin();
        let mut body = record(TAG_ENV, &env_payload(b"A", b"xy"));
        body.extend(record(TAG_STDIN, b""));
        assert_eq!(&bundle.encode()[..], &frame(&body)[..]);
        assert_eq!(bundle.encoded_len(), frame(&body).len());
        let read = read_bundle(&frame(&body)[..]).unwrap();
        assert!(read.stdin_follows());
        assert!(!read_bundle(&frame(&[])[..]).unwrap().stdin_follows());
    }

    #[test]
    fn the_deadline_record_round_trips_and_a_malformed_one_is_refused() {
        let mut bundle = Bundle::new();
        bundle.set_deadline(90);
        let encoded = bundle.encode();
        assert_eq!(
            &encoded[..],
            &frame(&record(TAG_DEADLINE, &90u64.to_be_bytes()))[..]
        );
        assert_eq!(bundle.encoded_len(), encoded.len());
        assert_eq!(read_bundle(&encoded[..]).unwrap().deadline(), Some(90));
        let mut twice = record(TAG_DEADLINE, &1u64.to_be_bytes());
        twice.extend(record(TAG_DEADLINE, &1u64.to_be_bytes()));
        for input in [frame(&record(TAG_DEADLINE, b"short")), frame(&twice)] {
            let err = read_bundle(&input[..]).unwrap_err();
            assert!(matches!(err, BundleError::MalformedRecord { .. }), "{err}");
        }
    }

    #[test]
    fn the_nonce_record_round_trips_and_a_malformed_one_is_refused() {
        let mut bundle = Bundle::new();
        bundle.set_nonce(ShimNonce::from_bytes([7; NONCE_LEN]));
        let encoded = bundle.encode();
        assert_eq!(
            &encoded[..],
            &frame(&record(TAG_NONCE, &[7; NONCE_LEN]))[..]
        );
        assert_eq!(bundle.encoded_len(), encoded.len());
        let read = read_bundle(&encoded[..]).unwrap();
        assert_eq!(read.nonce(), Some(&ShimNonce::from_bytes([7; NONCE_LEN])));
        assert!(read_bundle(&frame(&[])[..]).unwrap().nonce().is_none());
        let mut twice = record(TAG_NONCE, &[1; NONCE_LEN]);
        twice.extend(record(TAG_NONCE, &[1; NONCE_LEN]));
        for input in [frame(&record(TAG_NONCE, b"short")), frame(&twice)] {
            let err = read_bundle(&input[..]).unwrap_err();
            assert!(matches!(err, BundleError::MalformedRecord { .. }), "{err}");
        }
    }

    #[test]
    fn the_nonce_never_shows_in_debug() {
        let mut bundle = Bundle::new();
        bundle.set_nonce(ShimNonce::from_bytes([0xcd; NONCE_LEN]));
        let shown = format!("{bundle:?}");
        assert!(!shown.contains("cdcd") && !shown.contains("205"), "{shown}");
        assert!(shown.contains("nonce: ShimNonce(***)"), "{shown}");
    }

    #[test]
    fn a_stdin_record_with_a_payload_or_given_twice_is_refused() {
        let with_payload = frame(&record(TAG_STDIN, b"x"));
        let mut twice = record(TAG_STDIN, b"");
        twice.extend(record(TAG_STDIN, b""));
        for input in [with_payload, frame(&twice)] {
            let err = read_bundle(&input[..]).unwrap_err();
            assert!(matches!(err, BundleError::MalformedRecord { .. }), "{err}");
        }
    }

    #[test]
    fn optional_records_of_unknown_tags_are_skipped() {
        let mut body = record(0x80, b"a future optional setting");
        body.extend(record(TAG_ENV, &env_payload(b"K", b"v")));
        body.extend(record(0xFF, b""));
        let bundle = read_bundle(&frame(&body)[..]).unwrap();
        assert_eq!(bundle.env().collect::<Vec<_>>(), [("K", &b"v"[..])]);
    }

    #[test]
    fn required_records_of_unknown_tags_are_refused() {
        for tag in [0x00, 0x06, 0x7F] {
            let err = read_bundle(&frame(&record(tag, b"must be honoured"))[..]).unwrap_err();
            assert!(
                matches!(err, BundleError::UnknownRecord { tag: t } if t == tag),
                "{err}"
            );
        }
    }

    #[test]
    fn a_record_header_cut_by_the_end_of_the_body_is_refused() {
        let err = read_bundle(&frame(&[TAG_ENV, 0, 0])[..]).unwrap_err();
        assert!(
            matches!(err, BundleError::MalformedRecord { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_record_payload_longer_than_the_body_is_refused() {
        let mut body = record(TAG_ENV, &env_payload(b"K", b"v"));
        body[4] += 1; // payload length one past the end
        let err = read_bundle(&frame(&body)[..]).unwrap_err();
        assert!(
            matches!(err, BundleError::MalformedRecord { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_huge_record_length_is_refused_without_overflow() {
        let body = [TAG_ENV, 0xFF, 0xFF, 0xFF, 0xFF];
        let err = read_bundle(&frame(&body)[..]).unwrap_err();
        assert!(matches!(err, BundleError::MalformedRecord { .. }), "{err}");
    }

    #[test]
    fn an_environment_record_without_a_name_length_is_refused() {
        let err = read_bundle(&frame(&record(TAG_ENV, b"K"))[..]).unwrap_err();
        assert!(matches!(err, BundleError::MalformedRecord { .. }), "{err}");
    }

    #[test]
    fn a_name_length_past_the_record_is_refused() {
        let mut payload = env_payload(b"K", b"");
        payload[1] = 2;
        let err = read_bundle(&frame(&record(TAG_ENV, &payload))[..]).unwrap_err();
        assert!(matches!(err, BundleError::MalformedRecord { .. }), "{err}");
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused() {
        let body = record(TAG_ENV, &env_payload(b"K\xFF", b"v"));
        let err = read_bundle(&frame(&body)[..]).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::InvalidName {
                    index: 0,
                    reason: "not UTF-8"
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn decoded_names_and_values_obey_the_same_rules_as_pushed_ones() {
        let cases: [(&[u8], &[u8]); 4] =
            [(b"", b"v"), (b"A=B", b"v"), (b"A\0", b"v"), (b"A", b"v\0")];
        for (name, value) in cases {
            let body = record(TAG_ENV, &env_payload(name, value));
            assert!(
                read_bundle(&frame(&body)[..]).is_err(),
                "{name:?}={value:?}"
            );
        }
        let mut body = record(TAG_ENV, &env_payload(b"K", b"1"));
        body.extend(record(TAG_ENV, &env_payload(b"K", b"2")));
        let err = read_bundle(&frame(&body)[..]).unwrap_err();
        assert!(
            matches!(err, BundleError::DuplicateName { index: 1 }),
            "{err}"
        );
    }

    #[test]
    fn a_frame_with_more_than_the_maximum_entries_is_refused() {
        let mut body = Vec::new();
        for i in 0..=MAX_ENTRIES {
            body.extend(record(
                TAG_ENV,
                &env_payload(format!("V{i}").as_bytes(), b""),
            ));
        }
        let err = read_bundle(&frame(&body)[..]).unwrap_err();
        assert!(matches!(err, BundleError::TooManyEntries), "{err}");
    }
}
