//! Property tests: random secret sets, random surrounding bytes, random encodings of the
//! secrets embedded in the output, random chunk splits (1-byte chunks included). The
//! concatenated streamed output never contains a secret or an embedded encoding of one, and
//! always equals the output of redacting the whole input at once.
//!
//! The encodings are computed here, independently of the crate's own encoders.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use sealrun_redactor::{Redactor, StreamRedactor};

/// How a secret is printed.
#[derive(Debug, Clone)]
enum Encoding {
    Raw,
    /// base64 of `prefix + secret + suffix`: the secret at any alignment inside a longer text.
    Base64 {
        alphabet: u8,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
    },
    HexLower,
    HexUpper,
    Percent,
    Json,
}

/// The bytes printed, and the part of them that must never survive masking.
fn encode(secret: &[u8], encoding: &Encoding) -> (Vec<u8>, Vec<u8>) {
    match encoding {
        Encoding::Raw => (secret.to_vec(), secret.to_vec()),
        Encoding::Base64 {
            alphabet,
            prefix,
            suffix,
        } => {
            let text = [prefix.as_slice(), secret, suffix.as_slice()].concat();
            let encoded = match alphabet % 3 {
                0 => STANDARD.encode(&text),
                1 => URL_SAFE.encode(&text),
                _ => URL_SAFE_NO_PAD.encode(&text),
            }
            .into_bytes();
            // The characters all of whose bits come from the secret.
            let first = (8 * prefix.len()).div_ceil(6);
            let last = 8 * (prefix.len() + secret.len()) / 6;
            let core = encoded[first..last].to_vec();
            (encoded, core)
        }
        Encoding::HexLower | Encoding::HexUpper => {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            let hex = if matches!(encoding, Encoding::HexUpper) {
                hex.to_uppercase()
            } else {
                hex
            };
            (hex.clone().into_bytes(), hex.into_bytes())
        }
        Encoding::Percent => {
            let mut out = Vec::new();
            for &b in secret {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b);
                } else {
                    out.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
            (out.clone(), out)
        }
        Encoding::Json => match std::str::from_utf8(secret) {
            Ok(text) => {
                let quoted = serde_json::to_string(text).unwrap();
                let inner = quoted.as_bytes()[1..quoted.len() - 1].to_vec();
                (quoted.into_bytes(), inner)
            }
            Err(_) => (secret.to_vec(), secret.to_vec()),
        },
    }
}

fn encoding() -> impl Strategy<Value = Encoding> {
    let filler = || proptest::collection::vec(any::<u8>(), 0..5);
    prop_oneof![
        3 => Just(Encoding::Raw),
        3 => (any::<u8>(), filler(), filler()).prop_map(|(alphabet, prefix, suffix)| Encoding::Base64 { alphabet, prefix, suffix }),
        1 => Just(Encoding::HexLower),
        1 => Just(Encoding::HexUpper),
        1 => Just(Encoding::Percent),
        1 => Just(Encoding::Json),
    ]
}

/// A secret's bytes: printable text or anything at all, never `*` (a mask next to other text
/// could otherwise spell a secret that was not in the input).
fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec((0x20u8..0x7f).prop_filter("no *", |&b| b != b'*'), 8..48),
        proptest::collection::vec(any::<u8>().prop_filter("no *", |&b| b != b'*'), 8..48),
        // Tokens sharing a prefix, like `ghp_...` tokens.
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'_')], 4..20)
            .prop_map(|tail| [b"ghp_".as_slice(), &tail].concat()),
    ]
}

/// Output bytes: noise from a small alphabet (near misses are frequent) or any bytes.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                Just(b'g'),
                Just(b'h'),
                Just(b'p'),
                Just(b'_'),
                Just(b'a'),
                Just(b'\n')
            ],
            0..30
        ),
        proptest::collection::vec(any::<u8>(), 0..30),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    secrets: Vec<Vec<u8>>,
    input: Vec<u8>,
    /// Byte strings that must not appear in the output.
    forbidden: Vec<Vec<u8>>,
    cuts: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    proptest::collection::vec(secret(), 1..6)
        .prop_flat_map(|secrets| {
            let n = secrets.len();
            let part = prop_oneof![
                noise().prop_map(|n| (None, n)),
                (0..n, encoding()).prop_map(|(k, e)| (Some((k, e)), Vec::new()))
            ];
            (
                Just(secrets),
                proptest::collection::vec(part, 0..16),
                proptest::collection::vec(0usize..2000, 0..20),
            )
        })
        .prop_map(|(secrets, parts, mut cuts)| {
            let mut input = Vec::new();
            let mut forbidden = secrets.clone();
            for (embedded, noise) in parts {
                match embedded {
                    Some((k, encoding)) => {
                        let (printed, core) = encode(&secrets[k], &encoding);
                        input.extend_from_slice(&printed);
                        forbidden.push(core);
                    }
                    None => input.extend_from_slice(&noise),
                }
            }
            cuts.sort_unstable();
            Case {
                secrets,
                input,
                forbidden,
                cuts,
            }
        })
}

/// Streams `input` cut at `cuts` (clamped to the input) and returns the concatenated output.
fn streamed(redactor: &Arc<Redactor>, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut stream = StreamRedactor::new(Arc::clone(redactor));
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.clamp(at, input.len());
        stream.push(&input[at..cut], &mut out);
        assert!(stream.pending_len() < redactor.max_pattern_len());
        at = cut;
    }
    stream.push(&input[at..], &mut out);
    stream.finish(&mut out);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_secret_or_embedded_encoding_survives_any_split(case in case()) {
        let redactor = Arc::new(Redactor::new(&case.secrets).unwrap());
        let out = streamed(&redactor, &case.input, &case.cuts);
        for needle in &case.forbidden {
            prop_assert!(!contains(&out, needle), "{:?} survived in {:?}", String::from_utf8_lossy(needle), String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn streamed_output_equals_whole_buffer_output(case in case()) {
        let redactor = Arc::new(Redactor::new(&case.secrets).unwrap());
        prop_assert_eq!(streamed(&redactor, &case.input, &case.cuts), redactor.redact(&case.input));
    }

    #[test]
    fn one_byte_chunks_give_the_whole_buffer_output(case in case()) {
        let redactor = Arc::new(Redactor::new(&case.secrets).unwrap());
        let cuts: Vec<usize> = (1..case.input.len()).collect();
        let out = streamed(&redactor, &case.input, &cuts);
        for needle in &case.forbidden {
            prop_assert!(!contains(&out, needle));
        }
        prop_assert_eq!(out, redactor.redact(&case.input));
    }

    #[test]
    fn arbitrary_bytes_stream_like_the_whole_buffer(
        secrets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 8..24), 1..4),
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(0usize..600, 0..30),
    ) {
        let redactor = Arc::new(Redactor::new(&secrets).unwrap());
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(streamed(&redactor, &input, &cuts), redactor.redact(&input));
    }
}
