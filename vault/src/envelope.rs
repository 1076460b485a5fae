//! The envelope: the plaintext that actually goes into a sealed box.
//!
//! Layout of version 1 (all lengths big-endian):
//!
//! ```text
//! offset  size         field
//! 0       4            magic b"SRVE" (sealrun vault envelope)
//! 4       1            version = 1
//! 5       2            name_len
//! 7       name_len     name, UTF-8
//! ..      2            target_len
//! ..      target_len   target, UTF-8
//! ..      rest         value (may be empty)
//! ```
//!
//! Binding the name and target inside the authenticated plaintext is what lets an
//! agent detect a control plane that moves a ciphertext to another name or target.

use crate::Error;
use zeroize::Zeroizing;

/// Magic bytes opening every envelope.
pub(crate) const MAGIC: &[u8; 4] = b"SRVE";
/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes of an envelope with an empty name, target and value.
pub(crate) const MIN_LEN: usize = MAGIC.len() + 1 + 2 + 2;

/// Builds the envelope in a buffer that is zeroized when dropped. The capacity is
/// exact, so the buffer never reallocates and leaves no stray plaintext copy behind.
pub(crate) fn encode(name: &str, target: &str, value: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let name_len = field_len("name", name)?;
    let target_len = field_len("target", target)?;
    let mut out = Zeroizing::new(Vec::with_capacity(
        MIN_LEN + name.len() + target.len() + value.len(),
    ));
    out.extend_from_slice(MAGIC);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&name_len.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&target_len.to_be_bytes());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(value);
    Ok(out)
}

fn field_len(field: &'static str, s: &str) -> Result<u16, Error> {
    u16::try_from(s.len()).map_err(|_| Error::FieldTooLong {
        field,
        len: s.len(),
    })
}

/// A parsed envelope borrowing from the decrypted buffer. Deliberately not `Debug`:
/// that would print the value.
pub(crate) struct Envelope<'a> {
    pub(crate) name: &'a str,
    pub(crate) target: &'a str,
    pub(crate) value: &'a [u8],
}

/// Parses an envelope.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope<'_>, Error> {
    let mut rest = bytes;
    if take(&mut rest, MAGIC.len())? != MAGIC {
        return Err(Error::MalformedEnvelope("missing magic bytes"));
    }
    let version = take(&mut rest, 1)?[0];
    if version != ENVELOPE_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let name = take_str(&mut rest, "name is not UTF-8")?;
    let target = take_str(&mut rest, "target is not UTF-8")?;
    Ok(Envelope {
        name,
        target,
        value: rest,
    })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if rest.len() < n {
        return Err(Error::MalformedEnvelope("shorter than its header says"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_str<'a>(rest: &mut &'a [u8], not_utf8: &'static str) -> Result<&'a str, Error> {
    let len = take(rest, 2)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    std::str::from_utf8(take(rest, len)?).map_err(|_| Error::MalformedEnvelope(not_utf8))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_layout_is_exactly_as_documented() {
        let env = encode("DB", "prod", b"pw").unwrap();
        assert_eq!(
            env.as_slice(),
            b"SRVE\x01\x00\x02DB\x00\x04prodpw".as_slice()
        );
    }

    #[test]
    fn encode_then_decode_gives_back_every_field() {
        let env = encode("NAME", "target-1", b"\x00value\xff").unwrap();
        let parsed = decode(&env).unwrap();
        assert_eq!((parsed.name, parsed.target), ("NAME", "target-1"));
        assert_eq!(parsed.value, b"\x00value\xff");
    }

    #[test]
    fn every_strict_prefix_of_the_header_is_malformed() {
        let env = encode("NAME", "t", b"").unwrap();
        for cut in 0..env.len() {
            assert!(
                matches!(decode(&env[..cut]), Err(Error::MalformedEnvelope(_))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn another_envelope_version_is_unsupported() {
        let mut env = encode("N", "t", b"v").unwrap();
        env[4] = 2;
        assert!(matches!(decode(&env), Err(Error::UnsupportedVersion(2))));
    }

    #[test]
    fn a_name_longer_than_the_length_field_is_refused() {
        let long = "x".repeat(65_536);
        assert!(matches!(
            encode(&long, "t", b""),
            Err(Error::FieldTooLong {
                field: "name",
                len: 65_536
            })
        ));
        assert!(encode(&long[1..], "t", b"").is_ok());
    }
}
