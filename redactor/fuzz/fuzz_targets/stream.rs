//! Fuzzes `StreamRedactor` with the logic of `logic.rs` (also run on stable Rust, for as long
//! as asked, by `tests/fuzz_stable.rs`): random secrets, output printing runs of them raw,
//! as base64 (any alignment and wrap width), hex, percent-encoded or JSON-escaped, random
//! chunk splits. The streamed output must equal the whole-buffer output, and no run of 12
//! bytes of a secret may survive any of those decodings.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "logic.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::run(data));
