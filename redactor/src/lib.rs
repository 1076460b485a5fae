//! Streaming, chunk-boundary-safe, encoding-aware secret masking for sealrun.
//!
//! sealrun promises that no stored or streamed log ever holds a secret value. This crate keeps
//! that promise on the agent, before output leaves the host: a [`Redactor`] is built from the
//! secret values of a job, and a [`StreamRedactor`] per output stream masks every occurrence of
//! a secret, or of one of its [derived forms](#derived-forms), as `***`.
//!
//! ```
//! use std::sync::Arc;
//! use sealrun_redactor::{Redactor, StreamRedactor};
//!
//! let redactor = Arc::new(Redactor::new(["s3cr3t-t0ken"])?);
//!
//! // Whole buffers at once...
//! assert_eq!(redactor.redact(b"token=s3cr3t-t0ken ok"), b"token=*** ok");
//!
//! // ...or a stream, in chunks that may split a secret anywhere.
//! let mut stdout = StreamRedactor::new(Arc::clone(&redactor));
//! let mut out = Vec::new();
//! for chunk in [&b"Authorization: s3cr"[..], b"3t-t0", b"ken\nbase64: czNjcjN0LXQwa2Vu\n"] {
//!     stdout.push(chunk, &mut out);
//! }
//! stdout.finish(&mut out);
//! assert_eq!(out, b"Authorization: ***\nbase64: ***\n");
//!
//! // Values too short to mask safely are refused when they are set.
//! assert!(Redactor::new(["hunter2"]).is_err());
//! # Ok::<(), sealrun_redactor::Error>(())
//! ```
//!
//! # What is masked
//!
//! Every byte of the output that lies inside an occurrence of any pattern (a secret or one of
//! its derived forms) is secret; each maximal run of secret bytes is replaced by one [`MASK`],
//! `***`, whose fixed length reveals nothing. Overlapping, nested and touching occurrences
//! therefore all end up masked, as one `***`. This covers everything leftmost-longest matching
//! masks and also the occurrences it skips (with secrets `ipsum dolor` and `dolor sit`,
//! `Lorem ipsum dolor sit amet` becomes `Lorem *** amet`, not `Lorem *** sit amet`). Matching
//! is byte-wise and case-sensitive; input need not be UTF-8.
//!
//! Secrets must be at least [`MIN_SECRET_LEN`] bytes long: masking shorter values would mask
//! ordinary words (GitLab enforces the same 8; GitHub masking one-character values is a known
//! source of garbled logs). Derived forms shorter than that are not added.
//!
//! # Derived forms
//!
//! For each secret `v`, the redactor first takes the *readings* of `v`: `v` itself; `v` without
//! trailing `\r`/`\n` (what `$(cat file)` yields); and `v` without surrounding `"` or `'`
//! quotes. For every reading `x` it masks:
//!
//! - `x` itself;
//! - **base64**, standard (`+/`) and URL-safe (`-_`) alphabets, padded and unpadded, at the
//!   three byte alignments `x` can take inside a longer base64 text: for `k` = 0, 1, 2 filler
//!   bytes before `x`, the characters of `base64(filler + x)` determined by `x` alone (the
//!   stable core, used when more bytes follow `x`), and the core plus the final partial
//!   character with and without `=` padding (used when `x` ends the encoded text; masking the
//!   padding hides the length modulo 3). A long encoding is also masked line by line as
//!   `base64` (76 columns) and `openssl base64`/PEM (64 columns) wrap it;
//! - **hex**, lower and upper case;
//! - **percent-encoding** as common URL encoders write it: RFC 3986 strict (`%20`, every byte
//!   but `A-Za-z0-9-._~` escaped), form encoding (`+` for space), JavaScript
//!   `encodeURIComponent` (keeps `!'()*`), Python `quote` (keeps `/`), Java `URLEncoder`
//!   (keeps `*`, escapes `~`, `+` for space), and lower-case hex digits;
//! - **JSON string escaping**: `\"`, `\\`, `\n` `\r` `\t` `\b` `\f`, `\u00XX` for other control
//!   bytes; also with `\/` (PHP), with `<>&` as `\u003c\u003e\u0026` (Go's `encoding/json`),
//!   with non-ASCII as `\uXXXX` (Python's `ensure_ascii`), and JSON escaped twice (a JSON
//!   document inside a JSON string, such as kubectl's last-applied-configuration);
//! - **Go `%q`** (`strconv.Quote`): `\a`..`\v`, `\xNN` for other control bytes and bytes that
//!   are not UTF-8;
//! - **quoting**, when `x` contains `'`: shell single quotes (`'\''` and `'"'"'`, as `set -x`
//!   and Python's `shlex.quote` write them) and SQL/YAML/PowerShell doubling (`''`);
//! - **HTML/XML escaping** of `&<>"'`: XML (`&quot;` `&apos;`), Go `html.EscapeString`
//!   (`&#34;` `&#39;`) and Python `html.escape` (`&quot;` `&#x27;`);
//! - **`echo $VAR`**: every whitespace run turned into one space, leading and trailing
//!   whitespace dropped;
//! - for a **multi-line** `x`: every line (without a trailing `\r`, and also trimmed of
//!   surrounding whitespace) of at least [`MIN_SECRET_LEN`] bytes, except PEM armor lines
//!   (`-----BEGIN ...-----`, `-----END ...-----`: public, and masking them would garble every
//!   other key the job prints), and `x` with `\n` turned into `\r\n` (printed through a
//!   PTY).
//!
//! Not covered: encodings of encodings (other than JSON twice), case changes, backslash
//! escaping as bash's `printf %q` writes it, whitespace runs
//! other than those listed inside a multi-line secret (a line shorter than [`MIN_SECRET_LEN`]
//! can then leak on its own), and the first partial base64 character at alignments 1 and 2
//! (at most 4 bits of the first byte).
//!
//! # Streaming
//!
//! A [`StreamRedactor`] holds back only the longest suffix of the data seen so far that is a
//! proper prefix of some pattern, so clean output flows through at once and memory is bounded
//! by [`Redactor::max_pattern_len`] whatever the input size. The concatenated output of a
//! stream equals [`Redactor::redact`] of the concatenated input for every split: the two run
//! the same code.
//!
//! # Speed
//!
//! A plain Aho-Corasick automaton walks every byte once there are more than a few dozen
//! patterns, and a job with 20 secrets already has hundreds. Every pattern here is at least
//! [`MIN_SECRET_LEN`] bytes long, so the redactor reads the output only at a sparse grid of
//! positions (one every 9 bytes for secrets of 12 bytes or more), where it looks a 4- or
//! 8-byte gram up in a Bloom filter of the patterns' first grams; only the rare hits are
//! confirmed against a table of candidate patterns. A sampled position always falls inside
//! the first `stride` bytes of an occurrence, so no occurrence is missed. The crate's README
//! has the measured throughput (GB/s, against memcpy and a naive masker).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod coverage;
mod error;
mod extend;
mod forms;
mod index;
mod redactor;
mod scanner;
mod stream;
mod structured;

pub use error::Error;
pub use redactor::Redactor;
pub use stream::StreamRedactor;

/// Shortest secret accepted, in bytes.
///
/// Masking shorter values would mask ordinary words all over the output (and a short secret
/// is weak anyway). GitLab Runner enforces the same minimum; the sampling prefilter also relies
/// on it: the longer the shortest pattern, the fewer bytes it reads.
pub const MIN_SECRET_LEN: usize = 8;

/// Longest secret accepted, in bytes (64 KiB: a PEM bundle or a kubeconfig fits).
///
/// A stream holds back up to one pattern length of output, and derived forms can be six times
/// the secret's length, so this bounds a stream's memory.
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// Length of the runs the guarantee is about: no run of `min(len(s), RUN_LEN)` consecutive
/// bytes of a secret `s` survives in the output under any covered transform.
pub const RUN_LEN: usize = 12;

/// What every masked run of output is replaced by.
pub const MASK: &[u8] = b"***";
