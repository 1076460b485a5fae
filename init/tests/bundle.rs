//! The bundle codec through its public API: what the agent encodes, the shim
//! reads back exactly, and anything else is refused with a typed error.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sealrun_init::{
    Bundle, BundleError, HEADER_LEN, MAX_ARGS, MAX_BODY_LEN, MAX_ENTRIES, MAX_NAME_LEN,
    MAX_VALUE_LEN, TRAILER_LEN, read_bundle,
};

/// A bundle with a few variables, one value not UTF-8 and one multi-line.
fn sample() -> Bundle {
    let mut bundle = Bundle::new();
    bundle.push_env("DB_PASSWORD", b"hunter2 hunter2").unwrap();
    bundle
        .push_env("KUBECONFIG_DATA", b"line one\nline two=\xff\xfe")
        .unwrap();
    bundle.push_env("EMPTY", b"").unwrap();
    bundle
}

fn owned(bundle: &Bundle) -> Vec<(String, Vec<u8>)> {
    bundle
        .env()
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect()
}

#[test]
fn a_bundle_round_trips_with_names_values_and_order() {
    let bundle = sample();
    let decoded = read_bundle(&bundle.encode()[..]).unwrap();
    assert_eq!(owned(&decoded), owned(&bundle));
}

#[test]
fn an_empty_bundle_is_sixteen_bytes_and_round_trips() {
    let wire = Bundle::new().encode();
    assert_eq!(wire.len(), HEADER_LEN + TRAILER_LEN);
    assert!(read_bundle(&wire[..]).unwrap().is_empty());
}

#[test]
fn encoded_len_predicts_the_encoding() {
    let bundle = sample();
    assert_eq!(bundle.encoded_len(), bundle.encode().len());
}

#[test]
fn reading_consumes_exactly_the_bundle_and_leaves_what_follows() {
    let mut input = sample().encode().to_vec();
    input.extend_from_slice(b"typed by someone else");
    let mut reader = &input[..];
    read_bundle(&mut reader).unwrap();
    assert_eq!(reader, b"typed by someone else");
}

#[test]
fn a_bundle_cut_at_any_byte_is_reported_short() {
    let wire = sample().encode();
    for cut in 0..wire.len() {
        match read_bundle(&wire[..cut]) {
            Err(BundleError::Truncated { expected, received }) => {
                assert_eq!(received, cut);
                assert!(expected > cut);
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    let wire = sample().encode();
    for byte in 0..wire.len() {
        for bit in 0..8 {
            let mut corrupt = wire.to_vec();
            corrupt[byte] ^= 1 << bit;
            assert!(
                read_bundle(&corrupt[..]).is_err(),
                "flip of bit {bit} of byte {byte} accepted"
            );
        }
    }
}

#[test]
fn a_bad_magic_is_refused() {
    let mut wire = sample().encode().to_vec();
    wire[0] = b'X';
    assert!(matches!(read_bundle(&wire[..]), Err(BundleError::BadMagic)));
}

#[test]
fn another_version_is_refused_and_named() {
    let mut wire = sample().encode().to_vec();
    wire[4] = 2;
    let err = read_bundle(&wire[..]).unwrap_err();
    assert!(matches!(err, BundleError::UnsupportedVersion { found: 2 }));
    assert_eq!(
        err.to_string(),
        "unsupported bundle version 2 (this shim reads version 1)"
    );
}

#[test]
fn reserved_header_bits_are_refused() {
    for byte in 5..8 {
        let mut wire = sample().encode().to_vec();
        wire[byte] = 1;
        assert!(
            matches!(read_bundle(&wire[..]), Err(BundleError::ReservedBits)),
            "byte {byte}"
        );
    }
}

#[test]
fn an_oversized_body_length_is_refused_from_the_header_alone() {
    let mut header = Bundle::new().encode()[..HEADER_LEN].to_vec();
    header[8..12].copy_from_slice(&(MAX_BODY_LEN as u32 + 1).to_be_bytes());
    let err = read_bundle(&header[..]).unwrap_err();
    assert!(matches!(err, BundleError::TooLarge { len } if len == MAX_BODY_LEN + 1));
}

#[test]
fn a_read_error_is_reported_as_io() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("pipe broke"))
        }
    }
    assert!(matches!(read_bundle(Failing), Err(BundleError::Io(_))));
}

#[test]
fn debug_shows_names_but_never_values() {
    let shown = format!("{:?}", sample());
    assert_eq!(
        shown,
        r#"Bundle { env: {"DB_PASSWORD": ***, "KUBECONFIG_DATA": ***, "EMPTY": ***} }"#
    );
    assert!(!shown.contains("hunter2"));
}

#[test]
fn errors_about_a_garbled_secret_never_contain_it() {
    let mut bundle = Bundle::new();
    bundle.push_env("TOKEN", b"topsecretvalue").unwrap();
    let wire = bundle.encode();
    for cut in 0..wire.len() {
        let err = read_bundle(&wire[..cut]).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("topsecret"));
    }
    let mut corrupt = wire.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let err = read_bundle(&corrupt[..]).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("topsecret"));
}

#[test]
fn invalid_names_are_refused_when_pushed() {
    let long = "N".repeat(MAX_NAME_LEN + 1);
    for name in ["", "A=B", "A\0B", long.as_str()] {
        let err = Bundle::new().push_env(name, b"v").unwrap_err();
        assert!(
            matches!(err, BundleError::InvalidName { index: 0, .. }),
            "{name:?}: {err}"
        );
    }
    Bundle::new()
        .push_env(&"N".repeat(MAX_NAME_LEN), b"v")
        .unwrap();
}

#[test]
fn a_value_with_a_nul_byte_is_refused_when_pushed() {
    let err = Bundle::new().push_env("K", b"a\0b").unwrap_err();
    assert!(matches!(err, BundleError::ValueContainsNul { index: 0 }));
}

#[test]
fn a_value_over_the_limit_is_refused_and_one_at_the_limit_round_trips() {
    let err = Bundle::new()
        .push_env("K", &vec![b'x'; MAX_VALUE_LEN + 1])
        .unwrap_err();
    assert!(matches!(err, BundleError::ValueTooLong { index: 0, len } if len == MAX_VALUE_LEN + 1));
    let mut bundle = Bundle::new();
    bundle
        .push_env(&"N".repeat(MAX_NAME_LEN), &vec![b'x'; MAX_VALUE_LEN])
        .unwrap();
    assert_eq!(read_bundle(&bundle.encode()[..]).unwrap().len(), 1);
    // NAME=VALUE plus its NUL fits Linux's MAX_ARG_STRLEN (128 KiB) exactly.
    assert_eq!(MAX_NAME_LEN + 1 + MAX_VALUE_LEN + 1, 128 * 1024);
}

#[test]
fn a_repeated_name_is_refused_when_pushed() {
    let mut bundle = Bundle::new();
    bundle.push_env("K", b"1").unwrap();
    let err = bundle.push_env("K", b"2").unwrap_err();
    assert!(matches!(err, BundleError::DuplicateName { index: 1 }));
    assert_eq!(bundle.len(), 1);
}

#[test]
fn the_entry_limit_is_enforced_when_pushing() {
    let mut bundle = Bundle::new();
    for i in 0..MAX_ENTRIES {
        bundle.push_env(&format!("V{i}"), b"").unwrap();
    }
    assert!(matches!(
        bundle.push_env("ONE_MORE", b""),
        Err(BundleError::TooManyEntries)
    ));
    assert_eq!(
        read_bundle(&bundle.encode()[..]).unwrap().len(),
        MAX_ENTRIES
    );
}

#[test]
fn the_body_limit_is_enforced_when_pushing() {
    let mut bundle = Bundle::new();
    let value = vec![b'x'; MAX_VALUE_LEN];
    let mut pushed = 0;
    let err = loop {
        match bundle.push_env(&format!("V{pushed}"), &value) {
            Ok(()) => pushed += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, BundleError::TooLarge { len } if len > MAX_BODY_LEN));
    assert!(bundle.encoded_len() <= HEADER_LEN + MAX_BODY_LEN + TRAILER_LEN);
    assert_eq!(read_bundle(&bundle.encode()[..]).unwrap().len(), pushed);
}

#[test]
fn the_commands_argv_round_trips_in_order_byte_for_byte() {
    let mut bundle = sample();
    for arg in [
        &b"sh"[..],
        b"-c",
        b"echo \"$1\"",
        b"",
        b"\xff\xfe not utf-8",
    ] {
        bundle.push_arg(arg).unwrap();
    }
    assert_eq!(bundle.encoded_len(), bundle.encode().len());
    let mut decoded = read_bundle(&bundle.encode()[..]).unwrap();
    assert_eq!(decoded.argv(), bundle.argv());
    assert_eq!(owned(&decoded), owned(&bundle));
    let (program, args) = decoded.take_argv().unwrap();
    assert_eq!(program, "sh");
    assert_eq!(args.len(), 4);
    assert!(decoded.argv().is_empty());
    // What is left still encodes to the length it says.
    assert_eq!(decoded.encoded_len(), decoded.encode().len());
}

#[test]
fn an_argument_with_nul_an_empty_program_or_too_many_arguments_are_refused() {
    let mut bundle = Bundle::new();
    assert!(matches!(
        bundle.push_arg(b""),
        Err(BundleError::InvalidArg { index: 0, .. })
    ));
    bundle.push_arg(b"echo").unwrap();
    assert!(matches!(
        bundle.push_arg(b"a\0b"),
        Err(BundleError::InvalidArg { index: 1, .. })
    ));
    // Positive control: an empty argument after the program is an argument.
    bundle.push_arg(b"").unwrap();
    for _ in 2..MAX_ARGS {
        bundle.push_arg(b"x").unwrap();
    }
    assert!(matches!(
        bundle.push_arg(b"x"),
        Err(BundleError::TooManyArgs)
    ));
}

#[test]
fn debug_counts_the_arguments_but_never_shows_them() {
    let mut bundle = Bundle::new();
    bundle.push_arg(b"psql").unwrap();
    bundle.push_arg(b"--password=inline-value").unwrap();
    let shown = format!("{bundle:?}");
    assert!(shown.contains("argc: 2"), "{shown}");
    assert!(
        !shown.contains("inline-value") && !shown.contains("psql"),
        "{shown}"
    );
}

proptest! {
    #[test]
    fn any_valid_bundle_round_trips(
        vars in proptest::collection::btree_map(
            "[A-Za-z_][A-Za-z0-9_]{0,40}",
            proptest::collection::vec(1u8..=255, 0..300),
            0..20,
        ),
        trailing in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bundle = Bundle::new();
        for (name, value) in &vars {
            bundle.push_env(name, value).unwrap();
        }
        let mut input = bundle.encode().to_vec();
        input.extend_from_slice(&trailing);
        let mut reader = &input[..];
        let decoded = read_bundle(&mut reader).unwrap();
        prop_assert_eq!(owned(&decoded), owned(&bundle));
        prop_assert_eq!(reader, &trailing[..]);
    }

    #[test]
    fn arbitrary_input_is_refused_or_decoded_but_never_panics(
        input in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = read_bundle(&input[..]);
    }
}
