//! Fuzzes `StreamRedactor`: random secrets, random output with copies of them embedded, and
//! random chunk splits. The streamed output must equal the whole-buffer output, and no secret
//! may survive in it.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sealrun_redactor::{MIN_SECRET_LEN, Redactor, StreamRedactor};

#[derive(Debug, Arbitrary)]
struct Input {
    secrets: Vec<Vec<u8>>,
    /// Output bytes, each followed by a copy of `secrets[k % n]` when `Some(k)`.
    pieces: Vec<(Vec<u8>, Option<u8>)>,
    /// Chunk lengths, cycled (0 means a 1-byte chunk).
    chunks: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let secrets: Vec<Vec<u8>> = input
        .secrets
        .into_iter()
        .filter(|s| (MIN_SECRET_LEN..=96).contains(&s.len()))
        .take(8)
        .collect();
    let Ok(redactor) = Redactor::new(&secrets) else {
        panic!("secrets of accepted lengths were refused");
    };
    let redactor = Arc::new(redactor);
    let mut text = Vec::new();
    for (bytes, embed) in input.pieces {
        text.extend_from_slice(&bytes);
        if let (Some(k), false) = (embed, secrets.is_empty()) {
            text.extend_from_slice(&secrets[usize::from(k) % secrets.len()]);
        }
    }

    let whole = redactor.redact(&text);

    let mut stream = StreamRedactor::new(Arc::clone(&redactor));
    let mut out = Vec::new();
    let mut rest = text.as_slice();
    let mut sizes = input.chunks.iter().cycle();
    while !rest.is_empty() {
        let size = sizes
            .next()
            .map_or(rest.len(), |&s| usize::from(s).max(1))
            .min(rest.len());
        stream.push(&rest[..size], &mut out);
        assert!(stream.pending_len() < redactor.max_pattern_len().max(1));
        rest = &rest[size..];
    }
    stream.finish(&mut out);
    assert_eq!(
        out, whole,
        "streamed output differs from whole-buffer output"
    );

    // A secret containing `*` could be spelled by a mask next to other text; the others must
    // never appear.
    for secret in secrets.iter().filter(|s| !s.contains(&b'*')) {
        assert!(
            !whole.windows(secret.len()).any(|w| w == secret.as_slice()),
            "a secret survived"
        );
    }
});
