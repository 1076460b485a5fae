//! Bearer tokens: `<prefix>_<id>_<secret>`.
//!
//! The prefix names the kind (`srt` user, `sre` enrollment, `sra` agent,
//! `srs` console session), so
//! a leaked token is recognisable (secret scanners, the redactor) and cannot be
//! presented as another kind. The id (16 hex digits) is public: it names the
//! token in listings and the audit trail and is how it is looked up. The
//! secret is 32 random bytes (64 hex digits); only its SHA-256 is stored, and
//! it is compared in constant time.

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// What a token lets its holder be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A person or a program acting for the org, with a role.
    User,
    /// Lets agents enroll into a pool.
    Enrollment,
    /// One enrolled agent.
    Agent,
    /// A web console session: a user's token exchanged at sign-in for a
    /// short-lived one that lives only in a cookie (`HttpOnly`), so the
    /// token the person typed is never stored in the browser. Accepted from
    /// the console's cookie only, never as a bearer token.
    Session,
}

impl TokenKind {
    const ALL: [TokenKind; 4] = [
        TokenKind::User,
        TokenKind::Enrollment,
        TokenKind::Agent,
        TokenKind::Session,
    ];

    fn prefix(self) -> &'static str {
        match self {
            TokenKind::User => "srt",
            TokenKind::Enrollment => "sre",
            TokenKind::Agent => "sra",
            TokenKind::Session => "srs",
        }
    }

    /// The name stored in the `tokens.kind` column.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Enrollment => "enrollment",
            TokenKind::Agent => "agent",
            TokenKind::Session => "session",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A freshly minted token: the value to show once, and what to store.
pub(crate) struct NewToken {
    pub(crate) id: String,
    pub(crate) secret_sha256: [u8; 32],
    pub(crate) value: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Random hex of `bytes` bytes, from the OS-seeded CSPRNG.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Mints a token of `kind`.
pub(crate) fn mint(kind: TokenKind) -> NewToken {
    let id = random_hex(ID_HEX / 2);
    let secret = random_hex(SECRET_HEX / 2);
    let secret_sha256 = hash_secret(&secret);
    let value = format!("{}_{id}_{secret}", kind.prefix());
    NewToken {
        id,
        secret_sha256,
        value,
    }
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A token as presented by a client, split into its parts.
pub(crate) struct Presented<'a> {
    pub(crate) kind: TokenKind,
    pub(crate) id: &'a str,
    secret: &'a str,
}

impl Presented<'_> {
    /// Whether the secret hashes to `stored`, in constant time.
    pub(crate) fn matches(&self, stored: &[u8]) -> bool {
        let hash = hash_secret(self.secret);
        bool::from(hash.as_slice().ct_eq(stored))
    }
}

/// Splits a presented token; `None` if it does not have the token shape.
pub(crate) fn parse(value: &str) -> Option<Presented<'_>> {
    let (prefix, rest) = value.split_once('_')?;
    let kind = TokenKind::ALL.into_iter().find(|k| k.prefix() == prefix)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(id, ID_HEX) || !hex(secret, SECRET_HEX) {
        return None;
    }
    Some(Presented { kind, id, secret })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_minted_token_parses_back_and_matches_its_stored_hash() {
        let t = mint(TokenKind::Agent);
        assert!(t.value.starts_with("sra_"));
        let p = parse(&t.value).unwrap();
        assert_eq!(p.kind, TokenKind::Agent);
        assert_eq!(p.id, t.id);
        assert!(p.matches(&t.secret_sha256));
    }

    #[test]
    fn a_token_with_another_secret_does_not_match() {
        let t = mint(TokenKind::User);
        let other = mint(TokenKind::User);
        let forged = format!("srt_{}_{}", t.id, &other.value[21..]);
        assert!(!parse(&forged).unwrap().matches(&t.secret_sha256));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let t = mint(TokenKind::User);
        for bad in [
            "",
            "srt",
            "srt_",
            "xyz_0123456789abcdef_00",
            &t.value[..t.value.len() - 1],
            &t.value.to_uppercase(),
            &format!("{}0", t.value),
        ] {
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn debug_output_never_shows_the_value() {
        let t = mint(TokenKind::User);
        let secret_part = &t.value[21..];
        assert!(!format!("{t:?}").contains(secret_part));
    }
}
