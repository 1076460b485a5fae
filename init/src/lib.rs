//! `sealrun-init`: how a run's secrets reach its container without Docker ever
//! storing them, and the container init that receives them.
//!
//! Docker writes a container's `Env` in plain text to
//! `/var/lib/docker/containers/<id>/config.v2.json` and shows it to anyone who
//! can run `docker inspect`. So the agent never puts a secret in a container's
//! configuration. Instead it bind-mounts the static `sealrun-init` binary
//! read-only into the container, makes it the entrypoint
//! ([`ENTRYPOINT`] followed by the user's argv), starts the container with
//! stdin attached, and writes a [`Bundle`] to that stdin. The shim reads exactly
//! the bundle, detaches stdin, sets the bundle's variables on top of the
//! container's environment and runs the command as its child, acting as the
//! container's init (in the manner of tini) until the command exits. When
//! the run has input, the bundle says so and the shim leaves stdin to the
//! command, which reads the input the agent streams after the bundle.
//!
//! This library is the bundle codec both sides share: the agent encodes, the
//! shim decodes.
//!
//! ```
//! use sealrun_init::{Bundle, read_bundle};
//!
//! // Agent side: build the bundle and write `wire` to the container's stdin.
//! let mut bundle = Bundle::new();
//! bundle.push_env("DB_PASSWORD", b"correct horse battery staple")?;
//! let wire = bundle.encode(); // zeroized on drop
//!
//! // Shim side: read exactly one bundle; what follows it stays unread.
//! let input = [&wire[..], b"not for the command"].concat();
//! let mut reader = &input[..];
//! let received = read_bundle(&mut reader)?;
//! assert_eq!(
//!     received.env().collect::<Vec<_>>(),
//!     [("DB_PASSWORD", &b"correct horse battery staple"[..])]
//! );
//! assert_eq!(reader, b"not for the command");
//! # Ok::<(), sealrun_init::BundleError>(())
//! ```
//!
//! # Wire format (version 1)
//!
//! All integers are big-endian. A bundle is a 12-byte header, a body of
//! records, and a 4-byte trailer:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic, `b"SRIB"` ([`MAGIC`]) |
//! | 4 | 1 | version, `1` ([`VERSION`]) |
//! | 5 | 1 | flags, must be `0` |
//! | 6 | 2 | reserved, must be `0` |
//! | 8 | 4 | `body_len`: length of the body, at most [`MAX_BODY_LEN`] |
//! | 12 | `body_len` | body: zero or more records, back to back |
//! | 12 + `body_len` | 4 | CRC-32 (ISO-HDLC, as zlib) of bytes `0 .. 12 + body_len` |
//!
//! Each record is a tag (1 byte), a payload length (4 bytes), and the payload.
//! The records must fill the body exactly.
//!
//! | tag | record | payload |
//! |---|---|---|
//! | `0x01` ([`TAG_ENV`]) | environment variable | name length (2 bytes), name (UTF-8, 1..=[`MAX_NAME_LEN`] bytes, no `=` or NUL), value (the rest, at most [`MAX_VALUE_LEN`] bytes, no NUL) |
//! | `0x02` ([`TAG_STDIN`]) | the run's input follows the bundle on stdin, at most once | empty |
//! | `0x03` ([`TAG_DEADLINE`]) | the run's deadline, at most once: that many seconds after it starts, the shim kills the command (SIGKILL) and the container ends, even if no agent is left to stop it | 8 bytes, big-endian |
//! | `0x04` ([`TAG_NONCE`]) | the run's nonce, at most once: the shim signs its error line with it ([`ShimNonce`]) | [`NONCE_LEN`] (16) bytes |
//! | `0x05` ([`TAG_ARG`]) | one argument of the command, the program first, in order; at most [`MAX_ARGS`]; only for a shim started with [`WAITING_ENTRYPOINT`] | the argument (no NUL; the program not empty) |
//! | `0x80..=0xFF` ([`OPTIONAL_TAG_BIT`] set) | reserved for optional per-run settings | skipped by this version |
//! | any other | reserved for required per-run settings | refused by this version ([`BundleError::UnknownRecord`]) |
//!
//! Without a [`TAG_STDIN`] record the shim replaces its stdin with an empty
//! one before the command starts, so nothing written after the bundle can
//! reach the command; with it, the command inherits stdin and reads exactly
//! what follows the bundle (the run's input, streamed by the agent) until the
//! agent closes it.
//!
//! At most [`MAX_ENTRIES`] variables; each name at most once. The length field
//! lets the reader consume exactly the bundle and nothing after it; the length
//! and the trailer together catch a short or garbled bundle. Future settings
//! are new record tags (optional ones are invisible to older shims); an
//! incompatible change bumps [`VERSION`], which older shims refuse.
//!
//! # Exit codes of the shim
//!
//! | code | meaning |
//! |---|---|
//! | the command's | the command exited normally |
//! | 128 + *n* ([`EXIT_SIGNAL_BASE`]) | the command was killed by signal *n* (143 for SIGTERM, 137 for SIGKILL) |
//! | 125 ([`EXIT_INIT_FAILED`]) | the shim failed before the command started: the bundle was malformed or short (the usual case), the shim was called without `-- CMD`, or OS setup failed |
//! | 126 ([`EXIT_NOT_EXECUTABLE`]) | the command was found but could not be executed (permissions, not an executable format, a directory) |
//! | 127 ([`EXIT_NOT_FOUND`]) | the command was not found (on `PATH`, or at the path given) |
//!
//! The command can exit 125-127 itself; when the shim does, it has first written
//! one line to stderr. That line never contains bundle content (neither names
//! nor values). Before the bundle has been read (a malformed or short
//! bundle, a usage error) the line starts with [`ERROR_PREFIX`]
//! (`sealrun-init: error: `); once the bundle has given the shim the run's
//! nonce ([`TAG_NONCE`]), a failure to start the command is *signed*: the
//! line starts with [`ShimNonce::signed_error_prefix`]
//! (`sealrun-init[<nonce in hex>]: error: `).
//!
//! # The error channel: why the agent can believe a signed line
//!
//! The command shares the shim's stderr, so it can print
//! `sealrun-init: error: ...` and exit 125 to look as if it never started.
//! The agent therefore reports "the command did not run" only for a *signed*
//! first line of stderr (with an exit code of 125-127); anything else,
//! unsigned shim lines included, is the command's own output and exit code.
//! The command cannot sign a line because it never learns the nonce:
//!
//! - the nonce reaches the shim in the bundle, which the shim reads before
//!   the command exists; it is never put in the command's environment,
//!   arguments or files, and wiped once the command has started;
//! - the shim makes itself non-dumpable (`PR_SET_DUMPABLE` 0) before it reads
//!   the bundle, so `/proc/1/mem`, `/proc/1/environ` and `/proc/1/fd` are
//!   closed to the command even when it runs as the shim's user (root
//!   included: the agent drops `CAP_SYS_PTRACE` with every capability);
//! - the shim writes a signed line only when the command failed to start,
//!   when no process of the command exists to read it back out of the
//!   stderr pipe.
//!
//! A bundle the shim cannot read gives it no nonce: that failure is
//! reported unsigned, and so as the command's own exit 125 (the line is still
//! in the run's output). The agent writes every bundle itself, so this
//! means the agent's stream to the container broke, which the agent
//! usually sees as a failed write first.
//!
//! # Signals and processes
//!
//! The shim runs as PID 1. It forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT,
//! SIGUSR1 and SIGUSR2 to the command (its direct child, not the child's
//! process group), reaps every process that exits in the container (orphans
//! are re-parented to PID 1), and exits as soon as the command does; the kernel
//! then kills whatever is left in the container. Signals that arrive before the
//! command starts are held and forwarded once it runs. SIGKILL (e.g. after
//! `docker stop`'s grace period) kills the shim and with it the whole container.
//! When not PID 1 the shim makes itself a child subreaper, so orphans are still
//! reaped by it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bundle;
mod checksum;

pub use bundle::{
    Bundle, BundleError, HEADER_LEN, MAGIC, MAX_ARGS, MAX_BODY_LEN, MAX_ENTRIES, MAX_NAME_LEN,
    MAX_VALUE_LEN, NONCE_LEN, OPTIONAL_TAG_BIT, RECORD_HEADER_LEN, ShimNonce, TAG_ARG,
    TAG_DEADLINE, TAG_ENV, TAG_NONCE, TAG_STDIN, TRAILER_LEN, VERSION, read_bundle,
};

/// Where the agent bind-mounts the shim (read-only) inside every run container.
/// A dot-directory at the root, so it cannot shadow anything an image relies on.
pub const CONTAINER_PATH: &str = "/.sealrun/init";

/// The container `Entrypoint`; the user's argv follows as the container `Cmd`.
pub const ENTRYPOINT: [&str; 2] = [CONTAINER_PATH, "--"];

/// The `Entrypoint` of a container that waits for its whole run: the
/// command's argv arrives in the bundle ([`TAG_ARG`]) with everything else,
/// so the container's configuration holds nothing about the run. It can be
/// created and started before there is a run (a warm pool). Followed by
/// [`IDLE_FLAG`] and a number of seconds, the shim gives up (exit
/// [`EXIT_INIT_FAILED`]) if no bundle has begun to arrive by then.
pub const WAITING_ENTRYPOINT: [&str; 2] = [CONTAINER_PATH, "--wait"];

/// `--idle-secs N`: how long a waiting shim waits for its bundle to begin.
pub const IDLE_FLAG: &str = "--idle-secs";

/// Exit code when the shim fails before the command starts (malformed or short
/// bundle, usage error, OS setup failure).
pub const EXIT_INIT_FAILED: i32 = 125;
/// Exit code when the command exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit code when the command is not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Added to the signal number when the command is killed by a signal.
pub const EXIT_SIGNAL_BASE: i32 = 128;

/// The shim's name, as its messages begin.
pub const SHIM_NAME: &str = "sealrun-init";

/// How the one line the shim writes to stderr when it fails (exit 125-127)
/// begins, as people read it. A command can print it too, so the agent
/// trusts only the signed form ([`ShimNonce::signed_error_prefix`]: the
/// run's nonce after the shim's name), which it turns back into this.
pub const ERROR_PREFIX: &str = "sealrun-init: error: ";
