//! What `seal` and `open` promise: only the right key, name and target open a sealed
//! secret, any change to the ciphertext is caught, and plaintext never leaks through
//! formatting.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sealrun_vault::{Error, PublicKey, SealedSecret, Secret, TargetKeypair, open, seal};

const VALUE: &[u8] = b"correct-horse-battery-staple";
const VALUE_STR: &str = "correct-horse-battery-staple";

fn sealed_value(keypair: &TargetKeypair) -> SealedSecret {
    seal(&keypair.public_key(), "PGPASSWORD", "prod-db", VALUE).unwrap()
}

fn with_ciphertext(sealed: &SealedSecret, bytes: &[u8]) -> SealedSecret {
    SealedSecret {
        ciphertext: STANDARD.encode(bytes),
        ..sealed.clone()
    }
}

/// Asserts that neither the Debug nor the Display form of `shown` contains the value.
fn assert_hides_value(shown: &(impl std::fmt::Debug + std::fmt::Display)) {
    for text in [
        format!("{shown:?}"),
        format!("{shown}"),
        format!("{shown:#?}"),
    ] {
        assert!(!text.contains(VALUE_STR), "value leaked into {text:?}");
        assert!(
            !text.contains(&STANDARD.encode(VALUE)),
            "base64 value leaked into {text:?}"
        );
    }
}

#[test]
fn a_sealed_secret_opens_with_its_key_name_and_target() {
    let keypair = TargetKeypair::generate();
    let secret = open(&keypair, "PGPASSWORD", "prod-db", &sealed_value(&keypair)).unwrap();
    assert_eq!(secret.expose(), VALUE);
    assert_eq!(secret.len(), VALUE.len());
    assert!(!secret.is_empty());
}

#[test]
fn an_empty_value_round_trips() {
    let keypair = TargetKeypair::generate();
    let sealed = seal(&keypair.public_key(), "EMPTY", "t", b"").unwrap();
    let secret = open(&keypair, "EMPTY", "t", &sealed).unwrap();
    assert!(secret.is_empty());
}

#[test]
fn sealing_the_same_value_twice_gives_different_ciphertexts() {
    let keypair = TargetKeypair::generate();
    assert_ne!(
        sealed_value(&keypair).ciphertext,
        sealed_value(&keypair).ciphertext
    );
}

#[test]
fn the_sealed_secret_records_the_key_id_and_version() {
    let keypair = TargetKeypair::generate();
    let sealed = sealed_value(&keypair);
    assert_eq!(sealed.key_id, keypair.key_id());
    assert_eq!(sealed.version, sealrun_vault::ENVELOPE_VERSION);
}

#[test]
fn a_sealed_secret_serializes_as_version_key_id_and_base64_ciphertext() {
    let keypair = TargetKeypair::generate();
    let sealed = sealed_value(&keypair);
    let json: serde_json::Value = serde_json::to_value(&sealed).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["key_id"], keypair.key_id().0);
    assert_eq!(json["ciphertext"], sealed.ciphertext);
    assert_eq!(json.as_object().unwrap().len(), 3);
    let back: SealedSecret = serde_json::from_value(json).unwrap();
    assert_eq!(back, sealed);
}

#[test]
fn opening_with_the_wrong_key_names_both_key_ids() {
    let right = TargetKeypair::generate();
    let wrong = TargetKeypair::generate();
    let err = open(&wrong, "PGPASSWORD", "prod-db", &sealed_value(&right)).unwrap_err();
    match &err {
        Error::WrongKey { sealed_for, have } => {
            assert_eq!(*sealed_for, right.key_id());
            assert_eq!(*have, wrong.key_id());
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&right.key_id().0), "{message}");
    assert!(message.contains(&wrong.key_id().0), "{message}");
}

#[test]
fn a_ciphertext_relabelled_with_another_key_id_fails_authentication() {
    // A control plane that rewrites key_id to get past the cheap check still loses.
    let right = TargetKeypair::generate();
    let other = TargetKeypair::generate();
    let sealed = SealedSecret {
        key_id: other.key_id(),
        ..sealed_value(&right)
    };
    assert!(matches!(
        open(&other, "PGPASSWORD", "prod-db", &sealed),
        Err(Error::Tampered)
    ));
}

#[test]
fn flipping_any_bit_of_the_ciphertext_is_detected() {
    let keypair = TargetKeypair::generate();
    let sealed = sealed_value(&keypair);
    let bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << bit;
            let result = open(
                &keypair,
                "PGPASSWORD",
                "prod-db",
                &with_ciphertext(&sealed, &flipped),
            );
            assert!(
                matches!(result, Err(Error::Tampered)),
                "byte {i} bit {bit}: {result:?}"
            );
        }
    }
}

#[test]
fn every_truncation_of_the_ciphertext_is_refused() {
    let keypair = TargetKeypair::generate();
    let sealed = sealed_value(&keypair);
    let bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
    let min = sealrun_vault::SEAL_OVERHEAD + 9;
    for cut in 0..bytes.len() {
        let result = open(
            &keypair,
            "PGPASSWORD",
            "prod-db",
            &with_ciphertext(&sealed, &bytes[..cut]),
        );
        if cut < min {
            assert!(
                matches!(result, Err(Error::Truncated { len, min: m }) if len == cut && m == min),
                "cut at {cut}: {result:?}"
            );
        } else {
            assert!(
                matches!(result, Err(Error::Tampered)),
                "cut at {cut}: {result:?}"
            );
        }
    }
}

#[test]
fn bytes_appended_to_the_ciphertext_are_detected() {
    let keypair = TargetKeypair::generate();
    let sealed = sealed_value(&keypair);
    let mut bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
    bytes.push(0);
    let result = open(
        &keypair,
        "PGPASSWORD",
        "prod-db",
        &with_ciphertext(&sealed, &bytes),
    );
    assert!(matches!(result, Err(Error::Tampered)), "{result:?}");
}

#[test]
fn a_ciphertext_moved_to_another_name_is_refused_naming_both() {
    let keypair = TargetKeypair::generate();
    let err = open(
        &keypair,
        "AWS_SECRET_ACCESS_KEY",
        "prod-db",
        &sealed_value(&keypair),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::NameMismatch { expected, found }
            if expected == "AWS_SECRET_ACCESS_KEY" && found == "PGPASSWORD"),
        "{err:?}"
    );
    assert!(err.to_string().contains("PGPASSWORD"));
}

#[test]
fn a_ciphertext_moved_to_another_target_is_refused_naming_both() {
    let keypair = TargetKeypair::generate();
    let err = open(
        &keypair,
        "PGPASSWORD",
        "staging-db",
        &sealed_value(&keypair),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::TargetMismatch { expected, found }
            if expected == "staging-db" && found == "prod-db"),
        "{err:?}"
    );
    assert!(err.to_string().contains("prod-db"));
}

#[test]
fn name_and_target_are_not_interchangeable() {
    // The length prefixes keep ("ab", "c") and ("a", "bc") apart.
    let keypair = TargetKeypair::generate();
    let sealed = seal(&keypair.public_key(), "ab", "c", VALUE).unwrap();
    assert!(open(&keypair, "a", "bc", &sealed).is_err());
    assert!(open(&keypair, "c", "ab", &sealed).is_err());
}

#[test]
fn a_ciphertext_that_is_not_base64_is_refused() {
    let keypair = TargetKeypair::generate();
    let sealed = SealedSecret {
        ciphertext: "not base64!".into(),
        ..sealed_value(&keypair)
    };
    let result = open(&keypair, "PGPASSWORD", "prod-db", &sealed);
    assert!(
        matches!(result, Err(Error::InvalidCiphertext(_))),
        "{result:?}"
    );
}

#[test]
fn an_unknown_sealed_secret_version_is_refused_before_anything_else() {
    let keypair = TargetKeypair::generate();
    for version in [0, 2, 255] {
        let sealed = SealedSecret {
            version,
            ..sealed_value(&keypair)
        };
        let err = open(&keypair, "PGPASSWORD", "prod-db", &sealed).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedVersion(v) if v == version),
            "{err:?}"
        );
        assert!(err.to_string().contains(&version.to_string()));
    }
}

#[test]
fn a_name_too_long_for_the_envelope_is_refused() {
    let keypair = TargetKeypair::generate();
    let long = "N".repeat(70_000);
    let result = seal(&keypair.public_key(), &long, "t", VALUE);
    assert!(matches!(
        result,
        Err(Error::FieldTooLong {
            field: "name",
            len: 70_000
        })
    ));
    let result = seal(&keypair.public_key(), "N", &long, VALUE);
    assert!(matches!(
        result,
        Err(Error::FieldTooLong {
            field: "target",
            ..
        })
    ));
}

#[test]
fn a_secret_formats_as_stars_only() {
    let secret = Secret::new(VALUE.to_vec());
    assert_eq!(format!("{secret:?}"), "***");
    assert_eq!(format!("{secret}"), "***");
    assert_eq!(format!("{secret:#?}"), "***");
    assert_hides_value(&secret);
}

#[test]
fn a_secret_inside_a_derived_debug_still_formats_as_stars() {
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Env {
        name: &'static str,
        value: Secret,
    }
    let env = Env {
        name: "PGPASSWORD",
        value: Secret::new(VALUE.to_vec()),
    };
    let shown = format!("{env:?}");
    assert!(
        !shown.contains(VALUE_STR) && shown.contains("***"),
        "{shown}"
    );
}

#[test]
fn no_error_formats_the_value() {
    let keypair = TargetKeypair::generate();
    let other = TargetKeypair::generate();
    let sealed = sealed_value(&keypair);
    let mut bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let errors = [
        open(&other, "PGPASSWORD", "prod-db", &sealed).unwrap_err(),
        open(&keypair, "OTHER", "prod-db", &sealed).unwrap_err(),
        open(&keypair, "PGPASSWORD", "other", &sealed).unwrap_err(),
        open(
            &keypair,
            "PGPASSWORD",
            "prod-db",
            &with_ciphertext(&sealed, &bytes),
        )
        .unwrap_err(),
        open(
            &keypair,
            "PGPASSWORD",
            "prod-db",
            &with_ciphertext(&sealed, &bytes[..10]),
        )
        .unwrap_err(),
        open(
            &keypair,
            "PGPASSWORD",
            "prod-db",
            &SealedSecret {
                version: 9,
                ..sealed.clone()
            },
        )
        .unwrap_err(),
        seal(
            &PublicKey::from_bytes([0; 32]),
            "PGPASSWORD",
            "prod-db",
            VALUE,
        )
        .unwrap_err(),
    ];
    for err in &errors {
        assert_hides_value(err);
    }
}

#[test]
fn a_keypair_debug_shows_the_key_id_and_no_key_material() {
    let secret_bytes = [0x42u8; 32];
    let keypair = TargetKeypair::from_secret_bytes(secret_bytes);
    let shown = format!("{keypair:?}");
    assert!(shown.contains(&keypair.key_id().0), "{shown}");
    assert!(!shown.contains(&STANDARD.encode(secret_bytes)), "{shown}");
    assert!(!shown.contains("66, 66"), "{shown}");
    assert!(!shown.to_lowercase().contains("4242"), "{shown}");
    assert!(
        !shown.contains(&keypair.public_key().to_base64()),
        "{shown}"
    );
}

#[test]
fn a_public_key_round_trips_through_base64() {
    let key = TargetKeypair::generate().public_key();
    let text = key.to_base64();
    assert_eq!(PublicKey::from_base64(&text).unwrap(), key);
    assert_eq!(PublicKey::from_base64(&format!("  {text}\n")).unwrap(), key);
    assert_eq!(text.parse::<PublicKey>().unwrap(), key);
    assert_eq!(PublicKey::from_bytes(*key.as_bytes()), key);
}

#[test]
fn a_public_key_debug_shows_its_key_id() {
    let key = TargetKeypair::generate().public_key();
    assert_eq!(
        format!("{key:?}"),
        format!("PublicKey({:?})", key.key_id().0)
    );
}

#[test]
fn malformed_public_keys_are_refused_with_a_reason() {
    let cases = [
        ("", "expected 32 bytes, got 0"),
        ("!!!!", "not valid base64"),
        ("AAAA====", "not valid base64"),
        (&*STANDARD.encode([7u8; 31]), "expected 32 bytes, got 31"),
        (&*STANDARD.encode([7u8; 33]), "expected 32 bytes, got 33"),
        (&*STANDARD.encode([0u8; 32]), "low-order point"),
    ];
    for (input, reason) in cases {
        let err = PublicKey::from_base64(input).unwrap_err();
        assert!(
            matches!(err, Error::InvalidPublicKey(_)),
            "{input:?}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{input:?}: {err}");
    }
}

#[test]
fn the_key_id_is_stable_and_documented() {
    // k1_ + hex(SHA-256("sealrun key id v1" || pk)[..16]); value computed with Python's
    // hashlib: hashlib.sha256(b"sealrun key id v1" + bytes(range(32))).digest()[:16].hex()
    let key = PublicKey::from_bytes(std::array::from_fn(|i| i as u8));
    assert_eq!(key.key_id().0, EXPECTED_KEY_ID_OF_0_TO_31);
}

const EXPECTED_KEY_ID_OF_0_TO_31: &str = "k1_10fd4f4bce80f5febd9b736e6c401c8f";

#[test]
fn key_ids_parse_only_in_their_documented_shape() {
    let id = TargetKeypair::generate().key_id();
    assert_eq!(id.to_string().parse::<sealrun_vault::KeyId>().unwrap(), id);
    for bad in [
        "",
        "k1_",
        "k2_00000000000000000000000000000000",
        "k1_0000000000000000000000000000000",
        "k1_ABCDEF00000000000000000000000000",
        "k1_000000000000000000000000000000000",
    ] {
        assert!(
            matches!(
                bad.parse::<sealrun_vault::KeyId>(),
                Err(Error::InvalidKeyId(_))
            ),
            "{bad}"
        );
    }
}
