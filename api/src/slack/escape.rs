//! Making text safe to show in Slack.
//!
//! Slack's `mrkdwn` gives `&`, `<` and `>` control meaning: `<!channel>`
//! pings a whole channel, `<@U123>` mentions someone, `<https://x|label>`
//! disguises a link. Every piece of text sealrun did not write itself (a
//! command, a target name, run output) goes through [`text`] or
//! [`code_block`], so it shows up exactly as typed and can ping no one.
//!
//! Control characters, bidi overrides and invisible code points are shown
//! visibly first (`\e`, `\r`, `\u{202e}`), by the rule the CLI applies too
//! ([`sealrun_wire::text`]): a Slack user can submit such an argv, and the
//! same text reaches terminals (`sealrun runs list`) and other Slack clients.

use sealrun_wire::text::{escape_controls, escape_lines};

/// Zero-width space: breaks a run of backticks without showing anything.
const ZWSP: char = '\u{200B}';

/// One line of untrusted text: control characters (newlines included) shown
/// visibly, then `&`, `<` and `>` escaped as Slack asks.
pub(crate) fn text(s: &str) -> String {
    entities(&escape_controls(s))
}

/// Escapes `&`, `<` and `>` as Slack asks.
fn entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` escaped inside a ```` ``` ```` block: lines and tabs kept, other
/// control characters shown visibly, entities escaped. A zero-width space
/// follows every backtick, so no run of three can end the block early and
/// let the rest be read as formatting.
pub(crate) fn code_block(s: &str) -> String {
    let body = entities(&escape_lines(s));
    let mut out = String::with_capacity(body.len() + 8);
    out.push_str("```\n");
    for c in body.chars() {
        out.push(c);
        if c == '`' {
            out.push(ZWSP);
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("```");
    out
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

/// The last `max` bytes of `s` at most, cut at a character boundary.
pub(crate) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mentions_channel_pings_and_links_are_neutralised() {
        assert_eq!(
            text("<!channel> <@U123> <https://evil|ok> a&b"),
            "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|ok&gt; a&amp;b"
        );
    }

    #[test]
    fn an_already_escaped_entity_is_escaped_again_so_it_shows_as_typed() {
        assert_eq!(text("&lt;"), "&amp;lt;");
    }

    #[test]
    fn triple_backticks_cannot_close_a_code_block() {
        let block = code_block("a ``` <!here> b");
        assert!(block.starts_with("```\n") && block.ends_with("\n```"));
        let inner = &block[4..block.len() - 4];
        assert!(!inner.contains("```"), "{inner:?}");
        assert!(inner.contains("&lt;!here&gt;"));
        assert_eq!(inner.replace(ZWSP, ""), "a ``` &lt;!here&gt; b");
    }

    #[test]
    fn control_characters_in_text_are_shown_visibly() {
        assert_eq!(
            text("DROP #\r\x1b[2Kselect 1\n\u{202e}<x>"),
            r"DROP #\r\e[2Kselect 1\n\u{202e}&lt;x&gt;"
        );
    }

    #[test]
    fn a_code_block_keeps_its_lines_but_shows_other_controls() {
        assert_eq!(
            code_block("a\tb\n\x1b]0;T\x07c\rd\n"),
            "```\na\tb\n\\e]0;T\\x07c\\rd\n```"
        );
    }

    #[test]
    fn backtick_separators_are_added_after_the_text_is_escaped() {
        // The block's own zero-width spaces survive; one in the input is shown.
        let block = code_block("\u{200b}```");
        assert!(
            block.starts_with(&format!("```\n\\u{{200b}}`{ZWSP}")),
            "{block:?}"
        );
    }

    #[test]
    fn slack_entities_are_decoded_once() {
        assert_eq!(unescape("a &lt;b&gt; &amp;&amp; c"), "a <b> && c");
        assert_eq!(unescape("&amp;lt; &x &"), "&lt; &x &");
    }

    #[test]
    fn a_tail_never_splits_a_character() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("héllo", 5), "éllo");
    }
}
