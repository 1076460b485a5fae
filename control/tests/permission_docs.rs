//! The documents show the permission table the code enforces.
//!
//! `ARCHITECTURE.md`, `api/README.md` and `docs/openapi.yaml` each hold the
//! table rendered from `sealrun_control::permissions::TABLE` between
//! `<!-- permissions:begin -->` and `<!-- permissions:end -->`, and every
//! OpenAPI operation the table names says the same roles in its summary.
//! When the table changes, `SEALRUN_BLESS=1 cargo test -p sealrun-control
//! --test suite permission_docs` rewrites the blocks; the summaries are fixed by
//! hand.
#![allow(clippy::unwrap_used)]

use sealrun_control::permissions::{TABLE, markdown_table};
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- permissions:begin -->";
const END: &str = "<!-- permissions:end -->";

fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The block between the markers of `text`, the markers' indentation, and
/// the text before and after it.
fn split_block(text: &str, what: &str) -> (String, String, String, String) {
    let begin = text
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{what} has no {BEGIN} marker"));
    let line_start = text[..begin].rfind('\n').map_or(0, |i| i + 1);
    let indent = text[line_start..begin].to_owned();
    let body_start = begin + BEGIN.len() + 1;
    let end = text[body_start..]
        .find(END)
        .map(|i| body_start + i)
        .unwrap_or_else(|| panic!("{what} has no {END} marker after {BEGIN}"));
    let end_line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    (
        text[..body_start].to_owned(),
        text[body_start..end_line_start].to_owned(),
        indent,
        text[end_line_start..].to_owned(),
    )
}

fn indented(table: &str, indent: &str) -> String {
    table.lines().map(|l| format!("{indent}{l}\n")).collect()
}

fn check_block(relative: &str) {
    let path = workspace_file(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let (before, block, indent, after) = split_block(&text, relative);
    let expected = indented(&markdown_table(), &indent);
    if block == expected {
        return;
    }
    if std::env::var_os("SEALRUN_BLESS").is_some() {
        std::fs::write(&path, format!("{before}{expected}{after}")).unwrap();
        return;
    }
    panic!(
        "{relative}: the permission table differs from the one the code enforces.\n\
         --- in the document:\n{block}--- enforced:\n{expected}\
         Run `SEALRUN_BLESS=1 cargo test -p sealrun-control --test suite permission_docs` to rewrite it."
    );
}

#[test]
fn architecture_md_shows_the_enforced_table() {
    check_block("ARCHITECTURE.md");
}

#[test]
fn the_api_readme_shows_the_enforced_table() {
    check_block("api/README.md");
}

#[test]
fn the_openapi_description_shows_the_enforced_table() {
    check_block("docs/openapi.yaml");
}

/// `(admin, operator)`-style role lists of the OpenAPI summaries, by
/// operation (`GET /v1/runs`).
fn openapi_summaries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(workspace_file("docs/openapi.yaml")).unwrap();
    let mut out = Vec::new();
    let mut path = None::<String>;
    let mut method = None::<String>;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(format!("/{p}"));
            method = None;
        } else if let Some(m) = line
            .strip_prefix("    ")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|m| ["get", "put", "post", "delete"].contains(m))
        {
            method = Some(m.to_uppercase());
        } else if let (Some(p), Some(m), Some(summary)) =
            (&path, &method, line.trim_start().strip_prefix("summary: "))
        {
            out.push((format!("{m} {p}"), summary.to_owned()));
        }
    }
    out
}

/// The operations a table row names: "`POST/GET /v1/tokens`, `DELETE
/// /v1/tokens/{id}`" gives `POST /v1/tokens`, `GET /v1/tokens`,
/// `DELETE /v1/tokens/{id}`.
fn operations(surfaces: &str) -> Vec<String> {
    surfaces
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.split_once(' '))
        .filter(|(methods, path)| path.starts_with("/v1/") && !methods.is_empty())
        .flat_map(|(methods, path)| {
            methods
                .split('/')
                .map(move |m| format!("{m} {path}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_openapi_summary_names_the_roles_the_table_allows() {
    let summaries = openapi_summaries();
    let mut checked = 0;
    for row in TABLE {
        let roles: Vec<&str> = row.roles.iter().map(|r| r.as_str()).collect();
        let expected = format!("({})", roles.join(", "));
        for op in operations(row.surfaces) {
            let Some((_, summary)) = summaries.iter().find(|(o, _)| *o == op) else {
                panic!(
                    "docs/openapi.yaml has no operation {op} (named by {:?})",
                    row.action
                );
            };
            assert!(
                summary.contains(&expected),
                "docs/openapi.yaml: {op} says {summary:?}, but the table allows {expected}"
            );
            checked += 1;
        }
    }
    // A positive control: the parser found the operations it was meant to.
    assert!(checked >= 20, "only {checked} operations checked");
}
