//! The redactor's behaviour, one rule per test, through the public API only.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sealrun_redactor::{Error, MASK, MAX_SECRET_LEN, MIN_SECRET_LEN, Redactor, StreamRedactor};

const SECRET: &str = "s3cr3t/p@ss+w0rd";

fn redactor(secrets: &[&str]) -> Redactor {
    Redactor::new(secrets).unwrap()
}

fn redact(secrets: &[&str], text: &str) -> String {
    String::from_utf8(redactor(secrets).redact(text.as_bytes())).unwrap()
}

/// Streams `chunks` through a fresh stream and returns everything it wrote.
fn stream(redactor: Redactor, chunks: &[&[u8]]) -> Vec<u8> {
    let mut stream = StreamRedactor::new(Arc::new(redactor));
    let mut out = Vec::new();
    for chunk in chunks {
        stream.push(chunk, &mut out);
    }
    stream.finish(&mut out);
    out
}

// --- What is masked, and how --------------------------------------------------------------

#[test]
fn a_secret_is_replaced_by_three_asterisks() {
    assert_eq!(
        redact(&[SECRET], &format!("password: {SECRET}\n")),
        "password: ***\n"
    );
    assert_eq!(MASK, b"***");
}

#[test]
fn output_without_secrets_passes_through_unchanged() {
    let text = "2025-11-25T10:00:00Z INFO migration 0042 applied, 17 rows\n";
    assert_eq!(redact(&[SECRET], text), text);
}

#[test]
fn every_occurrence_is_masked() {
    assert_eq!(
        redact(&[SECRET], &format!("{SECRET} and {SECRET}")),
        "*** and ***"
    );
}

#[test]
fn several_secrets_are_all_masked() {
    assert_eq!(
        redact(
            &["first-secret", "second-secret"],
            "first-secret second-secret"
        ),
        "*** ***"
    );
}

#[test]
fn overlapping_secrets_are_masked_as_one_run() {
    // Leftmost-longest alone would leave " sit" of the second secret visible.
    assert_eq!(
        redact(&["ipsum dolor", "dolor sit"], "Lorem ipsum dolor sit amet"),
        "Lorem *** amet"
    );
}

#[test]
fn a_secret_inside_another_is_masked_once() {
    assert_eq!(
        redact(
            &["ipsum dolor sit", "dolor si"],
            "Lorem ipsum dolor sit amet"
        ),
        "Lorem *** amet"
    );
}

#[test]
fn adjacent_occurrences_become_one_mask() {
    // A run of secret bytes is one `***`, so the output does not tell how many there were.
    assert_eq!(redact(&["secret-1"], "secret-1secret-1 x"), "*** x");
}

#[test]
fn the_longer_of_two_secrets_sharing_a_start_wins() {
    assert_eq!(
        redact(&["Password123!", "Password123!!"], "123Password123!!123"),
        "123***123"
    );
}

#[test]
fn matching_is_case_sensitive() {
    assert_eq!(redact(&["Password123!"], "password123!"), "password123!");
}

#[test]
fn matching_is_byte_wise_and_needs_no_utf8() {
    let secret = b"\xff\xfe\x00secret\x80";
    let redactor = Redactor::new([secret]).unwrap();
    let mut text = b"\xc3(".to_vec();
    text.extend_from_slice(secret);
    text.extend_from_slice(b"\xff");
    assert_eq!(redactor.redact(&text), b"\xc3(***\xff");
}

#[test]
fn an_empty_redactor_masks_nothing() {
    let redactor = Redactor::empty();
    assert_eq!(redactor.pattern_count(), 0);
    assert_eq!(redactor.max_pattern_len(), 0);
    assert_eq!(redactor.redact(b"anything at all"), b"anything at all");
    assert_eq!(stream(Redactor::empty(), &[b"any", b"thing"]), b"anything");
}

#[test]
fn an_empty_list_of_secrets_builds_an_empty_redactor() {
    let redactor = Redactor::new(Vec::<String>::new()).unwrap();
    assert_eq!(redactor.pattern_count(), 0);
}

#[test]
fn duplicate_secrets_are_kept_once() {
    assert_eq!(
        redactor(&[SECRET, SECRET]).pattern_count(),
        redactor(&[SECRET]).pattern_count()
    );
}

// --- Which secrets are accepted -----------------------------------------------------------

#[test]
fn secrets_shorter_than_the_minimum_are_refused() {
    assert_eq!(MIN_SECRET_LEN, 8);
    assert_eq!(
        Redactor::new(["1234567"]).unwrap_err(),
        Error::TooShort { len: 7, min: 8 }
    );
    assert!(Redactor::new(["12345678"]).is_ok());
}

#[test]
fn an_empty_secret_is_refused() {
    assert_eq!(
        Redactor::new([""]).unwrap_err(),
        Error::TooShort {
            len: 0,
            min: MIN_SECRET_LEN
        }
    );
}

#[test]
fn one_short_secret_refuses_the_whole_set() {
    assert!(matches!(
        Redactor::new([SECRET, "short"]),
        Err(Error::TooShort { len: 5, .. })
    ));
}

#[test]
fn secrets_longer_than_the_maximum_are_refused() {
    let long = vec![b'x'; MAX_SECRET_LEN + 1];
    assert_eq!(
        Redactor::new([&long]).unwrap_err(),
        Error::TooLong {
            len: MAX_SECRET_LEN + 1,
            max: MAX_SECRET_LEN
        }
    );
    assert!(Redactor::new([&long[1..]]).is_ok());
}

#[test]
fn errors_never_contain_the_secret() {
    let err = Redactor::new(["hunter2"]).unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn debug_output_shows_counts_never_secrets() {
    let redactor = Arc::new(redactor(&[SECRET]));
    let shown = format!("{redactor:?}");
    assert!(
        shown.contains(&redactor.pattern_count().to_string()),
        "{shown}"
    );
    assert!(!shown.contains("s3cr3t"), "{shown}");
    let mut stream = StreamRedactor::new(redactor);
    stream.push(b"s3cr3t/p", &mut Vec::new());
    let shown = format!("{stream:?}");
    assert!(shown.contains("pending_len: 8"), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[test]
fn redactors_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Redactor>();
    fn sendable<T: Send>() {}
    sendable::<StreamRedactor>();
}

// --- Derived forms ------------------------------------------------------------------------

#[test]
fn base64_of_a_secret_is_masked_padded_or_not_in_both_alphabets() {
    // `s3cr3t/p@ss+w0rd?` encodes with `+`, `/` and `=`.
    let secret = "s3cr3t/p@ss+w0rd?>";
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        let encoded = engine.encode(secret);
        assert_eq!(
            redact(&[secret], &format!("value: {encoded}\n")),
            "value: ***\n",
            "{encoded}"
        );
    }
}

#[test]
fn base64_of_a_secret_inside_longer_base64_is_masked_at_every_alignment() {
    // HTTP basic auth: base64("user:secret"); the secret can start at any byte of a group.
    for user in ["a", "ab", "abc", "abcd"] {
        let encoded = STANDARD.encode(format!("{user}:{SECRET}"));
        let masked = redact(&[SECRET], &format!("Authorization: Basic {encoded}"));
        assert!(
            masked.starts_with("Authorization: Basic ") && masked.ends_with("***"),
            "{masked}"
        );
        // Only the characters that encode bits of `user:` survive.
        let prefix_chars = (8 * (user.len() + 1)).div_ceil(6);
        assert_eq!(
            masked.len(),
            "Authorization: Basic ".len() + prefix_chars + 3,
            "{masked}"
        );
    }
}

#[test]
fn base64_of_a_secret_followed_by_more_data_is_masked() {
    let encoded = STANDARD.encode(format!("x{SECRET}trailing data"));
    let masked = redact(&[SECRET], &encoded);
    assert!(masked.contains("***"), "{masked}");
    let kept = masked.replace("***", "");
    assert!(
        kept.len() <= encoded.len() - (SECRET.len() * 4 / 3 - 2),
        "{masked}"
    );
}

#[test]
fn base64_wrapped_at_76_or_64_columns_is_masked_line_by_line() {
    let secret = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7-----END-----";
    let encoded = STANDARD.encode(secret);
    for width in [76, 64] {
        let wrapped: Vec<&str> = encoded
            .as_bytes()
            .chunks(width)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        let masked = redact(&[secret], &(wrapped.join("\n") + "\n"));
        assert_eq!(masked, "***\n".repeat(wrapped.len()), "width {width}");
    }
}

#[test]
fn hex_of_a_secret_is_masked_in_either_case() {
    let lower: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        redact(&[SECRET], &format!("dump {lower} end")),
        "dump *** end"
    );
    assert_eq!(
        redact(&[SECRET], &format!("dump {} end", lower.to_uppercase())),
        "dump *** end"
    );
}

/// The 8-byte grams of eight hex digits are looked up in a filter and table of their own:
/// hex in mixed case, starting on either nibble of a byte, is still found there, whole and
/// streamed a byte at a time.
#[test]
fn mixed_case_hex_of_a_long_secret_is_masked_at_either_nibble_phase() {
    let secret = "0123-long-Secret/with+40-bytes=of-text!!";
    let hex: String = secret
        .bytes()
        .enumerate()
        .map(|(k, b)| {
            let digits = format!("{b:02x}");
            if k % 3 == 0 {
                digits.to_uppercase()
            } else {
                digits
            }
        })
        .collect();
    for phase in [0, 1] {
        // At phase 1 the hex starts on the low nibble of the first byte.
        let printed = &hex[phase..];
        let text = format!("dump {printed} end\n");
        // (The lone low nibble is masked with the piece that goes on from it.)
        let want = "dump *** end\n";
        assert_eq!(redact(&[secret], &text), want, "phase {phase}");
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(
            stream(redactor(&[secret]), &bytes),
            want.as_bytes(),
            "phase {phase}, streamed"
        );
        // Positive control: the same text without the secret passes unchanged.
        assert_eq!(redact(&["unrelated-secret-value"], &text), text);
    }
}

#[test]
fn percent_encoded_secret_is_masked_as_common_url_encoders_write_it() {
    let secret = "p@ss word/1~x!";
    for encoded in [
        "p%40ss%20word%2F1~x%21", // RFC 3986, Go PathEscape-style
        "p%40ss+word%2F1~x%21",   // form encoding, Go QueryEscape, Python quote_plus
        "p%40ss%20word%2F1~x!",   // JavaScript encodeURIComponent
        "p%40ss%20word/1~x%21",   // Python quote (safe="/")
        "p%40ss+word%2F1%7Ex%21", // Java URLEncoder
        "p%40ss%20word%2f1~x%21", // lower-case hex digits
    ] {
        assert_eq!(
            redact(&[secret], &format!("postgres://app:{encoded}@db/x")),
            "postgres://app:***@db/x",
            "{encoded}"
        );
    }
}

#[test]
fn json_escaped_secret_is_masked() {
    let secret = "pa\"ss\\w/rd\n\t<&>\u{1}";
    let json = serde_json::to_string(secret).unwrap();
    assert_eq!(
        redact(&[secret], &format!("{{\"password\":{json}}}")),
        "{\"password\":\"***\"}"
    );
    // PHP-style `\/` and Go's HTML-safe `\u003c\u003e\u0026`.
    assert_eq!(
        redact(&[secret], r#""pa\"ss\\w\/rd\n\t<&>\u0001""#),
        "\"***\""
    );
    assert_eq!(
        redact(&[secret], r#""pa\"ss\\w/rd\n\t\u003c\u0026\u003e\u0001""#),
        "\"***\""
    );
}

#[test]
fn json_escaped_twice_is_masked() {
    let secret = "say \"hello\" now";
    let twice = serde_json::to_string(&serde_json::to_string(secret).unwrap()).unwrap();
    assert!(!redact(&[secret], &twice).contains("hello"), "{twice}");
}

#[test]
fn non_ascii_secret_is_masked_as_python_json_writes_it() {
    assert_eq!(
        redact(
            &["pässwörd-ключ"],
            r#"{"k": "p\u00e4ssw\u00f6rd-\u043a\u043b\u044e\u0447"}"#
        ),
        r#"{"k": "***"}"#
    );
}

#[test]
fn go_quoted_secret_is_masked() {
    // fmt.Sprintf("%q", "tab\there\x1b[0m")
    assert_eq!(
        redact(&["tab\there\x1b[0m"], r#"error: "tab\there\x1b[0m""#),
        r#"error: "***""#
    );
}

#[test]
fn shell_and_sql_quoted_secrets_are_masked() {
    let secret = "it's-a-secret";
    assert_eq!(
        redact(&[secret], r"+ psql -c 'it'\''s-a-secret'"),
        "+ psql -c '***'"
    );
    assert_eq!(
        redact(&[secret], r#"shlex: 'it'"'"'s-a-secret'"#),
        "shlex: '***'"
    );
    assert_eq!(
        redact(&[secret], "INSERT INTO t VALUES ('it''s-a-secret')"),
        "INSERT INTO t VALUES ('***')"
    );
}

#[test]
fn html_escaped_secret_is_masked() {
    let secret = "<p&ss\"'word>";
    for escaped in [
        "&lt;p&amp;ss&quot;&apos;word&gt;",
        "&lt;p&amp;ss&#34;&#39;word&gt;",
        "&lt;p&amp;ss&quot;&#x27;word&gt;",
    ] {
        assert_eq!(
            redact(&[secret], &format!("<td>{escaped}</td>")),
            "<td>***</td>",
            "{escaped}"
        );
    }
}

#[test]
fn a_secret_containing_percent_escapes_is_masked_as_written() {
    // Masking the value as registered, never an unescaped reading of it (a GitHub leak).
    let secret = "p%40ssw0rd%21";
    assert_eq!(redact(&[secret], "pw=p%40ssw0rd%21"), "pw=***");
    assert_eq!(
        redact(&[secret], "url=https://u:p%2540ssw0rd%2521@h"),
        "url=https://u:***@h"
    );
}

#[test]
fn a_quoted_secret_is_also_masked_without_its_quotes() {
    assert_eq!(
        redact(&["\"Password123!!\""], "echo Password123!!"),
        "echo ***"
    );
}

// --- Multi-line secrets -------------------------------------------------------------------

const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nshort\n-----END OPENSSH PRIVATE KEY-----\n";

#[test]
fn a_multiline_secret_is_masked_whole() {
    assert_eq!(
        redact(&[KEY], &format!("key:\n{KEY}done\n")),
        "key:\n***done\n"
    );
}

#[test]
fn each_line_of_a_multiline_secret_is_masked_on_its_own() {
    assert_eq!(
        redact(&[KEY], "line 2 is b3BlbnNzaC1rZXktdjEAAAAA here"),
        "line 2 is *** here"
    );
}

#[test]
fn pem_armor_lines_are_not_masked_on_their_own() {
    // They name the key type only; masking them would garble every other key the job prints.
    let other =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAother\n-----END OPENSSH PRIVATE KEY-----\n";
    assert_eq!(redact(&[KEY], other), other);
}

#[test]
fn lines_shorter_than_the_minimum_are_not_masked_on_their_own() {
    assert_eq!(redact(&[KEY], "a short line"), "a short line");
}

#[test]
fn a_multiline_secret_printed_through_a_pty_is_masked() {
    let pty = KEY.replace('\n', "\r\n");
    assert_eq!(
        redact(&[KEY], &format!("$ cat key\r\n{pty}$ ")),
        "$ cat key\r\n***$ "
    );
}

#[test]
fn a_multiline_secret_echoed_unquoted_is_masked() {
    // `echo $KEY` turns every newline into a space and drops the trailing one.
    let echoed = KEY.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        redact(&[KEY], &format!("+ echo {echoed}\n")),
        "+ echo ***\n"
    );
}

#[test]
fn a_multiline_secret_without_its_trailing_newline_is_masked() {
    // `$(cat key)` strips the trailing newline.
    let trimmed = KEY.trim_end();
    assert_eq!(redact(&[KEY], &format!("[{trimmed}]")), "[***]");
    assert_eq!(
        redact(&[KEY], &format!("[{}]", trimmed.replace('\n', "\r\n"))),
        "[***]"
    );
}

#[test]
fn a_json_document_secret_is_masked_whole_not_only_line_by_line() {
    let document =
        "{\n  \"type\": \"service_account\",\n  \"private_key\": \"MIIEvQIBADANBgkqhkiG9w0\"\n}\n";
    assert_eq!(
        redact(&[document], &format!("creds: {document}")),
        "creds: ***"
    );
    // kubectl and logs print it JSON-escaped on one line.
    let escaped = serde_json::to_string(document).unwrap();
    assert_eq!(redact(&[document], &escaped), "\"***\"");
}

#[test]
fn the_readme_example_holds() {
    let redactor = Arc::new(Redactor::new(["s3cr3t-t0ken"]).unwrap());
    let mut stdout = StreamRedactor::new(Arc::clone(&redactor));
    let mut out = Vec::new();
    stdout.push(b"token=s3cr3t-t", &mut out);
    assert_eq!((out.as_slice(), stdout.pending_len()), (&b"token="[..], 8));
    stdout.push(b"0ken\n", &mut out);
    assert_eq!(out, b"token=***\n");
    stdout.finish(&mut out);
    assert_eq!(redactor.redact(b"czNjcjN0LXQwa2Vu"), b"***");
}

// --- Streaming ----------------------------------------------------------------------------

#[test]
fn a_secret_split_across_chunks_is_masked() {
    let out = stream(
        redactor(&[SECRET]),
        &[b"password: s3cr", b"3t/p@ss", b"+w0rd\n"],
    );
    assert_eq!(out, b"password: ***\n");
}

#[test]
fn a_secret_fed_one_byte_at_a_time_is_masked() {
    let text = format!("a {SECRET} b {SECRET}");
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
    assert_eq!(stream(redactor(&[SECRET]), &chunks), b"a *** b ***");
}

#[test]
fn a_stream_writes_what_redacting_the_whole_input_writes() {
    let text = format!("x{SECRET}{SECRET}y {} z", STANDARD.encode(SECRET));
    let whole = redactor(&[SECRET]).redact(text.as_bytes());
    for size in [1, 2, 3, 5, 7, 16, 64] {
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(size).collect();
        assert_eq!(
            stream(redactor(&[SECRET]), &chunks),
            whole,
            "chunks of {size}"
        );
    }
}

#[test]
fn clean_output_is_not_held_back() {
    let mut stream = StreamRedactor::new(Arc::new(redactor(&[SECRET])));
    let mut out = Vec::new();
    stream.push(b"nothing to see here\n", &mut out);
    assert_eq!(out, b"nothing to see here\n");
    assert_eq!(stream.pending_len(), 0);
}

#[test]
fn only_what_could_start_a_secret_is_held_back() {
    let mut stream = StreamRedactor::new(Arc::new(redactor(&[SECRET])));
    let mut out = Vec::new();
    stream.push(b"password: s3cr3t/p@", &mut out);
    assert_eq!(out, b"password: ");
    assert_eq!(stream.pending_len(), "s3cr3t/p@".len());
    // The held-back bytes turn out not to be the secret: they are written at once.
    stream.push(b"X", &mut out);
    assert_eq!(out, b"password: s3cr3t/p@X");
    assert_eq!(stream.pending_len(), 0);
}

#[test]
fn a_stream_never_holds_back_a_whole_pattern() {
    let redactor = Arc::new(redactor(&[SECRET, "another-secret-value"]));
    let mut stream = StreamRedactor::new(Arc::clone(&redactor));
    let mut out = Vec::new();
    for chunk in format!("{SECRET}another-secret-valu{SECRET}")
        .as_bytes()
        .chunks(3)
    {
        stream.push(chunk, &mut out);
        assert!(stream.pending_len() < redactor.max_pattern_len());
    }
}

#[test]
fn finish_writes_out_the_held_back_tail() {
    let mut stream = StreamRedactor::new(Arc::new(redactor(&[SECRET])));
    let mut out = Vec::new();
    stream.push(b"ends with s3cr3t", &mut out);
    assert_eq!(out, b"ends with ");
    stream.finish(&mut out);
    // An incomplete secret is not the secret: it is written as it is.
    assert_eq!(out, b"ends with s3cr3t");
    assert_eq!(stream.pending_len(), 0);
}

#[test]
fn a_stream_can_be_reused_after_finish() {
    let mut stream = StreamRedactor::new(Arc::new(redactor(&[SECRET])));
    let mut out = Vec::new();
    stream.push(b"first s3cr3t/", &mut out);
    stream.finish(&mut out);
    stream.push(SECRET.as_bytes(), &mut out);
    stream.finish(&mut out);
    assert_eq!(out, b"first s3cr3t/***");
}

#[test]
fn each_output_stream_keeps_its_own_state() {
    let redactor = Arc::new(redactor(&[SECRET]));
    let (mut stdout, mut stderr) = (
        StreamRedactor::new(Arc::clone(&redactor)),
        StreamRedactor::new(redactor),
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    stdout.push(b"out: s3cr3t/", &mut out);
    stderr.push(b"err: s3cr3t/", &mut err);
    stdout.push(b"p@ss+w0rd\n", &mut out);
    stderr.push(b"nope\n", &mut err);
    stdout.finish(&mut out);
    stderr.finish(&mut err);
    assert_eq!(out, b"out: ***\n");
    assert_eq!(err, b"err: s3cr3t/nope\n");
}

#[test]
fn a_mask_spanning_chunks_is_written_once() {
    let chunks: [&[u8]; 3] = [b"[s3cr3t/p@ss+w0rd", b"s3cr3t/p@ss+w0rd", b"]"];
    assert_eq!(stream(redactor(&[SECRET]), &chunks), b"[***]");
}

#[test]
fn empty_chunks_change_nothing() {
    let chunks: [&[u8]; 5] = [b"", b"s3cr3t/p", b"", b"@ss+w0rd", b""];
    assert_eq!(stream(redactor(&[SECRET]), &chunks), b"***");
}

#[test]
fn a_secret_an_xxd_dump_wraps_after_a_digit_is_masked_on_both_lines() {
    // The byte 0x37 is `7` in xxd's character column and ends its hex `37`: the column's
    // last character must not be read as the hex digit the secret wants there.
    let dump = "00000000: 4142 4344 4546 4748 494a 4b4c 4d4e 4f37  ABCDEFGHIJKLMNO7\n\
                00000010: 6162 6364 6566 670a                      abcdefg.\n";
    let out = redact(&["7abcdefg"], dump);
    assert!(!out.contains("4f37"), "{out}");
    assert!(!out.contains("6162 6364 6566 67"), "{out}");
    // Positive control: the same dump with another secret is left as it is.
    assert_eq!(redact(&["zzzzzzzz"], dump), dump);
}

/// The output of streaming `text` through `redactor` split once at every position, and in
/// one-byte chunks, must be the whole buffer's output; returns that output.
fn every_split_gives_the_whole(redactor: Redactor, text: &str) -> String {
    let redactor = Arc::new(redactor);
    let text = text.as_bytes();
    let whole = redactor.redact(text);
    let streamed = |cuts: &mut dyn Iterator<Item = usize>| {
        let mut stream = StreamRedactor::new(Arc::clone(&redactor));
        let mut out = Vec::new();
        let mut at = 0;
        for cut in cuts {
            stream.push(&text[at..cut], &mut out);
            at = cut;
        }
        stream.push(&text[at..], &mut out);
        stream.finish(&mut out);
        out
    };
    for cut in 1..text.len() {
        assert_eq!(
            String::from_utf8_lossy(&streamed(&mut std::iter::once(cut))),
            String::from_utf8_lossy(&whole),
            "split after {:?}",
            String::from_utf8_lossy(&text[..cut])
        );
    }
    assert_eq!(streamed(&mut (1..text.len())), whole, "one-byte chunks");
    String::from_utf8(whole).unwrap()
}

#[test]
fn a_chunk_ending_in_a_dump_lines_offset_column_leaves_the_wrapped_secret_undecided() {
    // `xxd -u` (issue 14, guarantee seed 7 case 6): the secret's last two bytes wrap to the
    // next line. A chunk that ended right after that line's `00000020:` (or its space) made
    // extension decide that the digits were not an offset column (nothing came after them
    // yet), so the first line's eight bytes were written out, and the two on the next line
    // were too few to mask: nothing of the secret was masked.
    let secret = [0x35, 0xaf, 0xe1, 0x38, 0x66, 0xe3, 0x30, 0x74, 0xdd, 0x43];
    let dump = "2025-11-25T10:00:00Z INFO starting\n1q0p4.4,sny5b6am3\n\
        00000000: 7D20 2F2D 7773 6274 3036 6664 6278 7D6D  } /-wsbt06fdbx}m\n\
        00000010: 6171 2F63 3637 7A6D 35AF E138 66E3 3074  aq/c67zm5..8f.0t\n\
        00000020: DD43 6D78 686E 2F30 6836 7474 326D       .Cmxhn/0h6tt2m\n";
    let out = every_split_gives_the_whole(Redactor::new([secret]).unwrap(), dump);
    assert!(!out.contains("35AF E138 66E3 3074"), "{out}");
    assert!(!out.contains("DD43"), "{out}");
    // Positive control: the same dump with another secret is left as it is.
    assert_eq!(redact(&["zzzzzzzz"], dump), dump);
}

#[test]
fn the_end_of_a_dump_lines_hex_is_held_back_until_the_next_lines_bytes_show() {
    // A piece may begin with the last byte or two of a dump line, before its character
    // column (xxd) or before the next line's offset column (od): too short for any gram, they
    // were written out when a chunk ended in the column, the line break or the offset, and
    // the rest of the secret on the next line was one byte short of a run.
    let xxd = "00000000: 7D20 2F2D 7773 6274 3036 6664 6278 7D6D  } /-wsbt06fdbx}m\n\
        00000010: 6171 2F63 3637 7A6D 35AF E138 66E3 3074  aq/c67zm5..8f.0t\n";
    let secret = [
        0x7d, 0x6d, 0x61, 0x71, 0x2f, 0x63, 0x36, 0x37, 0x7a, 0x6d, 0x35, 0xaf,
    ];
    let out = every_split_gives_the_whole(Redactor::new([secret]).unwrap(), xxd);
    assert!(!out.contains("6171 2F63 3637 7A6D 35AF"), "{out}");
    let od = "0000000 79 69 75 6e 76 72 6c 74 78 7a 62 78 65 67 76 6f\n\
        0000020 71 69 73 74 70 77 6b 6e 64 67 70 74 74 6c 73 61\n\
        0000040 50 2a 7a 52 3f 44 44 3b 6c 3a 74 6c 71 6c 61 78\n";
    let secret = [
        0x61, 0x50, 0x2a, 0x7a, 0x52, 0x3f, 0x44, 0x44, 0x3b, 0x6c, 0x3a,
    ];
    let out = every_split_gives_the_whole(Redactor::new([secret]).unwrap(), od);
    assert!(!out.contains("50 2a 7a 52 3f 44 44 3b 6c 3a"), "{out}");
    // Positive control.
    assert_eq!(redact(&["zzzzzzzz"], xxd), xxd);
    assert_eq!(redact(&["zzzzzzzz"], od), od);
}

#[test]
fn a_hexdump_pieces_masks_do_not_depend_on_where_chunks_end() {
    // `hexdump -C` puts two spaces mid-line where the secret's hex form has one: extending
    // rightwards read the first as the form's space, leftwards the second, and the masks of
    // the two readings merged over the other, so the output depended on the chunking.
    let dump = "00000000  6b 2c 3d 66 79 25 2e 5a  77 6b 25 79 79 63 61 6f  |k,=fy%.Zwk%yycao|\n\
        00000010\n";
    let secret = [0x2c, 0x3d, 0x66, 0x79, 0x25, 0x2e, 0x5a, 0x77, 0x6b, 0x25];
    let out = every_split_gives_the_whole(Redactor::new([secret]).unwrap(), dump);
    assert!(out.starts_with("00000000  6b *** ***79 79"), "{out}");
    // The character column may hold `|` itself: the column is still found, and a secret
    // wrapped across it is masked on both lines whatever the chunks.
    let dump = "00000020  63 74 f5 0c 32 5e ae b7  7c 7c 00 1a 3c 50 98 5b  |ct..2^..||..<P.[|\n\
        00000030  c3 e8 09 7f bd cc b9 0a  f8 93 de b7 71 79 75 6d  |............qyum|\n";
    let secret = [
        0xf5, 0x0c, 0x32, 0x5e, 0xae, 0xb7, 0x7c, 0x7c, 0x00, 0x1a, 0x3c, 0x50, 0x98, 0x5b, 0xc3,
        0xe8, 0x09, 0x7f, 0xbd, 0xcc, 0xb9, 0x0a, 0xf8, 0x93, 0xde, 0xb7,
    ];
    let out = every_split_gives_the_whole(Redactor::new([secret]).unwrap(), dump);
    assert!(!out.contains("98 5b"), "{out}");
    assert!(!out.contains("c3 e8"), "{out}");
    // Positive control.
    assert_eq!(redact(&["zzzzzzzz"], dump), dump);
}

#[test]
fn four_to_seven_hex_digits_ending_a_wrapped_line_are_held_back() {
    // `xxd -p`: a secret of 12 bytes or more whose hex begins with four to seven digits at the
    // end of a line has no 8-byte gram there; they were written out when a chunk ended
    // early in the next line, and the whole buffer masked them.
    let dump = "736d72636465786c676b676e7478776a6e666567706d6e626d6a7072435b\n\
        43686a2a606773656879417170726c6768767164\n";
    let secret = [
        0x43, 0x5b, 0x43, 0x68, 0x6a, 0x2a, 0x60, 0x67, 0x73, 0x65, 0x68, 0x79, 0x41,
    ];
    let out = every_split_gives_the_whole(Redactor::new([secret]).unwrap(), dump);
    assert!(
        out.starts_with("736d72636465786c676b676e7478776a6e666567706d6e626d6a7072***\n"),
        "{out}"
    );
    // Positive control.
    assert_eq!(redact(&["zzzzzzzz"], dump), dump);
}

#[test]
fn the_layout_that_begins_a_dump_line_stays_visible_whichever_side_a_seed_is_on() {
    // Extending rightwards meets a line break first and skips the next line's indentation or
    // offset column whole; extending leftwards from a seed on the next line (or on the space
    // after its offset column) read the indentation's space as the form's separator, or the
    // offset's last digit as the digit the form wanted there, so the mask depended on which
    // side of the line break a seed was on: a stream whose held-back bytes began on the line
    // before re-extended from the line after and masked the indentation (fuzz seed 77031).
    let secret = "Tr0ub4dor&3horse-battery";
    // `od -An -tx1`, two bytes of the secret on the first line (no seed there).
    let od_an = " 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 54 72\n \
        30 75 62 34 64 6f 72 26 33 68 6f 72 73 65 2d 62\n \
        61 74 74 65 72 79 20 61 6e 64 20 6d 6f 72 65 20\n \
        74 65 78 74\n";
    let out = every_split_gives_the_whole(redactor(&[secret]), od_an);
    assert_eq!(
        out,
        " 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e ***\n ***\n \
        ***20 61 6e 64 20 6d 6f 72 65 20\n 74 65 78 74\n"
    );
    // `od -tx1`, the first line ending in `30` and the offset column in `0`: the first
    // line's three bytes were left out of the piece, and the offset's `0` masked.
    let od = "0000000 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 54 72 30\n\
        0000020 75 62 34 64 6f 72 26 33 68 6f 72 73 65 2d 62 61\n\
        0000040 74 74 65 72 79 20 61 6e 64 20 6d 6f 72 65 20 74\n\
        0000060 65 78 74\n";
    let out = every_split_gives_the_whole(redactor(&[secret]), od);
    assert_eq!(
        out,
        "0000000 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e 2e ***\n0000020 ***\n\
        0000040 ***20 61 6e 64 20 6d 6f 72 65 20 74\n0000060 65 78 74\n"
    );
    // Positive control.
    assert_eq!(redact(&["zzzzzzzz"], od_an), od_an);
    assert_eq!(redact(&["zzzzzzzz"], od), od);
}
