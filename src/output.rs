//! Human tables and `--json` output for read commands, and the rule for
//! printing what sealrun did not write itself.
//!
//! **Terminal safety.** Text that comes from the control plane (an argv, a
//! name, a submitter, an error message, an audit detail) may hold control
//! characters that a terminal would obey: `\r` and `ESC [2K` rewrite the
//! line being read, `ESC ]0;...` sets the window title. Every such piece of
//! text goes through [`safe`] (tables do it for every cell), which shows them
//! visibly ([`sealrun_wire::text`], the rule Slack replies use too). This is
//! done whether or not stdout is a terminal: piped text ends up in `less -R`,
//! CI log viewers and terminals just the same, and one code path is one to
//! test. `--json` output is left to serde, which escapes every control
//! character. A command's own output (`run`, `runs logs`) is the exception:
//! it is written raw, as `docker logs` does, unless `--sanitize` asks for
//! [`ChunkWriter::sanitizing`].
//!
//! **A closed stdout.** Everything here writes to stdout with `write!` and
//! returns the error ([`outln!`] instead of `println!`, which panics with
//! "failed printing to stdout: Broken pipe" when the reader is gone: Rust
//! ignores SIGPIPE, so a write to a closed pipe is an `EPIPE` error).
//! `main` turns that error into a quiet exit 141 (see its doc).

use sealrun_wire::log::{LogChunk, LogEvent, RunEnd, StreamKind};
use sealrun_wire::text::{ByteEscaper, escape_controls};
use serde::Serialize;
use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::io::Write as _;

/// `println!` that returns the write's `io::Result` instead of panicking
/// when stdout is closed (`| head`); use it as `outln!(...)?`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// Whether `e` is a write to a closed pipe (the reader went away), also
/// when serde_json's writer met it (it wraps the `io::Error` in its own).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(|io| io.kind()) == pipe
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == pipe
    })
}

/// `e` as the one line sealrun prints for it: the context chain joined with
/// ": " ("a: b: c", as `{:#}` does), leaving out a cause whose text the
/// layer above already quoted. Many error types say their cause in their
/// own message *and* return it as their `source` (`"connect: {source}"`),
/// which `{:#}` would print twice.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut above = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if above.contains(&text) {
            // Said already; the next cause is compared with this one, which
            // is as close to it as anything printed.
            above = text;
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        above = text;
    }
    line
}

/// Whether sealrun colours what it writes to stderr (`sealrun dev`'s
/// messages, the daemons' text logs): only on a terminal, so pipes, files
/// and CI logs get plain text, and never when `NO_COLOR` is set to anything
/// but "" (https://no-color.org). The one place that decides.
pub fn colour_stderr() -> bool {
    use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn use_colour(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

/// `text` in the SGR style `sgr` ("1" bold, "1;34" bold blue) when stderr
/// takes colour ([`colour_stderr`]), plain otherwise.
pub fn paint_stderr(text: &str, sgr: &str) -> String {
    if colour_stderr() {
        format!("\x1b[{sgr}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// `s`, which sealrun did not write, safe to print: control characters,
/// bidi overrides and invisible code points shown as `\e`, `\r`, `\u{202e}`...
pub fn safe(s: &str) -> Cow<'_, str> {
    escape_controls(s)
}

/// Prints `value` as pretty JSON: the `--json` output of a command that
/// prints one result (streams print one compact object per line instead,
/// see [`json_line`]).
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints `value` as one line of compact JSON and flushes it: the `--json`
/// output of streams (`run`, `runs logs --follow`), one object per line.
pub fn json_line<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A left-aligned text table with a header row.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; every cell is printed through [`safe`], so a cell is
    /// always one line that cannot rewrite the rest of the table.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| match safe(&c) {
                    Cow::Borrowed(_) => c,
                    Cow::Owned(escaped) => escaped,
                })
                .collect(),
        );
    }

    pub fn print(&self) -> anyhow::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = std::io::stdout().lock();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Writes a run's output chunks where they came from (stdout to stdout,
/// stderr and sealrun's own notices to stderr): raw, or escaped with
/// `--sanitize`.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    /// One escaper per stream when sanitizing, so a character split across
    /// two chunks of one stream is not completed by the other's bytes.
    sanitize: Option<[ByteEscaper; 2]>,
    /// `--json`: every chunk, then the end, as one [`LogEvent`] per line on
    /// stdout (the API's follow stream format).
    json: bool,
}

impl ChunkWriter {
    /// A writer that passes the bytes through as they are.
    pub fn raw() -> ChunkWriter {
        ChunkWriter::default()
    }

    /// A writer that shows control characters visibly (keeping newlines and
    /// tabs) and bytes that are not UTF-8 as `\xHH`.
    pub fn sanitizing() -> ChunkWriter {
        ChunkWriter {
            sanitize: Some(Default::default()),
            json: false,
        }
    }

    /// A writer that prints each chunk, and then the run's end, as one JSON
    /// [`LogEvent`] per line on stdout (`--json`; the data is base64).
    pub fn json_lines() -> ChunkWriter {
        ChunkWriter {
            sanitize: None,
            json: true,
        }
    }

    /// The writer `--json` and `--sanitize` ask for.
    pub fn for_flags(json: bool, sanitize: bool) -> ChunkWriter {
        if json {
            ChunkWriter::json_lines()
        } else {
            ChunkWriter::new(sanitize)
        }
    }

    /// `raw` or `sanitizing` as `sanitize` says.
    pub fn new(sanitize: bool) -> ChunkWriter {
        if sanitize {
            ChunkWriter::sanitizing()
        } else {
            ChunkWriter::raw()
        }
    }

    /// Writes one chunk and flushes it, so output shows as it arrives.
    pub fn write(&mut self, chunk: &LogChunk) -> anyhow::Result<()> {
        if self.json {
            return json_line(&LogEvent::Chunk(chunk.clone()));
        }
        let to_stdout = chunk.stream == StreamKind::Stdout;
        match &mut self.sanitize {
            None => emit(to_stdout, &chunk.data.0),
            Some(escapers) => {
                let text = escapers[usize::from(!to_stdout)].push(&chunk.data.0);
                emit(to_stdout, text.as_bytes())
            }
        }
    }

    /// Writes what a sanitizing writer still holds back (the start of a
    /// character the stream never finished).
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if let Some([out, err]) = self.sanitize.take() {
            emit(true, out.finish().as_bytes())?;
            emit(false, err.finish().as_bytes())?;
        }
        Ok(())
    }

    /// Records how the run ended: the last line of `--json` output, nothing
    /// otherwise.
    pub fn end(&mut self, end: &RunEnd) -> anyhow::Result<()> {
        if self.json {
            json_line(&LogEvent::End(end.clone()))?;
        }
        Ok(())
    }
}

fn emit(to_stdout: bool, bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
    } else {
        let mut err = std::io::stderr().lock();
        err.write_all(bytes)?;
        err.flush()?;
    }
    Ok(())
}

/// Unix milliseconds now (what [`time`] formats; what certificates and
/// deadlines are compared with).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as ISO-8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`: the one rule
/// for every time sealrun prints (tables, `runs show`, messages), so no time
/// is ever shown without its zone. `--json` keeps the raw `*_ms` numbers.
pub fn time(ms: i64) -> String {
    sealrun_wire::text::utc(ms)
}

pub fn opt_time(ms: Option<i64>) -> String {
    ms.map(time).unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_show_control_characters_visibly() {
        let mut t = Table::new(&["COMMAND"]);
        t.row(vec!["a\r\x1b[2Kb\nc".to_owned()]);
        assert_eq!(t.rows, [[r"a\r\e[2Kb\nc"]]);
    }

    #[test]
    fn colour_needs_a_terminal_and_no_non_empty_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    /// An error that quotes its source in its own message, as
    /// `#[error("{during}: {source}")]` does.
    #[derive(Debug)]
    struct Quoting(std::io::Error);

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "connect: {}", self.0)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_line_says_a_quoted_cause_once() {
        let e = anyhow::Error::new(Quoting(std::io::Error::other("refused")));
        assert_eq!(format!("{e:#}"), "connect: refused: refused");
        assert_eq!(error_line(&e), "connect: refused");
    }

    #[test]
    fn an_error_line_keeps_every_cause_not_quoted_above() {
        let e = anyhow::anyhow!("refused").context("cannot connect");
        assert_eq!(error_line(&e), "cannot connect: refused");
        assert_eq!(error_line(&e), format!("{e:#}"));
    }

    #[test]
    fn times_print_as_utc_calendar_dates() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_795_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
