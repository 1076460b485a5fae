//! Image references, and which images a target allows: the one rule the
//! control plane applies when a run is submitted and the agent applies again
//! before it pulls anything.
//!
//! Left to itself, Docker pulls whatever name it is given, from whatever host
//! the name starts with: `10.0.0.5:6379/x` makes the agent host dial an
//! internal service. So every target allows a list of images (its
//! `allowed_images`), and by default only its own `image`. An entry is
//!
//! - an exact reference, `registry.example.com/team/tool:1.2` (the tag
//!   defaults to `latest`, as Docker's does): that name only;
//! - a digest, `postgres@sha256:<64 hex>`: that content only (a tag given
//!   with a digest is ignored, as Docker ignores it);
//! - a repository prefix ending in `/*`, `registry.example.com/team/*`: every
//!   repository under that path, with any tag or digest.
//!
//! Names are compared in Docker's normal form (`busybox` is
//! `docker.io/library/busybox:latest`), so spelling an image differently
//! does not get around an entry, nor does it make an allowed image refused.
//!
//! ```
//! use sealrun_wire::image::allows;
//!
//! let allowed = ["sealrun/busybox:latest".to_owned(), "ghcr.io/acme/*".to_owned()];
//! assert!(allows(&allowed, "sealrun/busybox").unwrap());
//! assert!(allows(&allowed, "docker.io/sealrun/busybox:latest").unwrap());
//! assert!(allows(&allowed, "ghcr.io/acme/tools/psql:16").unwrap());
//! assert!(!allows(&allowed, "10.0.0.5:6379/x").unwrap());
//! assert!(!allows(&allowed, "ghcr.io/acme-evil/x").unwrap());
//! ```

use std::fmt;

/// Longest image reference or allowed-image entry, in bytes.
pub const MAX_REFERENCE_LEN: usize = 512;
/// Most entries a target's `allowed_images` may hold.
pub const MAX_ALLOWED_IMAGES: usize = 64;

/// The registry Docker uses for names without one.
const DEFAULT_DOMAIN: &str = "docker.io";

/// Why an image reference or an allowed-image entry is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid image {reference:?}: {reason}")]
pub struct ImageError {
    /// What was given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// An image reference in Docker's normal form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io/library/busybox`.
    repository: String,
    /// `latest` when neither a tag nor a digest was given; `None` with a digest.
    tag: Option<String>,
    /// `sha256:...`.
    digest: Option<String>,
}

impl ImageRef {
    /// Parses `reference` as Docker does (`[domain[:port]/]path[:tag][@digest]`).
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        let bad = |reason| ImageError {
            reference: reference.to_owned(),
            reason,
        };
        if reference.is_empty() {
            return Err(bad("empty"));
        }
        if reference.len() > MAX_REFERENCE_LEN {
            return Err(bad("longer than 512 bytes"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(bad)?;
                (rest, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A tag is a `:` after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |at| at + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(at) => {
                let tag = &rest[last_slash + at + 1..];
                check_tag(tag).map_err(bad)?;
                (&rest[..last_slash + at], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        let repository = normal_repository(name, false).map_err(bad)?;
        let tag = match (tag, &digest) {
            // Docker pulls by digest and ignores a tag given with one.
            (_, Some(_)) => None,
            (Some(tag), None) => Some(tag),
            (None, None) => Some("latest".to_owned()),
        };
        Ok(ImageRef {
            repository,
            tag,
            digest,
        })
    }

    /// The repository in normal form, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// One entry of a target's `allowed_images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImagePattern {
    /// That reference only (normal form).
    Exact(ImageRef),
    /// Every repository whose normal form starts with this (ends in `/`).
    Prefix(String),
}

impl ImagePattern {
    /// Parses an entry: an exact reference or digest, or a repository
    /// prefix ending in `/*`.
    pub fn parse(entry: &str) -> Result<ImagePattern, ImageError> {
        let bad = |reason| ImageError {
            reference: entry.to_owned(),
            reason,
        };
        if matches!(entry, "*" | "/*" | "*/*") {
            return Err(bad(
                "there is no allow-everything entry: name a registry or a path before /* (ghcr.io/*, ghcr.io/acme/*)",
            ));
        }
        if let Some(prefix) = entry.strip_suffix("/*") {
            let mut repository = normal_repository(prefix, true).map_err(bad)?;
            repository.push('/');
            return Ok(ImagePattern::Prefix(repository));
        }
        if entry.contains('*') {
            return Err(bad(
                "`*` is allowed only as a final `/*` (a repository prefix)",
            ));
        }
        ImageRef::parse(entry).map(ImagePattern::Exact)
    }

    /// Whether `image` matches this entry.
    pub fn matches(&self, image: &ImageRef) -> bool {
        match self {
            ImagePattern::Exact(allowed) => allowed == image,
            ImagePattern::Prefix(prefix) => image.repository.starts_with(prefix.as_str()),
        }
    }
}

/// Whether any entry of `allowed` (as [`ImagePattern::parse`] reads them)
/// matches `image`. Errors name the image or entry that is not valid.
pub fn allows(allowed: &[String], image: &str) -> Result<bool, ImageError> {
    let image = ImageRef::parse(image)?;
    for entry in allowed {
        if ImagePattern::parse(entry)?.matches(&image) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A target's effective list: its own `image`, then its `allowed_images`.
pub fn effective(image: &str, allowed_images: &[String]) -> Vec<String> {
    let mut all = Vec::with_capacity(1 + allowed_images.len());
    all.push(image.to_owned());
    all.extend(allowed_images.iter().filter(|e| *e != image).cloned());
    all
}

/// Checks a target's `allowed_images` (each entry valid, at most
/// [`MAX_ALLOWED_IMAGES`]).
pub fn check_allowed_images(allowed: &[String]) -> Result<(), String> {
    if allowed.len() > MAX_ALLOWED_IMAGES {
        return Err(format!(
            "allowed_images has {} entries; the limit is {MAX_ALLOWED_IMAGES}",
            allowed.len()
        ));
    }
    for entry in allowed {
        ImagePattern::parse(entry).map_err(|e| format!("allowed_images: {e}"))?;
    }
    Ok(())
}

/// `name` (`[domain[:port]/]path`) in normal form. `prefix`: `name` is the
/// part of a repository prefix before `/*`, whose one component may be a
/// registry alone (`registry.example.com/*`).
fn normal_repository(name: &str, prefix: bool) -> Result<String, &'static str> {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first, Some(rest)),
        None if prefix && looks_like_domain(name) => (name, None),
        _ => (DEFAULT_DOMAIN, Some(name)),
    };
    check_domain(domain)?;
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let Some(path) = path else {
        return Ok(domain.to_owned());
    };
    if path.is_empty() {
        return Err("no repository path");
    }
    for component in path.split('/') {
        check_component(component)?;
    }
    // Docker's official images live under `library/`.
    if domain == DEFAULT_DOMAIN && !path.contains('/') && !prefix {
        return Ok(format!("{DEFAULT_DOMAIN}/library/{path}"));
    }
    Ok(format!("{domain}/{path}"))
}

/// Docker's rule: the first component names a registry when it has a `.` or
/// a `:` (a port), or is `localhost`.
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the registry's port is not a number");
        }
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err("the registry is not a host name");
    }
    Ok(())
}

/// A path component: lowercase letters and digits, separated by `.`, `_`,
/// `__` or runs of `-`.
fn check_component(component: &str) -> Result<(), &'static str> {
    const REASON: &str = "a repository path is lowercase letters and digits, separated by '/', '.', '_', '__' or '-'";
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(REASON);
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err(REASON);
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), &'static str> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")
    }
}

fn check_digest(digest: &str) -> Result<(), &'static str> {
    const REASON: &str = "a digest is algorithm:hex, e.g. sha256: and 64 hex digits";
    let (algorithm, hex) = digest.split_once(':').ok_or(REASON)?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'_' | b'-')
        });
    let hex_ok = hex.len() >= 32
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if algorithm_ok && hex_ok && (algorithm != "sha256" || hex.len() == 64) {
        Ok(())
    } else {
        Err(REASON)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn normal(reference: &str) -> String {
        ImageRef::parse(reference).unwrap().to_string()
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_are_compared_in_dockers_normal_form() {
        assert_eq!(normal("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normal("library/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(normal("index.docker.io/acme/x"), "docker.io/acme/x:latest");
        assert_eq!(
            normal("sealrun/busybox:latest"),
            "docker.io/sealrun/busybox:latest"
        );
        assert_eq!(normal("localhost/x"), "localhost/x:latest");
        assert_eq!(normal("10.0.0.5:6379/x"), "10.0.0.5:6379/x:latest");
        assert_eq!(
            normal("registry.example.com:5000/a/b-c__d:v1.2"),
            "registry.example.com:5000/a/b-c__d:v1.2"
        );
        assert_eq!(
            normal(&format!("postgres:16@{DIGEST}")),
            format!("docker.io/library/postgres@{DIGEST}")
        );
    }

    #[test]
    fn malformed_references_are_refused_with_a_reason() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "/a",
            "a/",
            "registry:port/x",
            "busybox@sha256:short",
            "x y",
            "x*",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let err = ImageRef::parse("a b").unwrap_err().to_string();
        assert!(err.starts_with("invalid image \"a b\": "), "{err}");
    }

    #[test]
    fn an_exact_entry_allows_that_name_only() {
        let allowed = ["postgres:16".to_owned()];
        assert!(allows(&allowed, "postgres:16").unwrap());
        assert!(allows(&allowed, "docker.io/library/postgres:16").unwrap());
        assert!(!allows(&allowed, "postgres").unwrap());
        assert!(!allows(&allowed, "postgres:17").unwrap());
        assert!(!allows(&allowed, &format!("postgres:16@{DIGEST}")).unwrap());
        assert!(!allows(&allowed, "evil.example.com/library/postgres:16").unwrap());
    }

    #[test]
    fn a_digest_entry_allows_that_content_only() {
        let allowed = [format!("postgres@{DIGEST}")];
        assert!(allows(&allowed, &format!("postgres@{DIGEST}")).unwrap());
        assert!(allows(&allowed, &format!("postgres:16@{DIGEST}")).unwrap());
        assert!(!allows(&allowed, "postgres:16").unwrap());
        assert!(!allows(&allowed, "postgres").unwrap());
    }

    #[test]
    fn a_prefix_entry_allows_every_repository_under_it_and_nothing_beside_it() {
        let allowed = ["registry.example.com:5000/ops/*".to_owned()];
        assert!(allows(&allowed, "registry.example.com:5000/ops/psql").unwrap());
        assert!(allows(&allowed, "registry.example.com:5000/ops/db/psql:16").unwrap());
        assert!(
            allows(
                &allowed,
                &format!("registry.example.com:5000/ops/x@{DIGEST}")
            )
            .unwrap()
        );
        assert!(!allows(&allowed, "registry.example.com:5000/ops").unwrap());
        assert!(!allows(&allowed, "registry.example.com:5000/opsx/psql").unwrap());
        assert!(!allows(&allowed, "registry.example.com/ops/psql").unwrap());
        let registry = ["ghcr.io/*".to_owned()];
        assert!(allows(&registry, "ghcr.io/a/b:1").unwrap());
        assert!(!allows(&registry, "ghcr.io.evil.com/a").unwrap());
        let hub = ["acme/*".to_owned()];
        assert!(allows(&hub, "docker.io/acme/x").unwrap());
        assert!(!allows(&hub, "acmex/x").unwrap());
    }

    #[test]
    fn a_registry_that_looks_like_an_internal_service_is_refused_by_default() {
        let allowed = effective("sealrun/busybox:latest", &[]);
        for image in [
            "10.0.0.5:6379/x",
            "localhost:2375/x",
            "169.254.169.254/latest",
        ] {
            assert!(!allows(&allowed, image).unwrap(), "{image}");
        }
        assert!(allows(&allowed, "sealrun/busybox").unwrap());
    }

    #[test]
    fn entries_that_would_allow_everything_or_are_malformed_are_refused() {
        for bad in ["*", "/*", "ghcr.io/acme/*:1", "ghcr.io/a*", "x@*", "Acme/*"] {
            assert!(ImagePattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_allowed_images(&vec!["busybox".to_owned(); MAX_ALLOWED_IMAGES]).is_ok());
        let err =
            check_allowed_images(&vec!["busybox".to_owned(); MAX_ALLOWED_IMAGES + 1]).unwrap_err();
        assert!(err.contains("limit is 64"), "{err}");
        let err = check_allowed_images(&["*".to_owned()]).unwrap_err();
        assert!(
            err.starts_with("allowed_images: invalid image \"*\""),
            "{err}"
        );
    }

    #[test]
    fn the_effective_list_starts_with_the_targets_own_image_once() {
        assert_eq!(effective("a", &[]), ["a"]);
        assert_eq!(effective("a", &["b".into(), "a".into()]), ["a", "b"]);
    }
}
