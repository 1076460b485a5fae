//! Slack's v0 request signatures: `X-Slack-Signature` must be
//! `v0=` + hex(HMAC-SHA256(signing secret, `v0:{timestamp}:{raw body}`)),
//! and `X-Slack-Request-Timestamp` within [`MAX_SKEW_SECS`] of now. Within
//! that window a request is accepted once: the domain remembers each
//! accepted signature ([`Signed::mac`]) until [`Signed::replayable_until_ms`].
//!
//! Pure functions of their inputs (the clock is a parameter), so every
//! refusal can be tested without waiting or faking time.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// Header holding the signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Header holding the Unix seconds the request was signed at.
pub(crate) const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Oldest (and furthest in the future) a signed request may be: Slack's own
/// recommendation, which bounds how long a captured request can be replayed.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// Why a request was refused. Goes to the audit trail, never to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No timestamp or signature header.
    MissingHeaders,
    /// A header that is not what Slack sends.
    MalformedHeaders,
    /// Signed more than [`MAX_SKEW_SECS`] ago or ahead.
    Stale,
    /// The signature does not match the body and the signing secret.
    BadSignature,
    /// No org has linked the request's team (checked as a bad signature
    /// would be, and answered the same).
    Unlinked,
    /// A request accepted before, sent again within the window.
    Replayed,
}

impl Refusal {
    /// For the audit trail and the log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::MissingHeaders => "missing signature headers",
            Refusal::MalformedHeaders => "malformed signature headers",
            Refusal::Stale => "timestamp outside the replay window",
            Refusal::BadSignature => "signature mismatch",
            Refusal::Unlinked => "team not linked",
            Refusal::Replayed => "request already accepted (replayed)",
        }
    }
}

/// The signature headers of a request, as received.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Headers<'a> {
    pub(crate) timestamp: Option<&'a [u8]>,
    pub(crate) signature: Option<&'a [u8]>,
}

/// Headers that are present and well-formed: the timestamp and the 32 bytes
/// of the claimed MAC.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signed<'a> {
    timestamp: &'a str,
    seconds: i64,
    mac: [u8; 32],
}

impl Signed<'_> {
    /// The claimed MAC: what identifies the request (Slack signs each one
    /// anew; a resend of a captured request carries the same one).
    pub(crate) fn mac(&self) -> [u8; 32] {
        self.mac
    }

    /// Unix milliseconds until which the request could still be replayed
    /// (its timestamp leaves the window then), so how long it is
    /// remembered.
    pub(crate) fn replayable_until_ms(&self) -> i64 {
        self.seconds
            .saturating_add(MAX_SKEW_SECS)
            .saturating_add(1)
            .saturating_mul(1000)
    }
}

/// Checks the headers' shape; done before anything else is looked at.
pub(crate) fn parse_headers(headers: Headers<'_>) -> Result<Signed<'_>, Refusal> {
    let (Some(timestamp), Some(signature)) = (headers.timestamp, headers.signature) else {
        return Err(Refusal::MissingHeaders);
    };
    let timestamp = std::str::from_utf8(timestamp).map_err(|_| Refusal::MalformedHeaders)?;
    // Digits only: `+5` or ` 5` would parse but is not what Slack signs.
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Refusal::MalformedHeaders);
    }
    let seconds = timestamp.parse().map_err(|_| Refusal::MalformedHeaders)?;
    let hex = signature
        .strip_prefix(b"v0=")
        .ok_or(Refusal::MalformedHeaders)?;
    let mut mac = [0u8; 32];
    hex::decode_to_slice(hex, &mut mac).map_err(|_| Refusal::MalformedHeaders)?;
    Ok(Signed {
        timestamp,
        seconds,
        mac,
    })
}

/// The signature Slack would send for `body` at `timestamp`.
#[cfg(test)]
pub(crate) fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(mac(secret, timestamp, body)))
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Verifies a request signed at `signed` over the raw `body` with `secret`,
/// `now` being Unix seconds. The replay window is checked first (cheap), and
/// the MAC compared in constant time.
pub(crate) fn verify(
    secret: &[u8],
    signed: &Signed<'_>,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    if signed.seconds.abs_diff(now) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(Refusal::Stale);
    }
    let expected = mac(secret, signed.timestamp, body);
    if bool::from(expected.ct_eq(&signed.mac)) {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // Slack's worked example, from "Verifying requests from Slack"
    // (api.slack.com/authentication/verifying-requests-from-slack).
    const DOC_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn check(
        secret: &[u8],
        ts: Option<&str>,
        sig: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<(), Refusal> {
        let signed = parse_headers(Headers {
            timestamp: ts.map(str::as_bytes),
            signature: sig.map(str::as_bytes),
        })?;
        verify(secret, &signed, body.as_bytes(), now)
    }

    fn doc_now() -> i64 {
        DOC_TIMESTAMP.parse().unwrap()
    }

    #[test]
    fn slacks_published_example_signs_to_its_published_signature() {
        assert_eq!(
            sign(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY.as_bytes()),
            DOC_SIGNATURE
        );
    }

    #[test]
    fn slacks_published_example_is_accepted_at_its_time() {
        let r = check(
            DOC_SECRET,
            Some(DOC_TIMESTAMP),
            Some(DOC_SIGNATURE),
            DOC_BODY,
            doc_now(),
        );
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn slacks_published_example_is_refused_with_one_byte_of_the_body_changed() {
        let altered = DOC_BODY.replace("roadrunner", "roadrunnex");
        let r = check(
            DOC_SECRET,
            Some(DOC_TIMESTAMP),
            Some(DOC_SIGNATURE),
            &altered,
            doc_now(),
        );
        assert_eq!(r, Err(Refusal::BadSignature));
    }

    #[test]
    fn slacks_published_example_is_refused_today() {
        let r = check(
            DOC_SECRET,
            Some(DOC_TIMESTAMP),
            Some(DOC_SIGNATURE),
            DOC_BODY,
            1_700_000_000,
        );
        assert_eq!(r, Err(Refusal::Stale));
    }

    const SECRET: &[u8] = b"test-signing-secret-0123456789ab";
    const NOW: i64 = 1_750_000_000;
    const BODY: &str = "team_id=T1&user_id=U1&text=run+db+--+echo+hi";

    /// Signs independently of `sign`, so the scheme is checked, not echoed.
    fn signature(secret: &[u8], ts: i64, body: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        m.update(format!("v0:{ts}:{body}").as_bytes());
        format!("v0={}", hex::encode(m.finalize().into_bytes()))
    }

    fn at(ts: i64) -> String {
        ts.to_string()
    }

    #[test]
    fn a_request_signed_with_the_secret_is_accepted() {
        let sig = signature(SECRET, NOW, BODY);
        assert_eq!(check(SECRET, Some(&at(NOW)), Some(&sig), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_request_signed_with_another_secret_is_refused() {
        let sig = signature(b"another-secret-0123456789abcdefg", NOW, BODY);
        assert_eq!(
            check(SECRET, Some(&at(NOW)), Some(&sig), BODY, NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn an_altered_body_is_refused() {
        let sig = signature(SECRET, NOW, BODY);
        let altered = BODY.replace("echo+hi", "rm+-rf+x");
        assert_eq!(
            check(SECRET, Some(&at(NOW)), Some(&sig), &altered, NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn a_signature_over_another_timestamp_is_refused() {
        let sig = signature(SECRET, NOW - 1, BODY);
        assert_eq!(
            check(SECRET, Some(&at(NOW)), Some(&sig), BODY, NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn missing_headers_are_refused() {
        let sig = signature(SECRET, NOW, BODY);
        assert_eq!(
            check(SECRET, None, Some(&sig), BODY, NOW),
            Err(Refusal::MissingHeaders)
        );
        assert_eq!(
            check(SECRET, Some(&at(NOW)), None, BODY, NOW),
            Err(Refusal::MissingHeaders)
        );
        assert_eq!(
            check(SECRET, None, None, BODY, NOW),
            Err(Refusal::MissingHeaders)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let sig = signature(SECRET, NOW, BODY);
        let hex = sig.trim_start_matches("v0=");
        for (ts, sig) in [
            ("+1750000000".to_owned(), sig.clone()),
            (" 1750000000".to_owned(), sig.clone()),
            ("".to_owned(), sig.clone()),
            (at(NOW), format!("v1={hex}")),
            (at(NOW), hex.to_owned()),
            (at(NOW), format!("v0={}", &hex[..63])),
            (at(NOW), format!("v0={hex}00")),
            (at(NOW), "v0=zz".to_owned()),
        ] {
            assert_eq!(
                check(SECRET, Some(&ts), Some(&sig), BODY, NOW),
                Err(Refusal::MalformedHeaders),
                "{ts:?} {sig:?}"
            );
        }
    }

    #[test]
    fn a_request_signed_six_minutes_ago_is_refused() {
        let ts = NOW - 6 * 60;
        let sig = signature(SECRET, ts, BODY);
        assert_eq!(
            check(SECRET, Some(&at(ts)), Some(&sig), BODY, NOW),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn a_request_signed_six_minutes_ahead_is_refused() {
        let ts = NOW + 6 * 60;
        let sig = signature(SECRET, ts, BODY);
        assert_eq!(
            check(SECRET, Some(&at(ts)), Some(&sig), BODY, NOW),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn a_request_just_inside_the_window_either_way_is_accepted() {
        for ts in [NOW - MAX_SKEW_SECS, NOW + MAX_SKEW_SECS] {
            let sig = signature(SECRET, ts, BODY);
            assert_eq!(check(SECRET, Some(&at(ts)), Some(&sig), BODY, NOW), Ok(()));
        }
    }

    #[test]
    fn the_signature_hex_may_be_uppercase() {
        let sig = signature(SECRET, NOW, BODY)
            .to_uppercase()
            .replace("V0=", "v0=");
        assert_eq!(check(SECRET, Some(&at(NOW)), Some(&sig), BODY, NOW), Ok(()));
    }
}
