//! What names may look like, checked the same way by the control plane, the
//! agent and the CLI. Names end up in URLs, file names on agents, Docker
//! objects, environment variables and log lines, so they are kept to a boring
//! alphabet.
//!
//! ```
//! use sealrun_wire::names::{self, NameError};
//!
//! assert!(names::object("target", "prod-db").is_ok());
//! assert!(names::env_var("PGPASSWORD").is_ok());
//! let err = names::env_var("1PASSWORD").unwrap_err();
//! assert!(matches!(err, NameError::EnvVar { .. }));
//! ```

/// Longest object name (org, pool, target, agent, token label).
pub const MAX_NAME_LEN: usize = 64;
/// Longest free-form label.
pub const MAX_LABEL_LEN: usize = 128;
/// Longest environment variable name.
///
/// POSIX sets no limit, but every name travels: in run requests, in the audit
/// log, in the secret bundle handed to `sealrun-init` (whose codec takes names
/// up to 255 bytes), and in error messages. A cap well below the codec's keeps
/// every name that passes here deliverable, and keeps a megabyte "name" from
/// being stored and echoed back. No real variable comes close to 128 bytes.
pub const MAX_ENV_VAR_LEN: usize = 128;

/// Most arguments a run's command may have, the program included. The whole
/// run reaches the container's shim in one bundle (`sealrun-init`'s
/// `MAX_ARGS`; the agent checks at compile time that they agree), so the
/// control plane refuses at submit what the agent could not deliver.
pub const MAX_ARGS: usize = 4096;

/// Most environment variables a run may have, plain ones and secrets
/// together (`sealrun-init`'s `MAX_ENTRIES`, as [`MAX_ARGS`]).
pub const MAX_ENV_VARS: usize = 1024;

/// Longest value of a plain variable, in bytes: Linux refuses to start a
/// program with any `NAME=VALUE` string over 128 KiB (`sealrun-init`'s
/// `MAX_VALUE_LEN`, as [`MAX_ARGS`]).
pub const MAX_ENV_VALUE_LEN: usize = 128 * 1024 - 255 - 2;

/// A name that breaks one of the rules of this module; the variant says which.
/// Messages quote the offending name (names are not secret) and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// [`object`]: 1-64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
    #[error(
        "invalid {kind} name {name:?}: use 1-{MAX_NAME_LEN} letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    Object {
        /// What was being named (`target`, `pool`, ...).
        kind: String,
        /// The name refused.
        name: String,
    },
    /// [`label`]: 1-128 bytes, not blank, no control characters.
    #[error("invalid {kind} {label:?}: use 1-{MAX_LABEL_LEN} printable characters")]
    Label {
        /// What was being labelled (`token name`, ...).
        kind: String,
        /// The label refused.
        label: String,
    },
    /// [`env_var`]: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes.
    #[error(
        "invalid environment variable name {name:?}: use 1-{MAX_ENV_VAR_LEN} letters, digits and '_', not starting with a digit"
    )]
    EnvVar {
        /// The name refused.
        name: String,
    },
}

/// An object name (org, pool, target, agent): 1-64 of `[A-Za-z0-9._-]`,
/// starting with a letter or digit. `kind` only words the error.
pub fn object(kind: &str, name: &str) -> Result<(), NameError> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let all_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !first_ok || !all_ok {
        return Err(NameError::Object {
            kind: kind.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A free-form label (token names): 1-128 bytes, not only whitespace, no
/// control characters. `kind` only words the error.
pub fn label(kind: &str, label: &str) -> Result<(), NameError> {
    if label.trim().is_empty() || label.len() > MAX_LABEL_LEN || label.chars().any(char::is_control)
    {
        return Err(NameError::Label {
            kind: kind.to_owned(),
            label: label.to_owned(),
        });
    }
    Ok(())
}

/// An environment variable name (plain variables and secret names alike):
/// POSIX-portable, `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_ENV_VAR_LEN`] bytes.
/// Such a name can contain no `=` or NUL, so it is also one the init shim's
/// bundle accepts.
pub fn env_var(name: &str) -> Result<(), NameError> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let all_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || !all_ok || name.len() > MAX_ENV_VAR_LEN {
        return Err(NameError::EnvVar {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_the_alphabet() {
        for ok in ["prod-db", "a", "db.eu_1", "9lives"] {
            assert!(object("target", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(object("target", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_object_name_of_the_maximum_length_is_accepted() {
        assert!(object("target", &"x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn an_object_name_error_names_the_kind_and_the_rule() {
        let err = object("pool", "a b").unwrap_err();
        assert_eq!(
            err,
            NameError::Object {
                kind: "pool".into(),
                name: "a b".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid pool name \"a b\": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        );
    }

    #[test]
    fn labels_are_printable_and_not_blank() {
        for ok in ["deploy bot", "CI token (prod)", "é"] {
            assert!(label("token name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "   ", "a\nb", "tab\there", &"x".repeat(129)] {
            assert!(label("token name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_label_error_says_it_is_the_label_rule() {
        let err = label("token name", "").unwrap_err();
        assert!(matches!(err, NameError::Label { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "invalid token name \"\": use 1-128 printable characters"
        );
    }

    #[test]
    fn env_names_are_posix_portable() {
        for ok in ["PGPASSWORD", "_X", "a1"] {
            assert!(env_var(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B"] {
            assert!(env_var(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_longer_than_the_cap_are_refused() {
        assert!(env_var(&"A".repeat(MAX_ENV_VAR_LEN)).is_ok());
        assert!(env_var(&"A".repeat(MAX_ENV_VAR_LEN + 1)).is_err());
    }

    #[test]
    fn env_names_with_nul_or_non_ascii_are_refused() {
        for bad in ["A\0B", "PASSWÖRD", "É"] {
            assert!(env_var(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_env_name_error_says_it_is_the_env_var_rule() {
        let err = env_var("1A").unwrap_err();
        assert_eq!(err, NameError::EnvVar { name: "1A".into() });
        assert!(
            err.to_string()
                .starts_with("invalid environment variable name \"1A\""),
            "{err}"
        );
    }
}
