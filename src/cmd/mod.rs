//! One module per subcommand family.

pub mod agent;
pub mod approvals;
pub mod audit;
pub mod dev;
pub mod people;
pub mod pool;
pub mod run;
pub mod runbook;
pub mod runs;
pub mod secret;
pub mod server;
pub mod session;
pub mod sign;
pub mod slack;
pub mod target;
pub mod token;
pub mod trust;

/// Percent-encodes one URL path segment (names are validated server-side,
/// but a stray `/` or `?` must never change which endpoint is called).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_cannot_escape_their_slot() {
        assert_eq!(super::seg("prod-db_1.x"), "prod-db_1.x");
        assert_eq!(super::seg("../a/b?c"), "..%2Fa%2Fb%3Fc");
    }
}
