//! No two modules of the agent import each other, directly or through others.
//!
//! The graph is read from the sources: an edge `a -> b` for every `crate::b`
//! path in `src/a.rs` outside comments (`crate::{b, c}` groups included), an
//! edge to the crate root for a `crate::Item` path (an item of `lib.rs`), and
//! edges from the root to every module it declares. Any cycle fails the test
//! and is printed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = "lib";

/// What `path` (the text after `crate::`) names: a module, or the root for an
/// item of the root (its types: the root re-exports and defines no lowercase
/// item a module could use).
fn target(path: &str) -> Option<String> {
    let name: String = path
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match name.chars().next() {
        None => None,
        Some(c) if c.is_ascii_uppercase() => Some(ROOT.to_owned()),
        Some(_) => Some(name),
    }
}

/// Every module `code` refers to through `crate::`.
fn references(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                out.extend(target(part.trim()));
            }
        } else {
            out.extend(target(rest));
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let module = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut edges = references(&code);
        if module == ROOT {
            for line in code.lines() {
                let line = line.trim_start().trim_start_matches("pub ");
                if let Some(name) = line.strip_prefix("mod ") {
                    edges.insert(name.trim_end_matches(';').trim().to_owned());
                }
            }
        }
        edges.remove(&module);
        graph.insert(module, edges);
    }
    graph
}

/// A cycle through `node`, if the search from it finds one.
fn find_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = stack.iter().position(|n| n == node) {
        let mut cycle = stack[at..].to_vec();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    stack.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(graph, next, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn no_two_modules_of_the_agent_import_each_other() {
    let graph = graph();
    assert!(graph.contains_key("executor") && graph.contains_key("control"));
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = find_cycle(&graph, node, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}\ngraph: {graph:#?}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_reader_sees_module_paths_groups_and_root_items() {
    let refs = references("use crate::control::{RunControl, Stop};\nuse crate::{client, Error};");
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["client", "control", "lib"]
    );
}
