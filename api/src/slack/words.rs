//! Splitting a slash command's text into words, the way a POSIX shell would
//! (a subset: no expansion of any kind).
//!
//! Slack turns typed quotes into typographic ones on many clients, so `“ ”`
//! count as double quotes and `‘ ’` as single quotes. Slack also sends `&`,
//! `<` and `>` as HTML entities; [`unescape`] undoes that first.

/// Why text could not be split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// A quote was opened and never closed.
    UnclosedQuote(char),
    /// The text ends with a lone backslash.
    TrailingBackslash,
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::UnclosedQuote(q) => write!(f, "a {q} quote is never closed"),
            SplitError::TrailingBackslash => f.write_str("the text ends with a lone backslash"),
        }
    }
}

fn is_double(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}')
}

fn is_single(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}')
}

/// Undoes the escaping Slack applies to the text it sends: `&lt;`, `&gt;`
/// and `&amp;` (in one pass, so `&amp;lt;` becomes `&lt;`, not `<`).
pub(crate) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (decoded, len) = if rest.starts_with("&lt;") {
            ('<', 4)
        } else if rest.starts_with("&gt;") {
            ('>', 4)
        } else if rest.starts_with("&amp;") {
            ('&', 5)
        } else {
            ('&', 1)
        };
        out.push(decoded);
        rest = &rest[len..];
    }
    out.push_str(rest);
    out
}

/// Splits `text` into words: whitespace separates them; single quotes keep
/// everything literally; double quotes keep everything but `\"` and `\\`;
/// outside quotes a backslash makes the next character literal.
pub(crate) fn split(text: &str) -> Result<Vec<String>, SplitError> {
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
    fn slack_entities_are_decoded_once() {
        assert_eq!(unescape("a &lt;b&gt; &amp;&amp; c"), "a <b> && c");
        assert_eq!(unescape("&amp;lt; &x &"), "&lt; &x &");
    }
}
