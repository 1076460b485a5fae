//! Byte compatibility with libsodium's sealed boxes (`crypto_box_seal`), checked two
//! ways: against vectors committed under `tests/vectors/` (made once with PyNaCl, so
//! these run anywhere), and live against PyNaCl in a `python3` subprocess, in both
//! directions.
//!
//! Without python3 and PyNaCl the live tests print a SKIPPED line, unless `CI` or
//! `SEALRUN_REQUIRE_DOCKER` is set, where they fail: CI must run them.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sealrun_vault::{Error, KeyId, PublicKey, SealedSecret, TargetKeypair, open, seal};
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::{Command, Stdio};

#[derive(Deserialize)]
struct Vectors {
    secret_key: String,
    public_key: String,
    key_id: String,
    opens: Vec<OpensCase>,
    refused: Vec<RefusedCase>,
}

#[derive(Deserialize)]
struct OpensCase {
    name: String,
    target: String,
    value: String,
    sealed: SealedSecret,
}

#[derive(Deserialize)]
struct RefusedCase {
    case: String,
    name: String,
    target: String,
    error: String,
    sealed: SealedSecret,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("vectors/pynacl_vectors.json")).unwrap()
}

fn vector_keypair(v: &Vectors) -> TargetKeypair {
    let bytes = STANDARD.decode(&v.secret_key).unwrap();
    TargetKeypair::from_secret_bytes(bytes.try_into().unwrap())
}

#[test]
fn the_vector_keypair_derives_libsodiums_public_key_and_pythons_key_id() {
    let v = vectors();
    let keypair = vector_keypair(&v);
    assert_eq!(keypair.public_key().to_base64(), v.public_key);
    assert_eq!(keypair.key_id(), KeyId(v.key_id.clone()));
    assert_eq!(
        PublicKey::from_base64(&v.public_key).unwrap().key_id().0,
        v.key_id
    );
}

#[test]
fn every_box_sealed_by_pynacl_in_the_vectors_opens_to_its_value() {
    let v = vectors();
    let keypair = vector_keypair(&v);
    assert!(v.opens.len() >= 5);
    for case in &v.opens {
        let secret = open(&keypair, &case.name, &case.target, &case.sealed)
            .unwrap_or_else(|e| panic!("vector {:?}: {e}", case.name));
        assert_eq!(
            secret.expose(),
            STANDARD.decode(&case.value).unwrap().as_slice()
        );
    }
}

#[test]
fn every_refused_vector_fails_with_the_error_it_names() {
    let v = vectors();
    let keypair = vector_keypair(&v);
    for case in &v.refused {
        let err = open(&keypair, &case.name, &case.target, &case.sealed).unwrap_err();
        let kind = format!("{err:?}");
        assert!(
            kind.starts_with(&case.error),
            "{}: expected {}, got {kind}",
            case.case,
            case.error
        );
    }
}

/// Runs a Python script with PyNaCl, feeding it `input` as JSON on stdin and parsing its
/// stdout as JSON. Returns None (after a loud SKIPPED line) when Python or PyNaCl is
/// missing outside CI.
fn pynacl(test: &str, script: &str, input: &Value) -> Option<Value> {
    let probe = Command::new("python3")
        .args(["-c", "import nacl.public"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(status) if status.success()) {
        let why = match probe {
            Err(e) => format!("python3 cannot run ({e})"),
            Ok(_) => "PyNaCl is not installed (python3 -m pip install pynacl)".to_owned(),
        };
        sealrun_testkit::skip_or_fail(&format!(
            "{why}; CI must run the libsodium interop tests (scripts/provision.sh installs PyNaCl)"
        ));
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{test}: python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Values of the sizes that matter: empty, tiny, the benchmark's two sizes, and bytes
/// that are not UTF-8.
fn interop_values() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"x".to_vec(),
        (0..64u8).collect(),
        (0..65_536u32).map(|i| (i * 31 % 251) as u8).collect(),
        vec![0xff, 0x00, 0xfe],
    ]
}

/// Builds the envelope from the crate docs, independently of the Rust code, and seals
/// it with libsodium.
const PYNACL_SEAL: &str = r#"
import base64, json, struct, sys
from nacl.public import PublicKey, SealedBox
inp = json.load(sys.stdin)
box = SealedBox(PublicKey(base64.b64decode(inp["public_key"])))
out = []
for c in inp["cases"]:
    n, t = c["name"].encode(), c["target"].encode()
    env = b"SRVE" + bytes([1]) + struct.pack(">H", len(n)) + n + struct.pack(">H", len(t)) + t + base64.b64decode(c["value"])
    out.append(base64.b64encode(box.encrypt(env)).decode())
json.dump(out, sys.stdout)
"#;

#[test]
fn a_box_sealed_by_pynacl_opens_in_rust() {
    let keypair = TargetKeypair::generate();
    let cases: Vec<Value> = interop_values()
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": format!("SECRET_{i}"), "target": "prod-db", "value": STANDARD.encode(v)}))
        .collect();
    let input = json!({"public_key": keypair.public_key().to_base64(), "cases": cases});
    let Some(out) = pynacl("a_box_sealed_by_pynacl_opens_in_rust", PYNACL_SEAL, &input) else {
        return;
    };
    let ciphertexts = out.as_array().unwrap();
    assert_eq!(ciphertexts.len(), interop_values().len());
    for (i, (value, ciphertext)) in interop_values().iter().zip(ciphertexts).enumerate() {
        let sealed = SealedSecret {
            version: 1,
            key_id: keypair.key_id(),
            ciphertext: ciphertext.as_str().unwrap().to_owned(),
        };
        let secret = open(&keypair, &format!("SECRET_{i}"), "prod-db", &sealed).unwrap();
        assert_eq!(secret.expose(), value.as_slice(), "value #{i}");
    }
}

/// Opens with libsodium and parses the envelope as the crate docs describe it.
const PYNACL_OPEN: &str = r#"
import base64, json, struct, sys
from nacl.public import PrivateKey, SealedBox
inp = json.load(sys.stdin)
box = SealedBox(PrivateKey(base64.b64decode(inp["secret_key"])))
out = []
for ct in inp["ciphertexts"]:
    env = box.decrypt(base64.b64decode(ct))
    assert env[:5] == b"SRVE\x01", env[:5]
    (nl,) = struct.unpack(">H", env[5:7]); name = env[7:7 + nl]; rest = env[7 + nl:]
    (tl,) = struct.unpack(">H", rest[:2]); target = rest[2:2 + tl]; value = rest[2 + tl:]
    out.append({"name": name.decode(), "target": target.decode(), "value": base64.b64encode(value).decode()})
json.dump(out, sys.stdout)
"#;

#[test]
fn a_box_sealed_in_rust_opens_in_pynacl() {
    let secret_bytes: [u8; 32] =
        std::array::from_fn(|i| (i as u8).wrapping_mul(13).wrapping_add(7));
    let keypair = TargetKeypair::from_secret_bytes(secret_bytes);
    let sealed: Vec<SealedSecret> = interop_values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            seal(
                &keypair.public_key(),
                &format!("SECRET_{i}"),
                "target-\u{2603}",
                v,
            )
            .unwrap()
        })
        .collect();
    let input = json!({
        "secret_key": STANDARD.encode(secret_bytes),
        "ciphertexts": sealed.iter().map(|s| s.ciphertext.clone()).collect::<Vec<_>>(),
    });
    let Some(out) = pynacl("a_box_sealed_in_rust_opens_in_pynacl", PYNACL_OPEN, &input) else {
        return;
    };
    let opened = out.as_array().unwrap();
    assert_eq!(opened.len(), interop_values().len());
    for (i, (value, got)) in interop_values().iter().zip(opened).enumerate() {
        assert_eq!(got["name"], format!("SECRET_{i}"));
        assert_eq!(got["target"], "target-\u{2603}");
        assert_eq!(
            STANDARD.decode(got["value"].as_str().unwrap()).unwrap(),
            *value,
            "value #{i}"
        );
    }
}

/// Low-order X25519 points (libsodium's own blocklist), plain and with the ignored top
/// bit set.
fn low_order_points() -> Vec<[u8; 32]> {
    let mut p_minus_1 = [0xff; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0; 32];
    one[0] = 1;
    let order_8_a = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ];
    let order_8_b = [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ];
    let base = [[0; 32], one, order_8_a, order_8_b, p_minus_1, p, p_plus_1];
    base.iter()
        .flat_map(|k| {
            let mut high = *k;
            high[31] |= 0x80;
            [*k, high]
        })
        .collect()
}

#[test]
fn the_vault_refuses_every_low_order_key() {
    for bytes in low_order_points() {
        let key = PublicKey::from_bytes(bytes);
        assert!(key.is_weak(), "{}", key.to_base64());
        assert!(matches!(
            seal(&key, "N", "t", b"v"),
            Err(Error::InvalidPublicKey(_))
        ));
        assert!(matches!(
            PublicKey::from_base64(&key.to_base64()),
            Err(Error::InvalidPublicKey(_))
        ));
    }
    assert!(!TargetKeypair::generate().public_key().is_weak());
}

const PYNACL_SEAL_REFUSES: &str = r#"
import base64, json, sys
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox
out = []
for k in json.load(sys.stdin):
    try:
        SealedBox(PublicKey(base64.b64decode(k))).encrypt(b"v")
        out.append(False)
    except CryptoError:
        out.append(True)
json.dump(out, sys.stdout)
"#;

#[test]
fn libsodium_refuses_the_same_low_order_keys_the_vault_does() {
    let keys: Vec<String> = low_order_points()
        .iter()
        .map(|k| STANDARD.encode(k))
        .collect();
    let Some(out) = pynacl(
        "libsodium_refuses_the_same_low_order_keys_the_vault_does",
        PYNACL_SEAL_REFUSES,
        &json!(keys),
    ) else {
        return;
    };
    let refused: Vec<bool> = serde_json::from_value(out).unwrap();
    for (key, refused) in keys.iter().zip(refused) {
        assert!(
            refused,
            "libsodium sealed to {key}, which the vault refuses"
        );
    }
}
