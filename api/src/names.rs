//! What names may look like. Names end up in URLs, file names on agents,
//! Docker objects and log lines, so they are kept to a boring alphabet.

/// Longest object name (org, pool, target, agent, token label).
const MAX_NAME: usize = 64;
/// Longest environment variable name.
const MAX_ENV_NAME: usize = 128;

/// An object name: 1-64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let all_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > MAX_NAME || !first_ok || !all_ok {
        return Err(format!(
            "invalid {kind} name {name:?}: use 1-{MAX_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// A free-form label (token names): printable, no control characters.
pub(crate) fn check_label(kind: &str, label: &str) -> Result<(), String> {
    if label.trim().is_empty() || label.len() > 128 || label.chars().any(char::is_control) {
        return Err(format!(
            "invalid {kind} {label:?}: use 1-128 printable characters"
        ));
    }
    Ok(())
}

/// A POSIX-portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let all_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || !all_ok || name.len() > MAX_ENV_NAME {
        return Err(format!(
            "invalid environment variable name {name:?}: use letters, digits and '_', not starting with a digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_the_alphabet() {
        for ok in ["prod-db", "a", "db.eu_1", "9lives"] {
            assert!(check_name("target", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(check_name("target", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_are_posix_portable() {
        for ok in ["PGPASSWORD", "_X", "a1"] {
            assert!(check_env_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B"] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
    }
}
