//! Text sealrun did not write, made safe to show to a person.
//!
//! A run's argv, a target or user name, an error message quoting what someone
//! typed: any of it can hold characters that a terminal (or a chat client)
//! obeys instead of showing. `\r` and `ESC [2K` rewrite the line being read
//! (`sh -c $'echo DROP-TABLE-users #\r\e[2Kselect 1'` shows as `select 1'`),
//! `ESC ]0;…BEL` sets the window title, `ESC [2J` clears the screen, and the
//! Unicode bidi overrides make text read in an order other than the one it
//! runs in. [`is_unsafe`] is the one rule of which characters those are; every
//! place that shows untrusted text (the CLI, Slack replies, [`crate::shell`]
//! quoting) renders them visibly with the functions here, so that what is
//! shown is what is there.
//!
//! The escapes are for people, not for parsing back: `\e`, `\r`, `\n`, `\t`,
//! `\xHH` for other ASCII controls and `\u{hex}` for the rest. (A literal
//! backslash is left as it is, so Windows paths and regexes stay readable;
//! [`crate::shell::join`] is the exact, reversible form of an argv.)
//! Ordinary non-ASCII text (accents, CJK, emoji) is kept.
//!
//! ```
//! use sealrun_wire::text::escape_controls;
//!
//! assert_eq!(escape_controls("a\x1b[2Kb\rc"), r"a\e[2Kb\rc");
//! assert_eq!(escape_controls("café ✓"), "café ✓");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a terminal or a chat client may act on `c` rather than show it:
///
/// - the C0 controls (U+0000–U+001F, among them ESC, `\r`, `\n`, BEL), DEL
///   and the C1 controls (U+0080–U+009F, among them the 8-bit CSI and OSC);
/// - the bidi controls that reorder what follows (U+061C, U+200E, U+200F,
///   U+202A–U+202E, U+2066–U+2069);
/// - characters that separate lines without being `\n` (U+2028, U+2029) or
///   that are invisible and can hide what sits between visible ones (U+200B,
///   U+2060–U+2064, U+FEFF).
///
/// The zero-width (non-)joiners U+200C and U+200D are kept: scripts and
/// emoji sequences need them, and they reorder nothing.
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200b}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// `s` with every [`is_unsafe`] character written visibly: one line of
/// display text (a table cell, a name, an error message). Borrowed when
/// there is nothing to escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape_where(s, is_unsafe)
}

/// Like [`escape_controls`], but `\n` and `\t` stay as they are: for text of
/// many lines (a command's output, a code block), where they only move the
/// cursor down or right and cannot rewrite what was shown. `\r` is escaped.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_where(s, |c| is_unsafe(c) && c != '\n' && c != '\t')
}

fn escape_where(s: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    let Some(first) = s.find(&escape) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Appends the visible form of `c`.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\x1b' => out.push_str(r"\e"),
        '\r' => out.push_str(r"\r"),
        '\n' => out.push_str(r"\n"),
        '\t' => out.push_str(r"\t"),
        // Writing to a String cannot fail.
        c if c.is_ascii() => {
            let _ = write!(out, r"\x{:02x}", u32::from(c));
        }
        c => {
            let _ = write!(out, r"\u{{{:x}}}", u32::from(c));
        }
    }
}

/// Escapes a stream of bytes that should be text of many lines (a command's
/// output) with [`escape_lines`], chunk by chunk: a UTF-8 character split
/// across two chunks is held back until its end arrives, and bytes that are
/// not UTF-8 are shown as `\xHH` (a lone `0x9b` is an 8-bit CSI to some
/// terminals). Keep one per stream, so that stdout and stderr chunks do not
/// complete each other's characters.
///
/// ```
/// use sealrun_wire::text::ByteEscaper;
///
/// let mut e = ByteEscaper::default();
/// let mut shown = e.push(b"ok \x1b[31m\xc3");
/// shown += &e.push(b"\xa9\xff\n");
/// shown += &e.finish();
/// assert_eq!(shown, "ok \\e[31m\u{e9}\\xff\n");
/// ```
#[derive(Debug, Default)]
pub struct ByteEscaper {
    /// The start of a character whose end is in the next chunk (< 4 bytes).
    pending: Vec<u8>,
}

impl ByteEscaper {
    /// The escaped text of `bytes`, after what an earlier chunk held back.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut input = std::mem::take(&mut self.pending);
        input.extend_from_slice(bytes);
        let mut out = String::with_capacity(input.len());
        let mut rest = input.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(&escape_lines(text));
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` promises this prefix is UTF-8.
                    out.push_str(&escape_lines(
                        std::str::from_utf8(valid).unwrap_or_default(),
                    ));
                    match e.error_len() {
                        Some(bad) => {
                            for b in &after[..bad] {
                                let _ = write!(out, r"\x{b:02x}");
                            }
                            rest = &after[bad..];
                        }
                        None => {
                            // An incomplete character at the end: its rest
                            // may come with the next chunk.
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// What is still held back (a character the stream never finished),
    /// shown as `\xHH`.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for b in &self.pending {
            let _ = write!(out, r"\x{b:02x}");
        }
        out
    }
}

/// Unix milliseconds as ISO-8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`: the one rule
/// for every time sealrun shows (the CLI's tables and messages, the web
/// console, which turns it into the viewer's time zone in the browser), so
/// no time is ever shown without its zone.
///
/// ```
/// assert_eq!(sealrun_wire::text::utc(0), "1970-01-01T00:00:00Z");
/// assert_eq!(sealrun_wire::text::utc(1_796_083_200_000), "2026-12-01T00:00:00Z");
/// ```
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix milliseconds of midnight UTC starting `date` (`YYYY-MM-DD`), the
/// inverse of [`utc`]'s date; `None` if it is not such a date.
///
/// ```
/// use sealrun_wire::text::{utc, utc_day_start};
///
/// assert_eq!(utc_day_start("2026-12-01"), Some(1_796_083_200_000));
/// assert_eq!(utc(utc_day_start("1970-01-01").unwrap()), "1970-01-01T00:00:00Z");
/// assert_eq!(utc_day_start("2026-13-01"), None);
/// ```
pub fn utc_day_start(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let mut next = |max: i64| -> Option<i64> {
        let n: i64 = parts.next()?.parse().ok()?;
        (1..=max).contains(&n).then_some(n)
    };
    let (y, m, d) = (next(9999)?, next(12)?, next(31)?);
    Some(days_from_civil(y, m, d) * 86_400_000)
}

/// Howard Hinnant's civil-to-days algorithm, [`civil_from_days`]'s inverse.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both are in range by construction: a day of 1..=31, a month of 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_controls_is_borrowed_unchanged() {
        let s = "psql -c 'select 1' café 東京 ✓ a\\b";
        assert!(matches!(escape_controls(s), Cow::Borrowed(b) if b == s));
    }

    #[test]
    fn escape_is_shown_as_backslash_e() {
        assert_eq!(escape_controls("\x1b[2J"), r"\e[2J");
    }

    #[test]
    fn carriage_return_newline_and_tab_are_shown_by_name() {
        assert_eq!(escape_controls("a\rb\nc\td"), r"a\rb\nc\td");
    }

    #[test]
    fn other_ascii_controls_and_del_are_shown_as_hex() {
        assert_eq!(escape_controls("\0\x07\x08\x7f"), r"\x00\x07\x08\x7f");
    }

    #[test]
    fn c1_controls_are_shown_as_code_points() {
        // U+009B is CSI and U+009D OSC to terminals that honour 8-bit controls.
        assert_eq!(escape_controls("\u{9b}2J\u{9d}"), r"\u{9b}2J\u{9d}");
        assert_eq!(escape_controls("\u{80}\u{85}"), r"\u{80}\u{85}");
    }

    #[test]
    fn bidi_overrides_and_isolates_are_shown_as_code_points() {
        assert_eq!(
            escape_controls("a\u{202e}b\u{2066}c\u{2069}\u{200f}\u{61c}"),
            r"a\u{202e}b\u{2066}c\u{2069}\u{200f}\u{61c}"
        );
    }

    #[test]
    fn invisible_characters_and_line_separators_are_shown_as_code_points() {
        assert_eq!(
            escape_controls("a\u{200b}b\u{feff}c\u{2028}d\u{2060}"),
            r"a\u{200b}b\u{feff}c\u{2028}d\u{2060}"
        );
    }

    #[test]
    fn joiners_that_scripts_and_emoji_need_are_kept() {
        let family = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}";
        assert_eq!(escape_controls(family), family);
        assert_eq!(escape_controls("a\u{200c}b"), "a\u{200c}b");
    }

    #[test]
    fn the_line_rewriting_attack_of_issue_12_shows_every_character() {
        let argv = "echo DROP-TABLE-users #\r\x1b[2Kselect 1";
        assert_eq!(
            escape_controls(argv),
            r"echo DROP-TABLE-users #\r\e[2Kselect 1"
        );
    }

    #[test]
    fn escape_lines_keeps_newlines_and_tabs_but_not_carriage_returns() {
        assert_eq!(
            escape_lines("a\tb\nc\rd\x1b]0;T\x07\n"),
            "a\tb\nc\\rd\\e]0;T\\x07\n"
        );
    }

    #[test]
    fn every_unsafe_character_is_escaped_into_safe_ones() {
        for c in (0..0x11_0000)
            .filter_map(char::from_u32)
            .filter(|&c| is_unsafe(c))
        {
            let shown = escape_controls(c.encode_utf8(&mut [0; 4])).into_owned();
            assert!(!shown.chars().any(is_unsafe), "{c:?} shows as {shown:?}");
            assert!(shown.starts_with('\\'), "{c:?} shows as {shown:?}");
        }
    }

    #[test]
    fn a_byte_stream_is_escaped_like_the_text_it_holds() {
        let mut e = ByteEscaper::default();
        assert_eq!(e.push(b"a\x1b[2Kb\n"), "a\\e[2Kb\n");
    }

    #[test]
    fn a_character_split_across_chunks_is_held_back_until_complete() {
        let mut e = ByteEscaper::default();
        assert_eq!(e.push(b"x\xe2\x80"), "x");
        assert_eq!(e.push(b"\xae!"), "\\u{202e}!");
        assert_eq!(e.finish(), "");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        let mut e = ByteEscaper::default();
        assert_eq!(e.push(b"a\x9b2Jb\xff"), r"a\x9b2Jb\xff");
    }

    #[test]
    fn a_character_the_stream_never_finishes_is_shown_as_hex_at_the_end() {
        let mut e = ByteEscaper::default();
        assert_eq!(e.push(b"a\xe2\x80"), "a");
        assert_eq!(e.finish(), r"\xe2\x80");
    }
}
