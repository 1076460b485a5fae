//! Command lines as a POSIX shell user types and reads them: [`split`] turns
//! typed text into an argv (Slack slash commands), [`join`] shows an argv so
//! that pasting it into a shell runs exactly that argv (the CLI, Slack replies).
//!
//! sealrun never runs a command through a shell; these only translate between
//! an argv and how a person writes one. Neither does any expansion (no `$X`,
//! no globs, no `~`).
//!
//! ```
//! use sealrun_wire::shell;
//!
//! let argv = shell::split(r#"sh -c 'echo $X; exit 3'"#)?;
//! assert_eq!(argv, ["sh", "-c", "echo $X; exit 3"]);
//! assert_eq!(shell::join(&argv), r"sh -c 'echo $X; exit 3'");
//! # Ok::<(), shell::SplitError>(())
//! ```

use std::borrow::Cow;

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
/// for what was typed.
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

/// Characters besides ASCII letters and digits that a shell reads literally
/// in any position of an unquoted word.
const PLAIN: &[u8] = b"-_./=:,@%+";

/// `word` as a shell would need it typed: unchanged when it is made only of
/// letters, digits and `-_./=:,@%+`; otherwise in single quotes, each `'`
/// written `'\''`. The empty word is `''`.
pub fn quote(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || PLAIN.contains(&b));
    if plain {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// An argv for display: its words [`quote`]d and joined by spaces, so that what
/// is shown is what was run. [`split`] of the result gives `argv` back.
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
}
