//! Runbooks: named, versioned command templates declared by admins
//! (`sealrun runbook apply -f runbooks.toml`, `PUT /v1/runbooks`), run with
//! typed parameters (`sealrun run --runbook NAME --param k=v`).
//!
//! The one rule of what a declaration may say ([`check_spec`]) and of how a
//! call's parameters become argv ([`render`]): the control plane renders a
//! run with it, the CLI renders what it signs, and an agent checks a signed
//! runbook run against the definition an admin signed.
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

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::names;
use crate::trust::{Statement, TrustError};

/// A runbook as declared (`[[runbook]]` in `runbooks.toml`).
///
/// Each element of `argv` is literal text with `{param}` placeholders
/// (`{{` and `}}` for literal braces). A value replaces its placeholder
/// inside that one element: substitution never splits or joins elements
/// and never goes through a shell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookSpec {
    /// Runbook name (the object-name rule of `names::object`).
    pub name: String,
    /// What it does, for whoever picks it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Targets it may run on (one or more, each declared).
    pub targets: Vec<String>,
    /// The argv template.
    pub argv: Vec<String>,
    /// Its parameters, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
    /// Secrets of the target it injects (may include the target's
    /// `runbook_only_secrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Image to run in (allowed on each of its targets); absent: the
    /// target's default image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Run timeout (at most each target's maximum); absent: the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// The runbook's own approval rule: it replaces its target's for the
    /// runbook's runs (`require` says which of them; `all` for every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::rule::ApprovalRule>,
    /// Whether a Slack command may run it although no person signs it:
    /// an agent with a trust file runs an unsigned run only of a runbook
    /// whose admin-signed definition says so (or with the signed approvals
    /// its rule demands), its parameters checked against this definition.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_slack: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A call of a runbook: which one, with which parameter values (the
/// control plane, and an agent for a signed runbook run, checks each
/// against the runbook's rule for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookCall {
    /// Runbook name.
    pub name: String,
    /// Parameter values by name; a parameter left out takes its default.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// The type of a runbook parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Text matching `pattern` (as a whole), at most `max_len` bytes.
    String,
    /// One of `values`.
    Enum,
    /// A decimal integer in canonical form, between `min` and `max`.
    Integer,
    /// `true` or `false`.
    Boolean,
}

impl ParamType {
    /// The TOML/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Enum => "enum",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter's default as written in TOML or JSON (`default = 5`,
/// `default = true`, `default = "web"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// Text.
    Text(String),
}

impl fmt::Display for ParamValue {
    /// The text substituted for the placeholder.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// One parameter of a runbook. Which rule fields apply depends on `type`:
/// `pattern` and `max_len` for strings, `values` for enums, `min` and `max`
/// for integers; any other is refused when the runbook is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// What it means.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Taken when the call leaves it out; without one it is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ParamValue>,
    /// String: a regular expression the WHOLE value must match (it is
    /// matched as `^(?:pattern)$` whether or not it is anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// String: the longest value in bytes (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// Enum: the values allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Integer: the smallest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Integer: the largest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// What an admin certifies of a runbook: this definition (template,
/// parameter rules, secrets, image, timeout, approval rule, whether Slack
/// may run it unsigned) is the one agents render and check its runs by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookCertificate {
    /// The org's name.
    pub org: String,
    /// The runbook as declared when it was certified.
    pub runbook: RunbookSpec,
    /// Unix milliseconds it was signed: an agent refuses a definition
    /// older than one it already ran a run of.
    pub issued_at_ms: i64,
    /// Unix milliseconds after which it no longer counts.
    pub expires_at_ms: i64,
}

impl Statement for RunbookCertificate {
    const KIND: &'static str = "runbook certificate";
    const CONTEXT: &'static [u8] = b"sealrun runbook certificate v1\n";
}

impl RunbookCertificate {
    /// Checks that it is runbook `name`'s of org `org`, unexpired at
    /// `now_ms`.
    pub fn check(&self, org: &str, name: &str, now_ms: i64) -> Result<(), TrustError> {
        crate::trust::same(Self::KIND, "org", &self.org, org)?;
        crate::trust::same(Self::KIND, "runbook", &self.runbook.name, name)?;
        if self.expires_at_ms < now_ms {
            return Err(TrustError::Expired(Self::KIND, self.expires_at_ms));
        }
        Ok(())
    }
}

/// `PUT /v1/runbooks`: runbooks to declare or change, all at once or none.
/// Runbooks not listed are left as they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookSpecs {
    /// Each declared once.
    pub runbooks: Vec<RunbookSpec>,
}

/// One version of a runbook as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookView {
    /// The declared spec.
    #[serde(flatten)]
    pub spec: RunbookSpec,
    /// 1 for the first declaration, +1 with every change of its spec.
    pub version: u64,
    /// Unix milliseconds this version was applied.
    pub created_at_ms: i64,
    /// Who applied it.
    pub created_by: String,
    /// An admin's signature over this version's definition, if one
    /// certified it (`sealrun runbook trust`): agents with a trust file
    /// run a runbook only as certified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::trust::Signed<RunbookCertificate>>,
}

/// `GET /v1/runbooks`: the latest version of each runbook, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookList {
    /// The runbooks.
    pub runbooks: Vec<RunbookView>,
}

/// What applying did to one runbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// New: version 1.
    Created,
    /// Its spec changed: a new version.
    Updated,
    /// The same spec as its latest version: nothing stored.
    Unchanged,
}

impl Applied {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Updated => "updated",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// One runbook of a `PUT /v1/runbooks` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookApplied {
    /// Runbook name.
    pub name: String,
    /// Its latest version now.
    pub version: u64,
    /// What happened to it.
    pub outcome: Applied,
}

/// `PUT /v1/runbooks` answer, in the order of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbooksApplied {
    /// Each runbook of the request.
    pub runbooks: Vec<RunbookApplied>,
}

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
fn check_spec_inner(spec: &RunbookSpec) -> Result<(), String> {
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
        crate::image::ImageRef::parse(image).map_err(|e| e.to_string())?;
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

/// Renders `spec`'s argv with `params` (each checked against its rule;
/// defaults fill those left out).
fn render_inner(
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

/// Why a runbook declaration, or a call of one, is refused: the message
/// names the parameter, element or field and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RunbookError(pub String);

/// Checks a runbook's declaration on its own (what needs no stored state):
/// name, targets, template, parameters, secrets, image, timeout.
pub fn check_spec(spec: &RunbookSpec) -> Result<(), RunbookError> {
    check_spec_inner(spec).map_err(RunbookError)
}

/// Renders `spec`'s argv with `params` (each checked against its rule;
/// defaults fill those left out).
pub fn render(
    spec: &RunbookSpec,
    params: &BTreeMap<String, String>,
) -> Result<Vec<String>, RunbookError> {
    render_inner(spec, params).map_err(RunbookError)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_keep_their_json_type() {
        let p: ParamSpec =
            serde_json::from_str(r#"{"type": "integer", "default": 5, "min": 1}"#).unwrap();
        assert_eq!(p.default, Some(ParamValue::Integer(5)));
        let p: ParamSpec = serde_json::from_str(r#"{"type": "boolean", "default": true}"#).unwrap();
        assert_eq!(p.default.unwrap().to_string(), "true");
    }

    #[test]
    fn an_unknown_field_or_type_is_refused() {
        assert!(serde_json::from_str::<ParamSpec>(r#"{"type": "float"}"#).is_err());
        assert!(serde_json::from_str::<ParamSpec>(r#"{"type": "string", "regex": "x"}"#).is_err());
    }

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
            allow_slack: false,
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
        check_spec_inner(&rb).unwrap();
        assert_eq!(
            render_inner(&rb, &call(&[("a", "web"), ("b", "7")])).unwrap(),
            ["printf", "[%s]\\n", "web", "--name=web-7"]
        );
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        let rb = runbook(&["jq", "{{\"x\": {n}}}"], vec![("n", string("[0-9]+"))]);
        check_spec_inner(&rb).unwrap();
        assert_eq!(
            render_inner(&rb, &call(&[("n", "3")])).unwrap(),
            ["jq", "{\"x\": 3}"]
        );
    }

    #[test]
    fn a_value_with_shell_syntax_or_a_newline_stays_one_argument() {
        let rb = runbook(&["echo", "{q}"], vec![("q", string("(?s).*"))]);
        for value in ["x; rm -rf /", "a\nb", "$(id) `id` 'q' \"d\" {a}"] {
            assert_eq!(
                render_inner(&rb, &call(&[("q", value)])).unwrap(),
                ["echo", value]
            );
        }
    }

    #[test]
    fn a_string_must_match_its_pattern_as_a_whole() {
        let rb = runbook(&["x", "{s}"], vec![("s", string("[a-z][a-z0-9-]{0,30}"))]);
        assert_eq!(
            render_inner(&rb, &call(&[("s", "web;rm")])).unwrap_err(),
            "param s: 'web;rm' does not match [a-z][a-z0-9-]{0,30}"
        );
        // Unanchored, yet a match inside the value is not enough.
        assert!(render_inner(&rb, &call(&[("s", "web\nrm")])).is_err());
        assert!(render_inner(&rb, &call(&[("s", ";web")])).is_err());
        let anchored = runbook(&["x", "{s}"], vec![("s", string("^[a-z]+$"))]);
        let err = render_inner(&anchored, &call(&[("s", "web\n")])).unwrap_err();
        assert_eq!(err, "param s: 'web\\n' does not match ^[a-z]+$");
    }

    #[test]
    fn a_string_longer_than_max_len_is_refused() {
        let p = ParamSpec {
            max_len: Some(3),
            ..string(".*")
        };
        let rb = runbook(&["x", "{s}"], vec![("s", p)]);
        assert!(render_inner(&rb, &call(&[("s", "abc")])).is_ok());
        let err = render_inner(&rb, &call(&[("s", "abcd")])).unwrap_err();
        assert!(err.contains("max_len is 3"), "{err}");
        // The default limit applies without one.
        let rb = runbook(&["x", "{s}"], vec![("s", string(".*"))]);
        assert!(render_inner(&rb, &call(&[("s", &"a".repeat(257))])).is_err());
    }

    #[test]
    fn an_enum_takes_only_its_values() {
        let p = ParamSpec {
            values: vec!["slow-queries".into(), "locks".into()],
            ..param(ParamType::Enum)
        };
        let rb = runbook(&["report", "{r}"], vec![("r", p)]);
        assert_eq!(
            render_inner(&rb, &call(&[("r", "locks")])).unwrap(),
            ["report", "locks"]
        );
        assert_eq!(
            render_inner(&rb, &call(&[("r", "drop")])).unwrap_err(),
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
            assert_eq!(render_inner(&rb, &call(&[("n", ok)])).unwrap()[1], ok);
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
            let err = render_inner(&rb, &call(&[("n", bad)])).unwrap_err();
            assert!(err.contains("canonical form"), "{bad}: {err}");
        }
        let err = render_inner(&rb, &call(&[("n", "101")])).unwrap_err();
        assert_eq!(err, "param n: '101' is not between -5 and 100");
    }

    #[test]
    fn a_boolean_is_true_or_false() {
        let rb = runbook(
            &["x", "--dry-run={d}"],
            vec![("d", param(ParamType::Boolean))],
        );
        assert_eq!(
            render_inner(&rb, &call(&[("d", "false")])).unwrap()[1],
            "--dry-run=false"
        );
        for bad in ["yes", "1", "True", ""] {
            assert!(render_inner(&rb, &call(&[("d", bad)])).is_err(), "{bad}");
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
        check_spec_inner(&rb).unwrap();
        assert_eq!(
            render_inner(&rb, &call(&[("s", "a")])).unwrap(),
            ["x", "5", "a"]
        );
        assert_eq!(
            render_inner(&rb, &call(&[("n", "6")])).unwrap_err(),
            "param s is required (runbook rb gives it no default)"
        );
    }

    #[test]
    fn an_unknown_param_in_a_call_is_refused_naming_the_known_ones() {
        let rb = runbook(&["x", "{s}"], vec![("s", string("[a-z]+"))]);
        assert_eq!(
            render_inner(&rb, &call(&[("s", "a"), ("t", "b")])).unwrap_err(),
            "runbook rb has no param t (its params: s)"
        );
    }

    #[test]
    fn a_nul_is_refused_whatever_the_rule() {
        let rb = runbook(&["x", "{s}"], vec![("s", string("(?s).*"))]);
        let err = render_inner(&rb, &call(&[("s", "a\0b")])).unwrap_err();
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
            let err = check_spec_inner(&runbook(&argv, s())).unwrap_err();
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
            let err =
                check_spec_inner(&runbook(&["x", "{p}"], vec![("p", p.clone())])).unwrap_err();
            assert!(err.contains(why), "{p:?}: {err}");
        }
    }

    #[test]
    fn names_targets_and_secrets_are_checked_at_apply() {
        let mut rb = runbook(&["x"], vec![]);
        rb.name = "bad name".into();
        assert!(check_spec_inner(&rb).is_err());
        let mut rb = runbook(&["x"], vec![]);
        rb.targets.clear();
        assert!(check_spec_inner(&rb).unwrap_err().contains("no target"));
        let mut rb = runbook(&["x"], vec![]);
        rb.secrets = vec!["A".into(), "A".into()];
        assert!(check_spec_inner(&rb).unwrap_err().contains("twice"));
        let mut rb = runbook(&["x"], vec![]);
        rb.secrets = vec!["NOT-A-NAME".into()];
        assert!(check_spec_inner(&rb).is_err());
    }
}
