//! Structured secrets: a secret that is a JSON document, YAML, `.env` (`KEY=VALUE`) lines or
//! an INI file is also masked value by value, so that a command extracting one field
//! (`jq -r .private_key_id`, `grep PASS .env | cut -d= -f2`, `yq .token`) prints nothing that
//! survives.
//!
//! The parsers here are deliberately small and tolerant: they only need the string values, and
//! a value they miss is still covered wherever it appears in the secret as written (every run
//! of 12 bytes of the secret is masked). What they add is the values that a tool prints
//! *decoded* (JSON and YAML escapes, quotes removed, indentation of block scalars removed) and
//! values of 8 to 11 bytes, which are shorter than a run of 12. Every buffer holding a value is
//! a [`SecretBytes`].

use zeroize::Zeroizing;

/// A buffer holding secret material, wiped when dropped (the same as the forms'; defined
/// here too so that the two modules do not import each other).
type SecretBytes = Zeroizing<Vec<u8>>;

/// The string values of `secret` read as JSON, else as YAML, `.env` and INI lines. Values
/// shorter than `min_len` are left out (they would mask ordinary words); keys never count as
/// values.
pub(crate) fn values(secret: &[u8], min_len: usize) -> Vec<SecretBytes> {
    let mut out = Vec::new();
    let text = secret.trim_ascii();
    let mut parsed = false;
    if text.starts_with(b"{") || text.starts_with(b"[") {
        let mut parser = Json {
            s: text,
            at: 0,
            out: Vec::new(),
        };
        if parser.document() {
            out = parser.out;
            parsed = true;
        }
    }
    // One line is not a document: a password with `=` or `: ` in it is not `KEY=VALUE`.
    if !parsed && text.contains(&b'\n') {
        lines(secret, &mut out);
    }
    out.retain(|v| v.len() >= min_len);
    out
}

/// A JSON reader that keeps every string that is not an object key.
struct Json<'a> {
    s: &'a [u8],
    at: usize,
    out: Vec<SecretBytes>,
}

impl Json<'_> {
    /// The whole text is one JSON value (surrounding whitespace aside).
    fn document(&mut self) -> bool {
        let ok = self.value(0);
        self.ws();
        ok && self.at == self.s.len()
    }

    fn ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        // Deeper documents are not secrets anyone stores; refusing them bounds the recursion.
        if depth > 64 {
            return false;
        }
        self.ws();
        match self.s.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                self.ws();
                if self.s.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return true;
                }
                loop {
                    self.ws();
                    // Keys are structure, not secret values.
                    if self.string().is_none() {
                        return false;
                    }
                    self.ws();
                    if self.s.get(self.at) != Some(&b':') {
                        return false;
                    }
                    self.at += 1;
                    if !self.value(depth + 1) {
                        return false;
                    }
                    self.ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return true;
                        }
                        _ => return false,
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                self.ws();
                if self.s.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return true;
                }
                loop {
                    if !self.value(depth + 1) {
                        return false;
                    }
                    self.ws();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return true;
                        }
                        _ => return false,
                    }
                }
            }
            Some(b'"') => match self.string() {
                Some(v) => {
                    self.out.push(v);
                    true
                }
                None => false,
            },
            Some(_) => {
                // Numbers, true, false, null: not strings.
                let start = self.at;
                while self.at < self.s.len()
                    && (self.s[self.at].is_ascii_alphanumeric()
                        || b"+-.".contains(&self.s[self.at]))
                {
                    self.at += 1;
                }
                self.at > start
            }
            None => false,
        }
    }

    /// A string literal at `at`, decoded.
    fn string(&mut self) -> Option<SecretBytes> {
        if self.s.get(self.at) != Some(&b'"') {
            return None;
        }
        let end = closing_quote(self.s, self.at + 1, b'"')?;
        let v = unescape_double(&self.s[self.at + 1..end]);
        self.at = end + 1;
        Some(v)
    }
}

/// Index of the unescaped `quote` closing a string that starts at `from`.
fn closing_quote(s: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Decodes JSON / YAML double-quoted escapes (`\n`, `\"`, `\uXXXX` with surrogate pairs, ...).
fn unescape_double(s: &[u8]) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(s.len()));
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' || i + 1 == s.len() {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let c = s[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'0' => out.push(0),
            b'u' => {
                let Some(unit) = hex_number(s.get(i..i + 4)) else {
                    out.extend_from_slice(b"\\u");
                    continue;
                };
                i += 4;
                let mut code = unit;
                if (0xd800..0xdc00).contains(&unit)
                    && s.get(i..i + 2) == Some(b"\\u")
                    && let Some(low) = hex_number(s.get(i + 2..i + 6))
                    && (0xdc00..0xe000).contains(&low)
                {
                    code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                    i += 6;
                }
                let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            b'x' => match hex_number(s.get(i..i + 2)) {
                Some(b) => {
                    // Two hex digits fit a byte.
                    out.push(b as u8);
                    i += 2;
                }
                None => out.extend_from_slice(b"\\x"),
            },
            other => out.push(other),
        }
    }
    out
}

fn hex_number(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    let mut n = 0u32;
    for &d in digits {
        n = n * 16 + char::from(d).to_digit(16)?;
    }
    Some(n)
}

/// `KEY=VALUE` (`.env`, with an optional `export`), `key = value` and `key: value` (INI,
/// YAML) lines, YAML list items and block scalars (`key: |`).
fn lines(secret: &[u8], out: &mut Vec<SecretBytes>) {
    let all: Vec<&[u8]> = secret.split(|&b| b == b'\n').collect();
    let mut n = 0;
    while n < all.len() {
        let line = all[n].strip_suffix(b"\r").unwrap_or(all[n]);
        n += 1;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed[0] == b'#' || trimmed[0] == b';' || trimmed[0] == b'[' {
            continue;
        }
        let indent = line.len() - line.trim_ascii_start().len();
        // A YAML list item may hold a `key: value` of its own.
        let entry = trimmed.strip_prefix(b"- ").map(<[u8]>::trim_ascii);
        let (raw, yaml) = match (entry, key_value(entry.unwrap_or(trimmed))) {
            (_, Some((_, value))) => (Some(value), trimmed.contains(&b':')),
            (Some(item), None) => (Some(item), true),
            (None, None) => (None, false),
        };
        let Some(raw) = raw else { continue };
        if yaml && (raw == b"|" || raw == b">" || raw.starts_with(b"|") || raw.starts_with(b">")) {
            // A block scalar: the more-indented lines that follow, indentation removed.
            let folded = raw.starts_with(b">");
            // Sized up front: a block is never longer than the secret.
            let mut block = Zeroizing::new(Vec::with_capacity(secret.len()));
            let mut block_indent = None;
            while n < all.len() {
                let next = all[n].strip_suffix(b"\r").unwrap_or(all[n]);
                let next_indent = next.len() - next.trim_ascii_start().len();
                if !next.trim_ascii().is_empty() && next_indent <= indent {
                    break;
                }
                let cut = *block_indent.get_or_insert(next_indent);
                let content = next.get(cut.min(next.len())..).unwrap_or_default();
                if !block.is_empty() {
                    block.push(if folded { b' ' } else { b'\n' });
                }
                block.extend_from_slice(content);
                n += 1;
            }
            // Trailing blank lines are not content (YAML's default chomping keeps one line
            // break, added below).
            while block.last() == Some(&b'\n') {
                block.pop();
            }
            let mut with_newline = Zeroizing::new(Vec::with_capacity(block.len() + 1));
            with_newline.extend_from_slice(&block);
            with_newline.push(b'\n');
            out.push(block);
            out.push(with_newline);
            continue;
        }
        out.push(scalar(raw, yaml));
    }
}

/// Splits `key=value`, `key = value` or `key: value`; the key must look like a name.
fn key_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = line.strip_prefix(b"export ").unwrap_or(line);
    let at = line.iter().position(|&b| b == b'=' || b == b':')?;
    let key = line[..at].trim_ascii();
    let named = !key.is_empty()
        && key
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"_-. ".contains(&b))
        && !key.contains(&b' ');
    if !named {
        return None;
    }
    let rest = &line[at + 1..];
    // YAML needs a space after the colon (`a:b` is a plain scalar); `=` needs nothing.
    if line[at] == b':' && !(rest.is_empty() || rest[0] == b' ' || rest[0] == b'\t') {
        return None;
    }
    Some((key, rest.trim_ascii()))
}

/// A scalar as a tool prints it: quotes removed and escapes decoded; an unquoted YAML value
/// without its trailing comment.
fn scalar(raw: &[u8], yaml: bool) -> SecretBytes {
    if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        return unescape_double(&raw[1..raw.len() - 1]);
    }
    if raw.len() >= 2 && raw[0] == b'\'' && raw[raw.len() - 1] == b'\'' {
        // YAML single quotes double a quote; shells and INI take the text as it is.
        let inner = &raw[1..raw.len() - 1];
        let mut out = Zeroizing::new(Vec::with_capacity(inner.len()));
        let mut i = 0;
        while i < inner.len() {
            out.push(inner[i]);
            i += if inner[i] == b'\'' && inner.get(i + 1) == Some(&b'\'') {
                2
            } else {
                1
            };
        }
        return out;
    }
    let mut end = raw.len();
    if yaml && let Some(at) = raw.windows(2).position(|w| w == b" #") {
        end = at;
    }
    Zeroizing::new(raw[..end].trim_ascii().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(secret: &str) -> Vec<String> {
        values(secret.as_bytes(), 8)
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    #[test]
    fn json_string_values_are_decoded_and_keys_left_out() {
        let doc = r#"{"type": "service_account", "private_key": "-----BEGIN KEY-----\nMIIEabc\n-----END KEY-----\n", "n": 5, "list": ["first-value", true]}"#;
        let got = strings(doc);
        assert!(got.contains(&"service_account".to_string()));
        assert!(got.contains(&"-----BEGIN KEY-----\nMIIEabc\n-----END KEY-----\n".to_string()));
        assert!(got.contains(&"first-value".to_string()));
        assert!(!got.iter().any(|v| v == "private_key"), "{got:?}");
    }

    #[test]
    fn env_lines_give_their_values_unquoted() {
        let got = strings(
            "# comment\nexport DB_PASS=\"p@ss\\\"word1\"\nAPI_KEY='abc''defgh'\nTOKEN=plainvalue1\n",
        );
        assert!(got.contains(&"p@ss\"word1".to_string()), "{got:?}");
        assert!(got.contains(&"abc'defgh".to_string()), "{got:?}");
        assert!(got.contains(&"plainvalue1".to_string()), "{got:?}");
    }

    #[test]
    fn yaml_values_and_block_scalars() {
        let yaml = "users:\n- name: admin\n  user:\n    token: tok-1234567890 # comment\n    client-key: |\n      line-one-xx\n      line-two-yy\n";
        let got = strings(yaml);
        assert!(got.contains(&"tok-1234567890".to_string()), "{got:?}");
        assert!(
            got.contains(&"line-one-xx\nline-two-yy".to_string()),
            "{got:?}"
        );
    }

    #[test]
    fn ini_values() {
        let got = strings("[database]\npassword = hunter2hunter2\nuser: someone-long\n");
        assert!(
            strings("user=admin-secret").is_empty(),
            "one line is not a document"
        );
        assert!(got.contains(&"hunter2hunter2".to_string()), "{got:?}");
        assert!(got.contains(&"someone-long".to_string()), "{got:?}");
    }

    #[test]
    fn a_plain_token_has_no_values() {
        assert!(strings("ghp_abcdefghijklmnopqrstuvwxyz0123456789").is_empty());
    }
}
