//! The layering rules of ARCHITECTURE.md, checked on the source tree.
//!
//! * No two modules of any crate import each other, directly or through
//!   others: the module import graph of every crate of the workspace (built
//!   from `mod` declarations and every `crate::`, `super::` and `self::`
//!   path, in `use` items and in code) has no cycle.
//! * Only the domain crate (`control`) depends on rusqlite, and it names no
//!   HTTP crate.
//! * Only `control/src/store/` contains SQL.
//! * `ApiError` exists only in `api`.
//! * Each crate's integration tests are one binary, and it compiles every
//!   file of the crate's `tests/`.
//!
//! The parser is deliberately small (comments and literals are blanked, `use`
//! trees expanded, inline modules tracked by their braces); each check has a
//! positive control so a parser that stopped seeing things fails loudly.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace members' directories, from the root `Cargo.toml`.
fn members() -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("the root Cargo.toml lists its members");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(|m| workspace().join(m))
        .collect()
}

/// Source with comments blanked; with `strings` also string and char
/// literals (so braces and paths inside them are not seen). Lengths and
/// line breaks are kept.
fn blank(src: &str, strings: bool) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank_range = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                blank_range(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                blank_range(&mut out, i, end);
                i = end;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let start = i + 2 + hashes;
                let end = src[start..]
                    .find(&close)
                    .map_or(b.len(), |p| start + p + close.len());
                if strings {
                    blank_range(&mut out, i, end);
                }
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                if strings {
                    blank_range(&mut out, i, end);
                }
                i = end;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{1F}'), not a lifetime ('a).
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p + 1)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 3)
                } else {
                    src[i + 1..]
                        .chars()
                        .next()
                        .filter(|c| c.len_utf8() > 1)
                        .map(|c| i + 1 + c.len_utf8())
                        .filter(|&e| b.get(e) == Some(&b'\''))
                        .map(|e| e + 1)
                };
                match end {
                    Some(end) => {
                        if strings {
                            blank_range(&mut out, i, end);
                        }
                        i = end;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`crate::{a::X, b::{self, Y}}`) into paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &str, tree: &str, out: &mut Vec<String>) {
        match tree.find('{') {
            None => {
                let path = tree.split("as").next().unwrap_or(tree);
                let full = if path == "self" {
                    prefix.trim_end_matches("::").to_owned()
                } else {
                    format!("{prefix}{path}")
                };
                out.push(full);
            }
            Some(open) => {
                let head = &tree[..open];
                let inner = &tree[open + 1..tree.len().saturating_sub(1)];
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            if start < i {
                                go(&format!("{prefix}{head}"), &inner[start..i], out);
                            }
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                if start < inner.len() {
                    go(&format!("{prefix}{head}"), &inner[start..], out);
                }
            }
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// Paths starting with `crate`, `super` or `self` in `code` (blanked), as
/// segment lists, with the byte offset each starts at.
fn relative_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    // `use` items first: their trees are expanded.
    let mut covered = vec![false; code.len()];
    let mut search = 0;
    while let Some(p) = code[search..].find("use ") {
        let at = search + p;
        search = at + 4;
        if at > 0 && is_ident(code[..at].chars().next_back().unwrap_or(' ')) {
            continue;
        }
        let Some(end) = code[at..].find(';').map(|e| at + e) else {
            continue;
        };
        let tree = code[at + 4..end].trim();
        if tree.starts_with("crate") || tree.starts_with("super") || tree.starts_with("self") {
            for path in expand_use(tree) {
                out.push((at, path.split("::").map(str::to_owned).collect()));
            }
            covered[at..end].fill(true);
        }
    }
    // Then paths in code.
    for head in ["crate::", "super::", "self::"] {
        let mut search = 0;
        while let Some(p) = code[search..].find(head) {
            let at = search + p;
            search = at + head.len();
            if covered[at] || (at > 0 && is_ident(code[..at].chars().next_back().unwrap_or(' '))) {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            out.push((
                at,
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ));
        }
    }
    out
}

/// A module: its absolute path (`[]` is the crate root) and its code.
struct Module {
    path: Vec<String>,
    code: String,
    /// Inline child modules: (name, byte range of their body).
    inline: Vec<(String, std::ops::Range<usize>)>,
}

/// Every module reachable from `root` through `mod` declarations.
fn modules(root: &Path) -> Vec<Module> {
    let mut out = Vec::new();
    let mut todo = vec![(Vec::<String>::new(), root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let code = blank(&std::fs::read_to_string(&file).unwrap(), true);
        // Where this module's children live on disk.
        let dir = {
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let parent = file.parent().unwrap().to_path_buf();
            if path.is_empty() || stem == "mod" {
                parent
            } else {
                parent.join(stem)
            }
        };
        let mut inline = Vec::new();
        let mut search = 0;
        while let Some(p) = code[search..].find("mod ") {
            let at = search + p;
            search = at + 4;
            if at > 0 && is_ident(code[..at].chars().next_back().unwrap_or(' ')) {
                continue;
            }
            let name: String = code[at + 4..]
                .trim_start()
                .chars()
                .take_while(|&c| is_ident(c))
                .collect();
            let after = code[at + 4..].trim_start()[name.len()..].trim_start();
            if name.is_empty() {
                continue;
            }
            if after.starts_with(';') {
                let candidates = [
                    dir.join(format!("{name}.rs")),
                    dir.join(&name).join("mod.rs"),
                ];
                let child = candidates
                    .iter()
                    .find(|c| c.exists())
                    .unwrap_or_else(|| panic!("{}: mod {name}; has no file", file.display()));
                let mut child_path = path.clone();
                child_path.push(name);
                todo.push((child_path, child.clone()));
            } else if after.starts_with('{') {
                let open = code[at..].find('{').unwrap() + at;
                let mut depth = 0;
                let mut close = code.len();
                for (i, c) in code[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                close = open + i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                inline.push((name, open..close));
            }
        }
        out.push(Module { path, code, inline });
    }
    out
}

/// The import graph of one crate: module path -> module paths it uses.
fn import_graph(root: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules(root);
    let mut known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    for m in &modules {
        for (name, _) in &m.inline {
            let mut p = m.path.clone();
            p.push(name.clone());
            known.insert(p);
        }
    }
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for m in &modules {
        for (at, segments) in relative_paths(&m.code) {
            // The module the path is written in (inline modules included).
            let mut here = m.path.clone();
            for (name, range) in &m.inline {
                if range.contains(&at) {
                    here.push(name.clone());
                }
            }
            let mut target = match segments.first().map(String::as_str) {
                Some("crate") => Vec::new(),
                _ => here.clone(),
            };
            for s in &segments {
                match s.as_str() {
                    "crate" | "self" => {}
                    "super" => {
                        target.pop();
                    }
                    name => target.push(name.to_owned()),
                }
            }
            while !known.contains(&target) {
                target.pop();
            }
            if target != here {
                graph.entry(here).or_default().insert(target);
            }
        }
        graph.entry(m.path.clone()).or_default();
    }
    graph
}

fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        marks.insert(node.clone(), Mark::Active);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Active => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn show(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_owned()
    } else {
        path.join("::")
    }
}

/// Every crate root of the workspace (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`).
fn crate_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for member in members() {
        for root in ["src/lib.rs", "src/main.rs"] {
            let p = member.join(root);
            if p.exists() {
                roots.push(p);
            }
        }
    }
    roots
}

#[test]
fn no_two_modules_of_any_crate_import_each_other() {
    let roots = crate_roots();
    assert!(roots.len() >= 9, "found only {roots:?}");
    for root in roots {
        let graph = import_graph(&root);
        if let Some(cycle) = find_cycle(&graph) {
            let shown: Vec<String> = cycle.iter().map(|p| show(p)).collect();
            panic!(
                "{}: modules import each other: {}",
                root.display(),
                shown.join(" -> ")
            );
        }
    }
}

#[test]
fn the_import_graph_sees_the_imports_it_must_see() {
    // Positive controls for the parser: edges known to exist, through a
    // `use` tree, a `super::` path and a path in code.
    let graph = import_graph(&workspace().join("control/src/lib.rs"));
    let edge = |from: &str, to: &str| {
        let from: Vec<String> = from.split("::").map(str::to_owned).collect();
        let to: Vec<String> = to.split("::").map(str::to_owned).collect();
        graph.get(&from).is_some_and(|t| t.contains(&to))
    };
    assert!(edge("runs", "queue"), "{graph:?}");
    assert!(edge("store::runs", "store::tx"));
    assert!(edge("admin", "store::tokens"));
    assert!(graph.len() >= 30, "only {} modules", graph.len());
    let cyclic: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = [
        (vec!["a".to_owned()], BTreeSet::from([vec!["b".to_owned()]])),
        (vec!["b".to_owned()], BTreeSet::from([vec!["a".to_owned()]])),
    ]
    .into();
    assert!(find_cycle(&cyclic).is_some());
}

#[test]
fn a_use_tree_expands_into_its_paths() {
    assert_eq!(
        expand_use("crate::store::{self, Tx, logs::{Page as P, page}}"),
        [
            "crate::store",
            "crate::store::Tx",
            "crate::store::logs::Page",
            "crate::store::logs::page"
        ]
    );
}

/// `[dependencies]`-like sections' crate names of a manifest.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.contains("dependencies");
            continue;
        }
        if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                let name = name.trim().trim_end_matches(".workspace");
                if !name.is_empty() && !name.starts_with('#') {
                    deps.push(name.to_owned());
                }
            }
        }
    }
    deps
}

#[test]
fn only_the_domain_crate_depends_on_sqlite_and_it_speaks_no_http() {
    let mut with_sqlite = Vec::new();
    for member in members() {
        let deps = dependencies(&member.join("Cargo.toml"));
        if deps.iter().any(|d| d == "rusqlite") {
            with_sqlite.push(member.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(with_sqlite, ["control"]);
    let control = dependencies(&workspace().join("control/Cargo.toml"));
    for http in ["axum", "axum-server", "http", "hyper", "reqwest", "tower"] {
        assert!(
            !control.iter().any(|d| d == http),
            "control depends on {http}: the domain must know nothing of HTTP"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !["target", ".git", "fuzz"].contains(&path.file_name().unwrap().to_str().unwrap()) {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `code` (comments blanked, strings kept) has an SQL statement in
/// a string literal.
fn has_sql(code: &str) -> bool {
    [
        "\"SELECT ",
        "\"INSERT INTO",
        "\"DELETE FROM",
        "\"UPDATE ",
        "\"CREATE TABLE",
        "\"\n    SELECT",
    ]
    .iter()
    .any(|s| code.contains(s))
        || code.contains("r\"SELECT")
        || code.contains("\"BEGIN")
}

#[test]
fn only_the_store_modules_contain_sql() {
    let store = workspace().join("control/src/store");
    let mut found_in_store = 0;
    for member in members() {
        let mut files = Vec::new();
        rust_files(&member.join("src"), &mut files);
        for file in files {
            let code = blank(&std::fs::read_to_string(&file).unwrap(), false);
            if file.starts_with(&store) {
                found_in_store += usize::from(has_sql(&code));
            } else if file.ends_with("testkit/src/postgres.rs") {
                // The test kit creates and drops the suite's PostgreSQL
                // databases: administration of the cluster, not the
                // product's data.
            } else {
                assert!(!has_sql(&code), "{} contains SQL", file.display());
            }
        }
    }
    // Positive control: the detector sees the store's statements.
    assert!(
        found_in_store >= 8,
        "SQL found in only {found_in_store} store files"
    );
}

#[test]
fn api_error_exists_only_in_the_api_crate() {
    let api = workspace().join("api");
    let mut files = Vec::new();
    rust_files(&workspace(), &mut files);
    let mut in_api = 0;
    for file in files {
        let code = blank(&std::fs::read_to_string(&file).unwrap(), true);
        let uses = code.contains("ApiError");
        if file.starts_with(&api) {
            in_api += usize::from(uses);
        } else {
            assert!(!uses, "{} names ApiError", file.display());
        }
    }
    assert!(in_api >= 5, "ApiError found in only {in_api} api files");
}

/// The modules a crate's `tests/main.rs` declares: nothing but one
/// `mod name;` a line (besides comments), so that none is compiled out by a
/// `cfg` or hidden in a line this reads another way.
fn declared_modules(root: &Path) -> BTreeSet<String> {
    let code = blank(&std::fs::read_to_string(root).unwrap(), true);
    let mut declared = BTreeSet::new();
    for line in code.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = line
            .strip_prefix("mod ")
            .and_then(|rest| rest.strip_suffix(';'))
            .filter(|name| name.chars().all(is_ident));
        match name {
            Some(name) => declared.insert(name.to_owned()),
            None => panic!("{}: `{line}` is not a `mod name;` line", root.display()),
        };
    }
    declared
}

/// A test binary links the whole dependency graph: one per file of
/// `tests/` cost CI ~80 MB and a link each, and once all its disk. So each
/// crate has one, `tests/main.rs` (`autotests = false`, one `[[test]]`),
/// and since cargo then no longer finds test files by itself, a file of
/// `tests/` that `main.rs` does not declare would never be compiled or run.
#[test]
fn each_crate_has_one_test_binary_that_compiles_every_test_file() {
    let mut declared_in_all = 0;
    for member in members() {
        let tests = member.join("tests");
        let Ok(entries) = std::fs::read_dir(&tests) else {
            continue;
        };
        let mut files = BTreeSet::new();
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            // A directory holding Rust is a module too (or was a test of
            // its own, `tests/<name>/main.rs`, that must now be declared).
            let holds_rust = || {
                let mut found = Vec::new();
                rust_files(&path, &mut found);
                !found.is_empty()
            };
            if path.extension().is_some_and(|e| e == "rs") || path.is_dir() && holds_rust() {
                files.insert(name);
            }
        }
        let manifest = std::fs::read_to_string(member.join("Cargo.toml")).unwrap();
        let name = member.display();
        if !files.remove("main") {
            assert!(
                files.len() <= 1 && !manifest.contains("autotests = false"),
                "{name}: tests/ has {} files and no main.rs: each would be a binary of its own",
                files.len()
            );
            continue;
        }
        assert!(
            manifest.contains("autotests = false"),
            "{name}: cargo would make a binary of each file of tests/ beside main.rs"
        );
        assert_eq!(
            manifest.matches("[[test]]").count(),
            1,
            "{name}: one [[test]], tests/main.rs"
        );
        assert!(manifest.contains("path = \"tests/main.rs\""), "{name}");
        let declared = declared_modules(&tests.join("main.rs"));
        assert_eq!(
            declared, files,
            "{name}: tests/main.rs must declare exactly the files of tests/ (an undeclared one never runs)"
        );
        declared_in_all += declared.len();
    }
    // Positive control: the test files of the workspace were seen.
    assert!(
        declared_in_all >= 80,
        "only {declared_in_all} test modules seen"
    );
}
