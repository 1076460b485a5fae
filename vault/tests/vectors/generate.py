#!/usr/bin/env python3
"""Generates pynacl_vectors.json: sealed boxes made by libsodium (through PyNaCl) that
sealrun-vault's tests open without Python. Run once; the output is committed.

    python3 -m pip install pynacl && python3 generate.py > pynacl_vectors.json

Everything here is computed independently of the Rust code: the key id derivation and
the envelope layout are re-implemented from the crate docs.
"""
import base64
import hashlib
import json
import struct

import nacl
from nacl.public import Box, PrivateKey, PublicKey, SealedBox


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def key_id(pk: bytes) -> str:
    return "k1_" + hashlib.sha256(b"sealrun key id v1" + pk).digest()[:16].hex()


def envelope(name: str, target: str, value: bytes, version: int = 1, magic: bytes = b"SRVE") -> bytes:
    n, t = name.encode(), target.encode()
    return magic + bytes([version]) + struct.pack(">H", len(n)) + n + struct.pack(">H", len(t)) + t + value


# A fixed, public test key: never use it for anything real.
sk = PrivateKey(hashlib.sha256(b"sealrun-vault test vector recipient").digest())
pk = bytes(sk.public_key)
kid = key_id(pk)
sealer = SealedBox(sk.public_key)
opener = SealedBox(sk)


def sealed(plaintext: bytes) -> dict:
    ct = sealer.encrypt(plaintext)
    assert opener.decrypt(ct) == plaintext
    return {"version": 1, "key_id": kid, "ciphertext": b64(ct)}


opens = []
for name, target, value in [
    ("PGPASSWORD", "prod-db", b"correct horse battery staple"),
    ("EMPTY", "t", b""),
    ("BINARY", "staging-eu-1", bytes(range(256))),
    ("", "", b"\x00"),
    ("UNICODE_NAME_\u00e9", "target-\u2603", "p\u00e4ssw\u00f6rd".encode()),
    ("KILOBYTE", "prod-db", bytes((i * 7 + 3) % 256 for i in range(1024))),
]:
    opens.append({"name": name, "target": target, "value": b64(value),
                  "sealed": sealed(envelope(name, target, value))})

refused = [
    {"case": "envelope version 2", "name": "N", "target": "t", "error": "UnsupportedVersion(2)",
     "sealed": sealed(envelope("N", "t", b"v", version=2))},
    {"case": "wrong magic", "name": "N", "target": "t", "error": "MalformedEnvelope",
     "sealed": sealed(envelope("N", "t", b"v", magic=b"XXXX"))},
    {"case": "bare value without envelope", "name": "N", "target": "t", "error": "MalformedEnvelope",
     "sealed": sealed(b"just-a-value")},
    {"case": "name length past the end", "name": "N", "target": "t", "error": "MalformedEnvelope",
     "sealed": sealed(b"SRVE\x01\x00\xffNAME")},
    {"case": "sealed for another name", "name": "OTHER", "target": "t", "error": "NameMismatch",
     "sealed": sealed(envelope("N", "t", b"v"))},
    {"case": "sealed for another target", "name": "N", "target": "other", "error": "TargetMismatch",
     "sealed": sealed(envelope("N", "t", b"v"))},
]

# crypto_box_seal with a chosen ephemeral key, built from libsodium's crypto_box the
# way libsodium's own crypto_box_seal is: epk || crypto_box(m, blake2b-24(epk || pk), pk, esk).
# The Rust crate, fed the same ephemeral key, must produce the same bytes.
deterministic = []
for i, (name, target, value) in enumerate([("PGPASSWORD", "prod-db", b"hunter2"), ("EMPTY", "t", b"")]):
    esk = PrivateKey(hashlib.sha256(b"sealrun-vault test vector ephemeral %d" % i).digest())
    epk = bytes(esk.public_key)
    nonce = hashlib.blake2b(epk + pk, digest_size=24).digest()
    m = envelope(name, target, value)
    ct = epk + Box(esk, sk.public_key).encrypt(m, nonce).ciphertext
    assert opener.decrypt(ct) == m
    deterministic.append({"name": name, "target": target, "value": b64(value),
                          "ephemeral_secret_key": b64(bytes(esk)), "ciphertext": b64(ct)})

print(json.dumps({
    "generator": "vault/tests/vectors/generate.py, PyNaCl %s (bundled libsodium)" % nacl.__version__,
    "secret_key": b64(bytes(sk)),
    "public_key": b64(pk),
    "key_id": kid,
    "opens": opens,
    "refused": refused,
    "deterministic": deterministic,
}, indent=2))
