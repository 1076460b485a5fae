//! Command lines as a POSIX shell user types and reads them: [`split`] turns
//! typed text into an argv (Slack slash commands), [`join`] shows an argv so
//! that pasting it into a shell runs exactly that argv (the CLI, Slack replies).
//!
//! sealrun never runs a command through a shell; these only translate between
//! an argv and how a person writes one. Neither does any expansion (no `$X`,
//! no globs, no `~`).
//!
//! A word holding a character a terminal would obey rather than show (see
//! [`crate::text::is_unsafe`]: `ESC`, `\r`, `\n`, bidi overrides...) is
//! shown in ANSI-C quotes, `$'...'` with `\e`, `\r`, `\xHH`, `\uHHHH`
//! escapes (bash, zsh, ksh and POSIX.1-2024 `sh` read them), so a joined argv
//! never holds a raw control character and still pastes back as the same argv.
//!
//! ```
//! use sealrun_wire::shell;
//!
//! let argv = shell::split(r#"sh -c 'echo $X; exit 3'"#)?;
//! assert_eq!(argv, ["sh", "-c", "echo $X; exit 3"]);
//! assert_eq!(shell::join(&argv), r"sh -c 'echo $X; exit 3'");
//!
//! let sneaky = ["sh", "-c", "echo DROP #\r\x1b[2Kselect 1"];
//! assert_eq!(shell::join(&sneaky), r"sh -c $'echo DROP #\r\e[2Kselect 1'");
//! assert_eq!(shell::split(&shell::join(&sneaky))?, sneaky);
//! # Ok::<(), shell::SplitError>(())
//! ```

use crate::text;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::str::Chars;

/// Why text could not be split into words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A quote was opened and never closed.
    #[error("a {0} quote is never closed")]
    UnclosedQuote(char),
    /// The text ends with a lone backslash.
    #[error("the text ends with a lone backslash")]
    TrailingBackslash,
    /// A `\u` or `\U` escape in `$'...'` names no Unicode character.
    #[error("`{0}` in $'...' is not a Unicode character")]
    InvalidEscape(String),
}

/// Typed `"`, and the typographic `“ ”` many clients (Slack, phones) turn it into.
fn is_double(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}')
}

/// Typed `'`, and the typographic `‘ ’` many clients turn it into.
fn is_single(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}')
}

/// Splits `text` into words the way a POSIX shell would, without expanding
/// anything: whitespace separates words; single quotes keep everything
/// literally; double quotes keep everything but `\"` and `\\`; outside quotes a
/// backslash makes the next character literal. Typographic quotes (`“ ” ‘ ’`)
/// count as the quotes they stand for, because chat clients substitute them
/// for what was typed. `$'...'` (ANSI-C quotes, what [`join`] writes for
/// control characters) keeps everything but its backslash escapes: `\a \b
/// \e \E \f \n \r \t \v \\ \' \" \?`, `\xHH`, `\uHHHH`, `\UHHHHHHHH` and
/// octal `\NNN`; any other backslash is kept, as bash does.
pub fn split(text: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists even if empty (`''`) once a quote has started it.
    let mut started = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            if started {
                words.push(std::mem::take(&mut word));
                started = false;
            }
        } else if c == '\\' {
            word.push(chars.next().ok_or(SplitError::TrailingBackslash)?);
            started = true;
        } else if c == '$' && chars.clone().next().is_some_and(is_single) {
            chars.next();
            started = true;
            ansi_c_body(&mut chars, &mut word)?;
        } else if is_single(c) {
            started = true;
            loop {
                match chars.next() {
                    Some(q) if is_single(q) => break,
                    Some(other) => word.push(other),
                    None => return Err(SplitError::UnclosedQuote('\'')),
                }
            }
        } else if is_double(c) {
            started = true;
            loop {
                match chars.next() {
                    Some(q) if is_double(q) => break,
                    Some('\\') => match chars.next() {
                        Some(e) if e == '\\' || is_double(e) => word.push(e),
                        Some(other) => {
                            word.push('\\');
                            word.push(other);
                        }
                        None => return Err(SplitError::UnclosedQuote('"')),
                    },
                    Some(other) => word.push(other),
                    None => return Err(SplitError::UnclosedQuote('"')),
                }
            }
        } else {
            word.push(c);
            started = true;
        }
    }
    if started {
        words.push(word);
    }
    Ok(words)
}

/// Reads the rest of a `$'...'` word, after its opening quote, into `word`.
fn ansi_c_body(chars: &mut Chars<'_>, word: &mut String) -> Result<(), SplitError> {
    loop {
        match chars.next() {
            None => return Err(SplitError::UnclosedQuote('\'')),
            Some(q) if is_single(q) => return Ok(()),
            Some('\\') => {
                let e = chars.next().ok_or(SplitError::UnclosedQuote('\''))?;
                match e {
                    'a' => word.push('\x07'),
                    'b' => word.push('\x08'),
                    'e' | 'E' => word.push('\x1b'),
                    'f' => word.push('\x0c'),
                    'n' => word.push('\n'),
                    'r' => word.push('\r'),
                    't' => word.push('\t'),
                    'v' => word.push('\x0b'),
                    '\\' | '\'' | '"' | '?' => word.push(e),
                    '0'..='7' => {
                        // Up to three octal digits, `e` the first; like bash,
                        // a value above 0o177 is that Latin-1 character.
                        let mut value = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.clone().next().and_then(|d| d.to_digit(8)) {
                                Some(d) => {
                                    chars.next();
                                    value = value * 8 + d;
                                }
                                None => break,
                            }
                        }
                        word.push(char::from_u32(value & 0xff).unwrap_or('\0'));
                    }
                    'x' | 'u' | 'U' => {
                        let max = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut digits = String::new();
                        while digits.len() < max {
                            match chars.clone().next().filter(char::is_ascii_hexdigit) {
                                Some(d) => {
                                    chars.next();
                                    digits.push(d);
                                }
                                None => break,
                            }
                        }
                        if digits.is_empty() {
                            // bash keeps `\x` with no digits as typed.
                            word.push('\\');
                            word.push(e);
                        } else {
                            let c = u32::from_str_radix(&digits, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| {
                                    SplitError::InvalidEscape(format!("\\{e}{digits}"))
                                })?;
                            word.push(c);
                        }
                    }
                    other => {
                        word.push('\\');
                        word.push(other);
                    }
                }
            }
            Some(other) => word.push(other),
        }
    }
}

/// Characters besides ASCII letters and digits that a shell reads literally
/// in any position of an unquoted word.
const PLAIN: &[u8] = b"-_./=:,@%+";

/// `word` as a shell would need it typed: unchanged when it is made only of
/// letters, digits and `-_./=:,@%+`; in ANSI-C quotes (`$'...'`, every
/// [`text::is_unsafe`] character escaped) when it holds a character a
/// terminal would act on; otherwise in single quotes, each `'` written
/// `'\''`. The empty word is `''`. The result never holds a raw control
/// character.
pub fn quote(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || PLAIN.contains(&b));
    if plain {
        Cow::Borrowed(word)
    } else if word.chars().any(text::is_unsafe) {
        Cow::Owned(ansi_c_quote(word))
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// `word` in `$'...'`, with the escapes [`split`] (and bash) read back.
fn ansi_c_quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 8);
    out.push_str("$'");
    for c in word.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\x07' => out.push_str(r"\a"),
            '\x08' => out.push_str(r"\b"),
            '\x1b' => out.push_str(r"\e"),
            '\x0c' => out.push_str(r"\f"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            '\x0b' => out.push_str(r"\v"),
            // Typographic quotes would end the word when split back.
            c if text::is_unsafe(c) || is_single(c) => {
                let code = u32::from(c);
                // Fixed widths, so a following hex digit is never read as
                // part of the escape. Writing to a String cannot fail.
                let _ = match code {
                    0..=0x7f => write!(out, r"\x{code:02x}"),
                    0x80..=0xffff => write!(out, r"\u{code:04x}"),
                    _ => write!(out, r"\U{code:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An argv for display: its words [`quote`]d and joined by spaces, so that what
/// is shown is what was run, and nothing in it can rewrite a terminal.
/// [`split`] of the result gives `argv` back.
pub fn join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn whitespace_of_any_kind_and_length_separates_words() {
        assert_eq!(
            words("  run\tdb \n --  echo  hi "),
            ["run", "db", "--", "echo", "hi"]
        );
        assert!(words("   ").is_empty());
    }

    #[test]
    fn single_quotes_keep_everything_literally() {
        assert_eq!(
            words(r#"sh -c 'echo $X; exit 3'"#),
            ["sh", "-c", "echo $X; exit 3"]
        );
        assert_eq!(words(r#"'a\b"c'"#), [r#"a\b"c"#]);
    }

    #[test]
    fn double_quotes_keep_spaces_and_unescape_quotes_and_backslashes() {
        assert_eq!(
            words(r#""a b" "say \"hi\"" "c\\d" "e\f""#),
            ["a b", r#"say "hi""#, r"c\d", r"e\f"]
        );
    }

    #[test]
    fn a_backslash_outside_quotes_makes_the_next_character_literal() {
        assert_eq!(words(r"a\ b c\'d"), ["a b", "c'd"]);
    }

    #[test]
    fn quotes_join_with_adjacent_text_and_empty_quotes_make_an_empty_word() {
        assert_eq!(words(r#"ab'c d'"e" '' """#), ["abc de", "", ""]);
    }

    #[test]
    fn typographic_quotes_count_as_quotes() {
        assert_eq!(
            words("sh -c \u{2018}echo $X; exit 3\u{2019} \u{201C}a b\u{201D}"),
            ["sh", "-c", "echo $X; exit 3", "a b"]
        );
    }

    #[test]
    fn an_unclosed_quote_or_trailing_backslash_is_an_error() {
        assert_eq!(split("'abc"), Err(SplitError::UnclosedQuote('\'')));
        assert_eq!(split("\"abc"), Err(SplitError::UnclosedQuote('"')));
        assert_eq!(split("\u{201C}abc"), Err(SplitError::UnclosedQuote('"')));
        assert_eq!(split("abc\\"), Err(SplitError::TrailingBackslash));
    }

    #[test]
    fn split_errors_say_what_is_wrong() {
        assert_eq!(
            SplitError::UnclosedQuote('\'').to_string(),
            "a ' quote is never closed"
        );
        assert_eq!(
            SplitError::TrailingBackslash.to_string(),
            "the text ends with a lone backslash"
        );
    }

    #[test]
    fn commands_print_quoted_like_a_shell() {
        let argv = ["sh", "-c", "echo it's $X"].map(String::from);
        assert_eq!(join(&argv), r"sh -c 'echo it'\''s $X'");
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_need() {
        let argv: Vec<String> = ["sh", "-c", "echo $X; it's", ""].map(String::from).to_vec();
        assert_eq!(join(&argv), r#"sh -c 'echo $X; it'\''s' ''"#);
    }

    #[test]
    fn plain_words_are_shown_unquoted() {
        let word = "user@db-1.example:5432/app_db,x=%y+z";
        assert!(matches!(quote(word), Cow::Borrowed(w) if w == word));
    }

    #[test]
    fn the_empty_word_is_two_quotes() {
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn non_ascii_words_are_quoted() {
        assert_eq!(quote("café"), "'café'");
    }

    #[test]
    fn a_joined_command_line_splits_back_into_the_same_argv() {
        let argv = ["psql", "-c", "select 'a b';", "", "it's", "tab\there", "ü"].map(String::from);
        assert_eq!(split(&join(&argv)).unwrap(), argv);
    }

    #[test]
    fn a_word_with_control_characters_is_shown_in_ansi_c_quotes() {
        assert_eq!(
            quote("echo DROP-TABLE-users #\r\x1b[2Kselect 1"),
            r"$'echo DROP-TABLE-users #\r\e[2Kselect 1'"
        );
        assert_eq!(
            quote("\x07\x08\x0b\x0c\n\t\x01\x7f"),
            r"$'\a\b\v\f\n\t\x01\x7f'"
        );
    }

    #[test]
    fn ansi_c_quotes_escape_backslashes_and_quotes() {
        assert_eq!(quote("it's a\\b\n"), r"$'it\'s a\\b\n'");
    }

    #[test]
    fn bidi_and_c1_controls_are_shown_as_fixed_width_unicode_escapes() {
        assert_eq!(quote("a\u{202e}1\u{9b}f"), r"$'a\u202e1\u009bf'");
    }

    #[test]
    fn a_joined_argv_never_holds_a_raw_control_character() {
        let argv = [
            "sh",
            "-c",
            "x\x1b]0;T\x07\x1b[2J",
            "\u{2066}y\u{2069}",
            "z\u{85}",
        ];
        let shown = join(&argv);
        assert!(!shown.chars().any(crate::text::is_unsafe), "{shown:?}");
    }

    #[test]
    fn ansi_c_quoted_words_split_back_into_the_same_argv() {
        let argv = [
            "sh",
            "-c",
            "echo DROP #\r\x1b[2Kselect 1",
            "it's \\ \"q\" \u{2018}t\u{2019}\n",
            "\x07\x08\x0b\x0c\t\x01\x7f\u{9b}\u{202e}\u{feff}1",
        ];
        assert_eq!(split(&join(&argv)).unwrap(), argv);
    }

    #[test]
    fn ansi_c_quotes_are_read_as_bash_reads_them() {
        assert_eq!(
            words(r#"$'a\x41\u00e9\U0001F600\101\033[m\E\?\"' $''"#),
            ["aAé\u{1F600}A\x1b[m\x1b?\"", ""]
        );
    }

    #[test]
    fn unknown_escapes_in_ansi_c_quotes_keep_their_backslash() {
        assert_eq!(words(r"$'\q\x'"), [r"\q\x"]);
    }

    #[test]
    fn a_dollar_not_before_a_quote_is_literal() {
        assert_eq!(words(r#"echo $X "$'y'""#), ["echo", "$X", "$'y'"]);
    }

    #[test]
    fn ansi_c_quote_errors_say_what_is_wrong() {
        assert_eq!(split("$'abc"), Err(SplitError::UnclosedQuote('\'')));
        assert_eq!(split("$'abc\\"), Err(SplitError::UnclosedQuote('\'')));
        assert_eq!(
            split(r"$'\ud800'"),
            Err(SplitError::InvalidEscape(r"\ud800".into()))
        );
    }
}
