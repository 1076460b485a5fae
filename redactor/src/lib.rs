//! Streaming, chunk-boundary-safe, encoding-aware secret masking for sealrun.
//!
//! sealrun promises that no stored or streamed log ever holds a secret value. This crate keeps
//! that promise on the agent, before output leaves the host: a [`Redactor`] is built from the
//! secret values of a job, and a [`StreamRedactor`] per output stream masks, as `***`, every
//! run of a secret that the output holds under any [covered transform](#covered-transforms).
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
//! assert_eq!(stdout.masks_written(), 2);
//!
//! // Values too short to mask safely are refused when they are set.
//! assert!(Redactor::new(["hunter2"]).is_err());
//! # Ok::<(), sealrun_redactor::Error>(())
//! ```
//!
//! # The guarantee
//!
//! For every secret `s` and every covered transform `T`, decoding the masked output with `T`'s
//! inverse, at any alignment, yields no run of `min(len(s), 12)` ([`RUN_LEN`]) consecutive
//! bytes of `s`. Prefixes, suffixes and any other piece of 12 bytes or more of a secret are
//! therefore masked too, raw or encoded, wherever they stand in the output and however the
//! output is split into chunks. `tests/guarantee.rs` checks this against the real tools
//! (`base64`, `xxd`, `od`, `hexdump`, `iconv`, bash, Python, `jq`, busybox) by decoding the
//! output with each inverse.
//!
//! Each maximal masked stretch of output becomes one [`MASK`], `***`, whose fixed length
//! reveals nothing; overlapping and touching stretches merge. Layout that a transform puts
//! between the characters of an encoding (line breaks, indentation, the offset and ASCII
//! columns of a dump) is not masked: a wrapped base64 of a key becomes `***` on every line.
//! Matching is byte-wise; input need not be UTF-8.
//!
//! Secrets must be at least [`MIN_SECRET_LEN`] bytes long: masking shorter values would mask
//! ordinary words (GitLab enforces the same 8), and so a secret of 8 to 11 bytes is masked
//! only whole.
//!
//! # Covered transforms
//!
//! Each applied to the secret alone or to the secret inside longer text, at any offset:
//!
//! - **raw**, and any piece of 12 bytes or more (prefixes, truncations); printed through a
//!   PTY (`\n` as `\r\n`); `echo $VAR` (whitespace runs as one space; here a run counts
//!   characters);
//! - **base64**, standard and URL-safe, padded or not, at each of the three byte alignments a
//!   piece can take in a longer text, unwrapped or wrapped at any width of 4 or more
//!   characters, with `\n` or `\r\n`, with or without indentation after each line break. The
//!   first and last characters of a piece mix its bits with the bytes around it: they count
//!   toward the run only where the bytes around are the output's own;
//! - **hex**, lower or upper case: contiguous, wrapped (`xxd -p`; lines of 12 characters or
//!   more), with a space, colon or comma between bytes (`od -An -tx1`, `openssl`), grouped
//!   two bytes at a time (`xxd`), as `\xNN` escapes, and in the dump layouts with offset and
//!   ASCII columns (`xxd`, `hexdump -C`, `od -tx1`), across their line breaks;
//! - **`od -c`** character dumps, with or without offsets, across line breaks;
//! - **percent-encoding** as six common URL encoders write it (RFC 3986, form encoding with
//!   `+` for space, `encodeURIComponent`, Python `quote`, Java `URLEncoder`, lower-case
//!   digits), and twice;
//! - **escaped strings**: JSON (plain, with `\/`, Go's HTML-safe `\u003c`, Python's
//!   `ensure_ascii`, and JSON inside JSON), Go `%q`, Python `repr` and `ascii` of `str` and
//!   `bytes` (either quote), bash `printf %q` (backslashes, or `$'...'` for control
//!   characters), `declare -p` (`"..."` with `\"`, `\$`, `` \` ``, `\\`), ANSI-C `$'...'`,
//!   shell single quotes (`'\''`, `'"'"'`), SQL doubling (`''`), HTML/XML entities;
//! - **UTF-16**, little- or big-endian, with or without a BOM (the secret is read as UTF-8);
//! - **structured secrets**: a secret that is a JSON document, or YAML, `.env`
//!   (`KEY=VALUE`, `export`, quotes) or INI lines (two lines or more), is also masked value by
//!   value: every string value of 8 bytes or more, as a tool prints it (JSON and YAML escapes
//!   decoded, quotes removed, block scalars without their indentation), is a secret of its own
//!   with all the forms above, so extracting one field (`jq -r .private_key_id`,
//!   `grep PASS .env | cut -d= -f2`) never leaks it. Keys are not values.
//!
//! A secret's readings are covered as well: without trailing line breaks (`$(cat file)`),
//! without surrounding quotes, and each line of a multi-line secret of 8 to 11 bytes (longer
//! lines are runs already).
//!
//! # Not covered, and why
//!
//! - **Case changes, reversal, and deliberate re-encoding by a hostile command** (XOR,
//!   encryption, base32, one byte per line, interleaving): a command can always transform its
//!   own input beyond recognition. Masking protects against accidents and ordinary tools;
//!   policies and approvals decide which secrets a command may hold.
//! - **Runs shorter than 12 bytes** of a secret longer than 12 bytes, and a secret of 8 to 11
//!   bytes printed in pieces: a shorter run would mask ordinary words and hashes.
//! - **PEM armor** (`-----BEGIN ...-----` and `-----END ...-----` lines, with the line breaks
//!   next to them) is public: its bytes do not count toward the 12, so printing another key's
//!   armor masks nothing.
//! - **Encodings of encodings** other than the ones listed (JSON twice, percent twice).
//! - **Partial base64 characters**: the first and last characters of a base64 piece, which
//!   carry up to 4 bits of a secret's first and last bytes mixed with other bytes, stay
//!   unless the run needs them.
//! - **Narrow wrapping**: base64 wrapped at fewer than 4 characters a line, hex wrapped at
//!   fewer than 12 (a piece's lines are then too short to be sampled); `od` dumps that repeat
//!   lines as `*`; `hexdump` without `-C` (16-bit words, byte-swapped).
//! - **Values `jq`-style tools compute** rather than extract (a concatenation of fields, a
//!   number), and string values of structured secrets shorter than 8 bytes.
//! - A secret containing `*` could be spelled across a mask by the output around it.
//!
//! # How it works
//!
//! Each secret's *values* (the secret, its readings, its structured values) are encoded once
//! per transform into *forms* that know which characters encode which byte. A run of a value
//! printed under a transform is a piece of a form that covers whole tokens, so the scanner
//! looks for pieces of forms instead of enumerating every window of every encoding: the index
//! holds one entry per character of each form (bounded, linear in the secret's length:
//! [`Redactor::index_entries`], [`Redactor::heap_bytes`]), and never a pattern per window.
//! The output is read only at a sparse grid of positions (every [`Redactor::stride`] bytes,
//! 9 for secrets of 12 bytes or more), where a 4-byte gram is looked up in a Bloom filter.
//! Four bytes of log text often spell four bytes of some form of a large set (any four hex
//! digits do), so for values of 12 bytes or more a hit is confirmed by the two 8-byte grams
//! around it in a second filter (a piece of such a value that the grid must find has 12
//! characters or more between layout breaks, so one of the two lies inside it); what passes
//! names
//! candidate positions in forms, and each is extended both ways into a maximal piece,
//! skipping what the transform puts between characters. A piece covering 12 bytes of its
//! value is masked. Since every qualifying piece is at least `stride + 3` characters long
//! between layout breaks, the grid cannot miss one; a piece wrapped over lines shorter than
//! that (base64 at 76 columns can leave 8 and 8) is met by the gram spanning each line break.
//!
//! # Streaming
//!
//! A [`StreamRedactor`] holds back only what could still begin a masked stretch: a piece that
//! reaches the end of the data seen so far (it may go on), and a suffix of a few bytes that
//! could begin one. Clean output flows through at once, and a stream never holds more than
//! [`Redactor::max_hold_back`] bytes. The concatenated output of a stream equals
//! [`Redactor::redact`] of the concatenated input for every split: the two run the same code,
//! and the property tests and the fuzz target check it.
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
/// on it: the longer the shortest qualifying piece, the fewer bytes it reads.
pub const MIN_SECRET_LEN: usize = 8;

/// Longest secret accepted, in bytes (64 KiB: a PEM bundle or a kubeconfig fits).
///
/// A stream holds back at most one piece of a form (spread over its layout), and a form is at
/// most ten times the secret's length, so this bounds a stream's memory; the index grows
/// linearly with it (about 700 bytes per secret byte, see the crate README).
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// Length of the runs the guarantee is about: no run of `min(len(s), RUN_LEN)` consecutive
/// bytes of a secret `s` survives in the output under any covered transform.
pub const RUN_LEN: usize = 12;

/// What every masked run of output is replaced by.
pub const MASK: &[u8] = b"***";
