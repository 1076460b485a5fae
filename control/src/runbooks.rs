//! Runbooks: named, versioned command templates declared by admins, and
//! the one place their argv is rendered from a call's parameters.
//!
//! **Template grammar.** Each argv element is literal text with `{param}`
//! placeholders; `{{` and `}}` are a literal `{` and `}`; any other brace is
//! an error, and so is a placeholder naming no declared parameter (or a
//! declared parameter no placeholder uses). A value replaces its placeholder
//! inside its one element: rendering never splits or joins elements and no
//! shell ever sees the result, so a value `x; rm -rf /` (if its rule allows
//! it at all) is one literal argument.
//!
//! **Values.** Every value is checked against its parameter's rule before
//! anything is rendered, and refused naming the parameter and the rule:
//! strings must match the pattern as a whole (it is compiled as
//! `^(?:pattern)$`, anchored or not) and fit `max_len` bytes (default 256);
//! enums must be one of their values; integers must be written in
//! canonical decimal form (optional `-`, no `+`, no leading zeros, no
//! spaces) and lie within `min`..=`max`: a value is substituted exactly as
//! typed, so `+7` or `007` is refused rather than silently rewritten;
//! booleans are `true` or `false`. No value may contain NUL.

use crate::caller::User;
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::service::Control;
use crate::store::{self, Tx, now_ms};
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::names;
use sealrun_wire::run::{RunRequest, RunbookCall};
use sealrun_wire::runbook::{
    Applied, ParamSpec, ParamType, ParamValue, RunbookApplied, RunbookSpec, RunbookView,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Longest string value unless the parameter says otherwise.
const DEFAULT_MAX_LEN: usize = 256;
/// Longest `max_len` a string parameter may declare.
const MAX_MAX_LEN: usize = 64 * 1024;
/// Longest pattern.
const MAX_PATTERN_LEN: usize = 1024;
/// Memory a compiled pattern may take (bounds what an admin's pattern costs).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Longest parameter name.
const MAX_PARAM_NAME: usize = 64;
/// Most runbooks one apply may declare.
const MAX_RUNBOOKS: usize = 500;

/// One piece of an argv element.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Literal text (braces already unescaped).
    Text(String),
    /// A `{param}` placeholder.
    Param(String),
}

/// Parses one argv element of a template.
fn parse_element(element: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = element.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') => {
                            return Err(format!(
                                "argv element {element:?}: a '{{' inside a placeholder (write '{{{{' for a literal brace)"
                            ));
                        }
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!(
                                "argv element {element:?}: placeholder {{{name} is never closed (write '{{{{' for a literal brace)"
                            ));
                        }
                    }
                }
                check_param_name(&name).map_err(|e| format!("argv element {element:?}: {e}"))?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Param(name));
            }
            '}' => {
                return Err(format!(
                    "argv element {element:?}: a lone '}}' (write '}}}}' for a literal brace)"
                ));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// A parameter name: `[a-z][a-z0-9_]*`, at most 64 bytes.
fn check_param_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_PARAM_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid parameter name {name:?}: use 1-{MAX_PARAM_NAME} of a-z, 0-9 and _, starting with a letter"
        ))
    }
}

/// A string parameter's pattern, compiled to match whole values.
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "pattern is {} bytes; the limit is {MAX_PATTERN_LEN}",
            pattern.len()
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let e = e.to_string();
            format!(
                "pattern {pattern:?} is not a valid regular expression: {}",
                e.lines().last().unwrap_or(&e).trim()
            )
        })
}

/// A value as a message shows it: quoted, control characters escaped.
fn shown(value: &str) -> String {
    format!("'{}'", value.escape_debug())
}

/// Checks `value` against parameter `name`'s rule; the error names the
/// parameter and the rule.
fn check_value(name: &str, spec: &ParamSpec, value: &str) -> Result<(), String> {
    let bad = |rule: String| Err(format!("param {name}: {} {rule}", shown(value)));
    if value.contains('\0') {
        return bad("contains a NUL character, which no argument can hold".into());
    }
    match spec.kind {
        ParamType::String => {
            let max = spec.max_len.unwrap_or(DEFAULT_MAX_LEN);
            if value.len() > max {
                return bad(format!("is {} bytes long; max_len is {max}", value.len()));
            }
            let pattern = spec.pattern.as_deref().unwrap_or_default();
            if !compile(pattern)
                .map_err(|e| format!("param {name}: {e}"))?
                .is_match(value)
            {
                return bad(format!("does not match {pattern}"));
            }
        }
        ParamType::Enum => {
            if !spec.values.iter().any(|v| v == value) {
                return bad(format!("is not one of {}", spec.values.join(", ")));
            }
        }
        ParamType::Integer => {
            let digits = value.strip_prefix('-').unwrap_or(value);
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && value != "-0";
            let Some(n) = canonical.then(|| value.parse::<i64>().ok()).flatten() else {
                return bad(
                    "is not an integer in canonical form (digits, an optional leading '-', no '+', no leading zeros)"
                        .into(),
                );
            };
            let (min, max) = (spec.min.unwrap_or(i64::MIN), spec.max.unwrap_or(i64::MAX));
            if n < min || n > max {
                return bad(format!("is not between {min} and {max}"));
            }
        }
        ParamType::Boolean => {
            if value != "true" && value != "false" {
                return bad("is not a boolean (true or false)".into());
            }
        }
    }
    Ok(())
}

/// Checks parameter `name`'s declaration: the fields fit its type, its
/// pattern compiles, its default passes its own rule.
fn check_param(name: &str, p: &ParamSpec) -> Result<(), String> {
    check_param_name(name)?;
    let misplaced = |field: &str| {
        Err(format!(
            "param {name}: {field} does not apply to a {} parameter",
            p.kind
        ))
    };
    if p.kind != ParamType::String && p.pattern.is_some() {
        return misplaced("pattern");
    }
    if p.kind != ParamType::String && p.max_len.is_some() {
        return misplaced("max_len");
    }
    if p.kind != ParamType::Enum && !p.values.is_empty() {
        return misplaced("values");
    }
    if p.kind != ParamType::Integer && (p.min.is_some() || p.max.is_some()) {
        return misplaced("min/max");
    }
    match p.kind {
        ParamType::String => {
            let Some(pattern) = &p.pattern else {
                return Err(format!(
                    "param {name}: a string parameter needs a pattern (e.g. pattern = \"^[a-z0-9-]{{1,40}}$\")"
                ));
            };
            compile(pattern).map_err(|e| format!("param {name}: {e}"))?;
            if let Some(max) = p.max_len {
                if max == 0 || max > MAX_MAX_LEN {
                    return Err(format!(
                        "param {name}: max_len must be between 1 and {MAX_MAX_LEN}"
                    ));
                }
            }
        }
        ParamType::Enum => {
            if p.values.is_empty() {
                return Err(format!("param {name}: an enum parameter needs values"));
            }
            let mut seen = BTreeSet::new();
            for v in &p.values {
                if v.contains('\0') {
                    return Err(format!("param {name}: enum values cannot contain NUL"));
                }
                if !seen.insert(v) {
                    return Err(format!("param {name}: value {v:?} is listed twice"));
                }
            }
        }
        ParamType::Integer => {
            if let (Some(min), Some(max)) = (p.min, p.max) {
                if min > max {
                    return Err(format!("param {name}: min {min} is above max {max}"));
                }
            }
        }
        ParamType::Boolean => {}
    }
    if let Some(default) = &p.default {
        let typed = matches!(
            (p.kind, default),
            (ParamType::String | ParamType::Enum, ParamValue::Text(_))
                | (ParamType::Integer, ParamValue::Integer(_))
                | (ParamType::Boolean, ParamValue::Bool(_))
        );
        if !typed {
            return Err(format!(
                "param {name}: default {default} is not of type {}",
                p.kind
            ));
        }
        check_value(name, p, &default.to_string()).map_err(|e| format!("{e} (its default)"))?;
    }
    Ok(())
}

/// Checks a runbook's declaration on its own (what needs no stored
/// state): name, targets, template, parameters, secrets, image, timeout.
pub(crate) fn check_spec(spec: &RunbookSpec) -> Result<(), String> {
    names::object("runbook", &spec.name).map_err(|e| e.to_string())?;
    if spec.targets.is_empty() {
        return Err("it names no target (targets = [\"...\"])".into());
    }
    let mut seen = BTreeSet::new();
    for t in &spec.targets {
        names::object("target", t).map_err(|e| e.to_string())?;
        if !seen.insert(t) {
            return Err(format!("target {t} is listed twice"));
        }
    }
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err("argv must name a command (its first element cannot be empty)".into());
    }
    let mut used = BTreeSet::new();
    for element in &spec.argv {
        if element.contains('\0') {
            return Err("argv cannot contain NUL characters".into());
        }
        for piece in parse_element(element)? {
            if let Piece::Param(name) = piece {
                if !spec.params.contains_key(&name) {
                    return Err(format!(
                        "argv uses {{{name}}}, but no parameter {name} is declared"
                    ));
                }
                used.insert(name);
            }
        }
    }
    for (name, p) in &spec.params {
        check_param(name, p)?;
        if !used.contains(name) {
            return Err(format!(
                "param {name} is declared but argv never uses {{{name}}}"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for s in &spec.secrets {
        names::env_var(s).map_err(|e| format!("secret name: {e}"))?;
        if !seen.insert(s) {
            return Err(format!("secret {s} is listed twice"));
        }
    }
    if let Some(image) = &spec.image {
        sealrun_wire::image::ImageRef::parse(image).map_err(|e| e.to_string())?;
    }
    if spec.timeout_secs == Some(0) {
        return Err("timeout_secs must be at least 1".into());
    }
    if spec
        .description
        .chars()
        .any(|c| c.is_control() && c != '\n')
    {
        return Err("description cannot contain control characters".into());
    }
    Ok(())
}

/// Checks a runbook against one of its targets: its image is allowed
/// there and its timeout within the target's maximum.
fn check_on_target(spec: &RunbookSpec, target: &TargetSpec) -> Result<(), String> {
    if let Some(image) = &spec.image {
        let allowed = target.effective_images();
        if !sealrun_wire::image::allows(&allowed, image).map_err(|e| e.to_string())? {
            return Err(format!(
                "image {image} is not allowed on target {}: it allows {}",
                target.name,
                allowed.join(", ")
            ));
        }
    }
    if let Some(t) = spec.timeout_secs {
        if t > target.timeout_secs {
            return Err(format!(
                "timeout_secs {t} exceeds target {}'s maximum of {}",
                target.name, target.timeout_secs
            ));
        }
    }
    Ok(())
}

/// Renders `spec`'s argv with `params` (each checked against its rule;
/// defaults fill those left out).
pub(crate) fn render(
    spec: &RunbookSpec,
    params: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    for name in params.keys() {
        if !spec.params.contains_key(name) {
            let known: Vec<&str> = spec.params.keys().map(String::as_str).collect();
            return Err(format!(
                "runbook {} has no param {name} (its params: {})",
                spec.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    let mut values = BTreeMap::new();
    for (name, p) in &spec.params {
        let value = match (params.get(name), &p.default) {
            (Some(v), _) => v.clone(),
            (None, Some(default)) => default.to_string(),
            (None, None) => {
                return Err(format!(
                    "param {name} is required (runbook {} gives it no default)",
                    spec.name
                ));
            }
        };
        check_value(name, p, &value)?;
        values.insert(name.as_str(), value);
    }
    spec.argv
        .iter()
        .map(|element| {
            let mut out = String::new();
            for piece in parse_element(element)? {
                match piece {
                    Piece::Text(t) => out.push_str(&t),
                    Piece::Param(name) => out.push_str(
                        values
                            .get(name.as_str())
                            .ok_or_else(|| format!("param {name} is not declared"))?,
                    ),
                }
            }
            Ok(out)
        })
        .collect()
}

/// A runbook run resolved: the request as if its argv, secrets, image and
/// timeout had been submitted ad hoc, and the runbook version it came from.
pub(crate) struct Rendered {
    pub(crate) request: RunRequest,
    pub(crate) name: String,
    pub(crate) version: u64,
    /// The runbook's own approval rule, if it has one.
    pub(crate) approval: Option<sealrun_wire::approval::ApprovalRule>,
}

/// Resolves a request that calls a runbook: the latest version of the
/// runbook, the target (the request's, or the runbook's only one), the
/// rendered argv. A request that also gives what the runbook decides is
/// refused.
pub(crate) fn resolve(
    tx: &Tx<'_>,
    org_id: i64,
    req: &RunRequest,
    call: &RunbookCall,
) -> Result<Rendered, Error> {
    let own = [
        ("argv", !req.argv.is_empty()),
        ("env", !req.env.is_empty()),
        ("secrets", !req.secrets.is_empty()),
        ("image", req.image.is_some()),
        ("stdin", req.stdin),
    ];
    if let Some((field, _)) = own.iter().find(|(_, given)| *given) {
        return Err(Error::Invalid(format!(
            "a run of runbook {} takes its argv, env, secrets, image and input from the runbook; the request cannot give {field}",
            call.name
        )));
    }
    let view = store::runbooks::latest(tx, org_id, &call.name)?
        .ok_or_else(|| Error::not_found(Object::Runbook, call.name.clone()))?;
    let spec = view.spec;
    let target = if req.target.is_empty() {
        match spec.targets.as_slice() {
            [only] => only.clone(),
            many => {
                return Err(Error::Invalid(format!(
                    "runbook {} runs on several targets ({}): name one",
                    spec.name,
                    many.join(", ")
                )));
            }
        }
    } else if spec.targets.contains(&req.target) {
        req.target.clone()
    } else {
        return Err(Error::Invalid(format!(
            "runbook {} does not run on target {} (it runs on {})",
            spec.name,
            req.target,
            spec.targets.join(", ")
        )));
    };
    let timeout_secs = match (req.timeout_secs, spec.timeout_secs) {
        (Some(t), Some(max)) if t > max => {
            return Err(Error::Invalid(format!(
                "timeout_secs {t} exceeds runbook {}'s timeout of {max}",
                spec.name
            )));
        }
        (Some(t), _) => Some(t),
        (None, rb) => rb,
    };
    let argv = render(&spec, &call.params).map_err(Error::Invalid)?;
    Ok(Rendered {
        // The rest (require_agent, the runbook call itself...) as asked.
        request: RunRequest {
            target,
            argv,
            env: BTreeMap::new(),
            secrets: spec.secrets.clone(),
            timeout_secs,
            image: spec.image.clone(),
            stdin: false,
            ..req.clone()
        },
        approval: spec.approval.clone(),
        name: spec.name,
        version: view.version,
    })
}

/// Stores `spec` as a new version if it differs from the latest one.
fn apply_one(tx: &Tx<'_>, user: &User, spec: RunbookSpec) -> Result<RunbookApplied, Error> {
    if let Some(rule) = &spec.approval {
        crate::approval::check_rule(rule)
            .map_err(|e| Error::Invalid(format!("runbook {}: {e}", spec.name)))?;
    }
    for name in &spec.targets {
        let (_, target) = store::targets::spec_by_name(tx, user.org_id, name)?
            .ok_or_else(|| Error::Invalid(format!("target {name} does not exist")))?;
        check_on_target(&spec, &target).map_err(Error::Invalid)?;
    }
    let latest = store::runbooks::latest(tx, user.org_id, &spec.name)?;
    let (outcome, version) = match &latest {
        // Compared as stored (JSON), so a spec re-read from the store is
        // equal to the one that was written.
        Some(v) if serde_json::to_value(&v.spec)? == serde_json::to_value(&spec)? => {
            return Ok(RunbookApplied {
                name: spec.name,
                version: v.version,
                outcome: Applied::Unchanged,
            });
        }
        Some(v) => (Applied::Updated, v.version + 1),
        None => (Applied::Created, 1),
    };
    let by = format!("{} ({})", user.name, user.actor());
    store::runbooks::insert(tx, user.org_id, &spec, version, now_ms(), &by)?;
    store::audit::append(
        tx,
        user.org_id,
        &user.actor(),
        "runbook.changed",
        &spec.name,
        json!({"version": version, "outcome": outcome.as_str(), "spec": spec}),
    )?;
    Ok(RunbookApplied {
        name: spec.name,
        version,
        outcome,
    })
}

impl Control {
    /// Declares or changes every runbook of `specs` in one transaction:
    /// all of them, or none when any one is refused (each refusal names
    /// its runbook). A runbook whose spec is unchanged keeps its version;
    /// a changed one gets the next; runbooks not listed are left alone.
    pub async fn apply_runbooks(
        &self,
        user: &User,
        specs: Vec<RunbookSpec>,
    ) -> Result<Vec<RunbookApplied>, Error> {
        user.require(Action::ManageRunbooks)?;
        if specs.is_empty() {
            return Err(Error::Invalid("the list declares no runbook".into()));
        }
        if specs.len() > MAX_RUNBOOKS {
            return Err(Error::Invalid(format!(
                "the list declares {} runbooks; the limit is {MAX_RUNBOOKS}",
                specs.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for spec in &specs {
            check_spec(spec)
                .map_err(|e| Error::Invalid(format!("runbook {:?}: {e}", spec.name)))?;
            if !seen.insert(spec.name.as_str()) {
                return Err(Error::Invalid(format!(
                    "runbook {:?} is declared twice",
                    spec.name
                )));
            }
        }
        let user = user.clone();
        self.db
            .write(move |tx| {
                specs
                    .into_iter()
                    .map(|spec| {
                        let name = spec.name.clone();
                        apply_one(tx, &user, spec).map_err(|e| match e {
                            Error::Invalid(why) => {
                                Error::Invalid(format!("runbook {name:?}: {why}"))
                            }
                            other => other,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// The latest version of each of the org's runbooks, by name.
    pub async fn list_runbooks(&self, user: &User) -> Result<Vec<RunbookView>, Error> {
        user.require(Action::ReadRunbooks)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::runbooks::list_latest(tx, org_id))
            .await
    }

    /// Runbook `name`: its latest version, or version `version`.
    pub async fn runbook(
        &self,
        user: &User,
        name: String,
        version: Option<u64>,
    ) -> Result<RunbookView, Error> {
        user.require(Action::ReadRunbooks)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| match version {
                None => store::runbooks::latest(tx, org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::Runbook, name)),
                Some(v) => store::runbooks::version(tx, org_id, &name, v)?.ok_or_else(|| {
                    let message = format!("runbook {name:?} has no version {v}");
                    Error::not_found_because(Object::Runbook, name, message)
                }),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn param(kind: ParamType) -> ParamSpec {
        ParamSpec {
            kind,
            description: String::new(),
            default: None,
            pattern: None,
            max_len: None,
            values: Vec::new(),
            min: None,
            max: None,
        }
    }

    fn string(pattern: &str) -> ParamSpec {
        ParamSpec {
            pattern: Some(pattern.into()),
            ..param(ParamType::String)
        }
    }

    fn runbook(argv: &[&str], params: Vec<(&str, ParamSpec)>) -> RunbookSpec {
        RunbookSpec {
            name: "rb".into(),
            description: String::new(),
            targets: vec!["db".into()],
            argv: argv.iter().map(|s| s.to_string()).collect(),
            params: params.into_iter().map(|(n, p)| (n.to_owned(), p)).collect(),
            secrets: Vec::new(),
            image: None,
            timeout_secs: None,
            approval: None,
        }
    }

    fn call(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_placeholder_is_replaced_inside_its_one_element() {
        let rb = runbook(
            &["printf", "[%s]\\n", "{a}", "--name={a}-{b}"],
            vec![("a", string("[a-z]+")), ("b", string("[0-9]+"))],
        );
        check_spec(&rb).unwrap();
        assert_eq!(
            render(&rb, &call(&[("a", "web"), ("b", "7")])).unwrap(),
            ["printf", "[%s]\\n", "web", "--name=web-7"]
        );
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        let rb = runbook(&["jq", "{{\"x\": {n}}}"], vec![("n", string("[0-9]+"))]);
        check_spec(&rb).unwrap();
        assert_eq!(
            render(&rb, &call(&[("n", "3")])).unwrap(),
            ["jq", "{\"x\": 3}"]
        );
    }

    #[test]
    fn a_value_with_shell_syntax_or_a_newline_stays_one_argument() {
        let rb = runbook(&["echo", "{q}"], vec![("q", string("(?s).*"))]);
        for value in ["x; rm -rf /", "a\nb", "$(id) `id` 'q' \"d\" {a}"] {
            assert_eq!(
                render(&rb, &call(&[("q", value)])).unwrap(),
                ["echo", value]
            );
        }
    }

    #[test]
    fn a_string_must_match_its_pattern_as_a_whole() {
        let rb = runbook(&["x", "{s}"], vec![("s", string("[a-z][a-z0-9-]{0,30}"))]);
        assert_eq!(
            render(&rb, &call(&[("s", "web;rm")])).unwrap_err(),
            "param s: 'web;rm' does not match [a-z][a-z0-9-]{0,30}"
        );
        // Unanchored, yet a match inside the value is not enough.
        assert!(render(&rb, &call(&[("s", "web\nrm")])).is_err());
        assert!(render(&rb, &call(&[("s", ";web")])).is_err());
        let anchored = runbook(&["x", "{s}"], vec![("s", string("^[a-z]+$"))]);
        let err = render(&anchored, &call(&[("s", "web\n")])).unwrap_err();
        assert_eq!(err, "param s: 'web\\n' does not match ^[a-z]+$");
    }

    #[test]
    fn a_string_longer_than_max_len_is_refused() {
        let p = ParamSpec {
            max_len: Some(3),
            ..string(".*")
        };
        let rb = runbook(&["x", "{s}"], vec![("s", p)]);
        assert!(render(&rb, &call(&[("s", "abc")])).is_ok());
        let err = render(&rb, &call(&[("s", "abcd")])).unwrap_err();
        assert!(err.contains("max_len is 3"), "{err}");
        // The default limit applies without one.
        let rb = runbook(&["x", "{s}"], vec![("s", string(".*"))]);
        assert!(render(&rb, &call(&[("s", &"a".repeat(257))])).is_err());
    }

    #[test]
    fn an_enum_takes_only_its_values() {
        let p = ParamSpec {
            values: vec!["slow-queries".into(), "locks".into()],
            ..param(ParamType::Enum)
        };
        let rb = runbook(&["report", "{r}"], vec![("r", p)]);
        assert_eq!(
            render(&rb, &call(&[("r", "locks")])).unwrap(),
            ["report", "locks"]
        );
        assert_eq!(
            render(&rb, &call(&[("r", "drop")])).unwrap_err(),
            "param r: 'drop' is not one of slow-queries, locks"
        );
    }

    #[test]
    fn an_integer_is_canonical_and_within_bounds() {
        let p = ParamSpec {
            min: Some(-5),
            max: Some(100),
            ..param(ParamType::Integer)
        };
        let rb = runbook(&["x", "{n}"], vec![("n", p)]);
        for ok in ["0", "7", "-5", "100"] {
            assert_eq!(render(&rb, &call(&[("n", ok)])).unwrap()[1], ok);
        }
        for bad in [
            "+7",
            "007",
            "-0",
            " 7",
            "7 ",
            "",
            "1e2",
            "0x10",
            "-",
            "99999999999999999999",
        ] {
            let err = render(&rb, &call(&[("n", bad)])).unwrap_err();
            assert!(err.contains("canonical form"), "{bad}: {err}");
        }
        let err = render(&rb, &call(&[("n", "101")])).unwrap_err();
        assert_eq!(err, "param n: '101' is not between -5 and 100");
    }

    #[test]
    fn a_boolean_is_true_or_false() {
        let rb = runbook(
            &["x", "--dry-run={d}"],
            vec![("d", param(ParamType::Boolean))],
        );
        assert_eq!(
            render(&rb, &call(&[("d", "false")])).unwrap()[1],
            "--dry-run=false"
        );
        for bad in ["yes", "1", "True", ""] {
            assert!(render(&rb, &call(&[("d", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_fill_what_the_call_leaves_out_and_others_are_required() {
        let with_default = ParamSpec {
            default: Some(ParamValue::Integer(5)),
            ..param(ParamType::Integer)
        };
        let rb = runbook(
            &["x", "{n}", "{s}"],
            vec![("n", with_default), ("s", string("[a-z]+"))],
        );
        check_spec(&rb).unwrap();
        assert_eq!(render(&rb, &call(&[("s", "a")])).unwrap(), ["x", "5", "a"]);
        assert_eq!(
            render(&rb, &call(&[("n", "6")])).unwrap_err(),
            "param s is required (runbook rb gives it no default)"
        );
    }

    #[test]
    fn an_unknown_param_in_a_call_is_refused_naming_the_known_ones() {
        let rb = runbook(&["x", "{s}"], vec![("s", string("[a-z]+"))]);
        assert_eq!(
            render(&rb, &call(&[("s", "a"), ("t", "b")])).unwrap_err(),
            "runbook rb has no param t (its params: s)"
        );
    }

    #[test]
    fn a_nul_is_refused_whatever_the_rule() {
        let rb = runbook(&["x", "{s}"], vec![("s", string("(?s).*"))]);
        let err = render(&rb, &call(&[("s", "a\0b")])).unwrap_err();
        assert!(err.contains("NUL"), "{err}");
    }

    #[test]
    fn template_mistakes_are_refused_at_apply() {
        let s = || vec![("s", string("[a-z]+"))];
        for (argv, why) in [
            (vec!["x", "{t}"], "no parameter t is declared"),
            (vec!["x", "{s"], "never closed"),
            (vec!["x", "s}", "{s}"], "lone '}'"),
            (vec!["x", "{S}", "{s}"], "invalid parameter name"),
            (vec!["x", "{}", "{s}"], "invalid parameter name"),
            (vec!["x"], "argv never uses {s}"),
            (vec!["", "{s}"], "must name a command"),
        ] {
            let err = check_spec(&runbook(&argv, s())).unwrap_err();
            assert!(err.contains(why), "{argv:?}: {err}");
        }
    }

    #[test]
    fn parameter_declarations_are_checked_at_apply() {
        let cases: Vec<(ParamSpec, &str)> = vec![
            (param(ParamType::String), "needs a pattern"),
            (string("(unclosed"), "not a valid regular expression"),
            (param(ParamType::Enum), "needs values"),
            (
                ParamSpec {
                    values: vec!["a".into(), "a".into()],
                    ..param(ParamType::Enum)
                },
                "listed twice",
            ),
            (
                ParamSpec {
                    min: Some(3),
                    max: Some(1),
                    ..param(ParamType::Integer)
                },
                "above max",
            ),
            (
                ParamSpec {
                    pattern: Some("x".into()),
                    ..param(ParamType::Integer)
                },
                "does not apply",
            ),
            (
                ParamSpec {
                    default: Some(ParamValue::Text("7".into())),
                    ..param(ParamType::Integer)
                },
                "is not of type integer",
            ),
            (
                ParamSpec {
                    default: Some(ParamValue::Text("UP".into())),
                    ..string("[a-z]+")
                },
                "(its default)",
            ),
        ];
        for (p, why) in cases {
            let err = check_spec(&runbook(&["x", "{p}"], vec![("p", p.clone())])).unwrap_err();
            assert!(err.contains(why), "{p:?}: {err}");
        }
    }

    #[test]
    fn names_targets_and_secrets_are_checked_at_apply() {
        let mut rb = runbook(&["x"], vec![]);
        rb.name = "bad name".into();
        assert!(check_spec(&rb).is_err());
        let mut rb = runbook(&["x"], vec![]);
        rb.targets.clear();
        assert!(check_spec(&rb).unwrap_err().contains("no target"));
        let mut rb = runbook(&["x"], vec![]);
        rb.secrets = vec!["A".into(), "A".into()];
        assert!(check_spec(&rb).unwrap_err().contains("twice"));
        let mut rb = runbook(&["x"], vec![]);
        rb.secrets = vec!["NOT-A-NAME".into()];
        assert!(check_spec(&rb).is_err());
    }
}
