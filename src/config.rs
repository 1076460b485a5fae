//! The one loader of the CLI's TOML files (`agent.toml`, `server.toml`,
//! `targets.toml`, the saved profile), so that every one of them is read the
//! same way and a mistake in any of them is reported the same way: one line
//! naming the file, the position and what is wrong, e.g.
//! `/etc/sealrun/server.toml:3:1: unknown field `lisen`, expected one of ...`.
//!
//! The types read are the callers'; they should `deny_unknown_fields`, so that
//! a misspelled key is an error rather than a setting silently ignored.

use anyhow::{Context as _, Result, anyhow};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads the file at `path` and parses it as `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(path, &text)
}

/// Parses `text`, the contents of the file at `path`, as `T`. Errors read
/// `PATH:LINE:COLUMN: MESSAGE` (or `PATH: MESSAGE` when the parser gives no
/// position), on one line.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let (line, column) = position(text, span.start);
                format!(":{line}:{column}")
            })
            .unwrap_or_default();
        anyhow!("{}{at}: {}", path.display(), e.message().trim_end())
    })
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    // Spans fall on character boundaries; `get` guards against one that does not.
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn a_parse_error_names_the_file_the_line_and_the_column() {
        let err = parse::<Sample>(Path::new("/etc/x.toml"), "name = \"a\"\nnmae = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/x.toml:2:1: "), "{err}");
        assert!(err.contains("nmae"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let err = load::<Sample>(Path::new("/nonexistent/agent.toml")).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot read /nonexistent/agent.toml: "),
            "{err:#}"
        );
    }

    #[test]
    fn a_valid_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.toml");
        std::fs::write(&path, "name = \"a\"\n").unwrap();
        assert_eq!(load::<Sample>(&path).unwrap().name, "a");
    }

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        assert_eq!(position("abc", 0), (1, 1));
        assert_eq!(position("a\nbé\nc", 5), (2, 3));
        assert_eq!(position("a\nb", 2), (2, 1));
    }
}
