//! Runbooks: named, versioned command templates declared by admins
//! (`sealrun runbook apply -f runbooks.toml`, `PUT /v1/runbooks`), run with
//! typed parameters (`sealrun run --runbook NAME --param k=v`).
//!
//! These are the declared shapes only; the control plane checks them
//! (names, template, rules) and renders argv from them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

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
    pub approval: Option<crate::approval::ApprovalRule>,
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
}
