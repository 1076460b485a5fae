//! The one rule for which servers sealrun's HTTPS clients trust, shared by the
//! agent ([`crate::client`]) and the `sealrun` CLI, which both talk to the
//! control plane and so must agree on it.
//!
//! - **With a CA file**, that file's certificates are the only roots: the
//!   client is pinned to the control plane's CA (typically the private CA the
//!   control plane generated), and a certificate from any public CA is refused.
//!   The pin replaces the system store rather than adding to it on purpose:
//!   a pin that also trusted every public CA would let any of them vouch for
//!   the control plane's name, and clients send it tokens and sealed secrets.
//! - **Without one**, the system's CA bundle: the file `SSL_CERT_FILE` names,
//!   else the first of [`SYSTEM_CA_BUNDLES`] that exists. This is what lets a
//!   control plane behind a corporate or public CA work without flags, and it
//!   honours what an operator installed on the host.
//!
//! No other roots are ever added: the workspace enables reqwest's
//! `rustls-tls-manual-roots` (no compiled-in root list), and the builder also
//! turns built-in roots off explicitly, so that enabling a reqwest feature
//! elsewhere in the dependency graph cannot silently widen what is trusted.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! let http = sealrun_agent::https::client_builder(Some(Path::new("/etc/sealrun/ca.pem")))?
//!     .user_agent("example")
//!     .build()?;
//! # drop(http);
//! # Ok(())
//! # }
//! ```

use reqwest::Certificate;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Debian/Ubuntu, Fedora/RHEL and Alpine keep the system CA bundle,
/// tried in this order when `SSL_CERT_FILE` is not set.
pub const SYSTEM_CA_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How long a TCP connection (not a whole call) may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The CA file (given, or the system bundle) could not be used.
#[derive(Debug, thiserror::Error)]
#[error("CA certificate {path}: {message}")]
pub struct CaError {
    /// The file, or `(system bundle)` when none was found.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every certificate of the PEM file at `path`; an error if there is none.
pub fn load_certificates(path: &Path) -> Result<Vec<Certificate>, CaError> {
    let ca_error = |message: String| CaError {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The CA file used when none is given: `SSL_CERT_FILE`, else the first of
/// [`SYSTEM_CA_BUNDLES`] that is a file.
pub fn system_bundle() -> Result<PathBuf, CaError> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| CaError {
            path: "(system bundle)".into(),
            message: "no system CA bundle found: pass the control plane's CA file".into(),
        })
}

/// A reqwest builder that follows this module's rule: rustls, `https://` only,
/// [`CONNECT_TIMEOUT`], and as roots exactly the certificates of `ca_cert`
/// (pinning) or, without it, of the system bundle. Callers add what is theirs
/// (user agent, headers, keep-alive) and build.
pub fn client_builder(ca_cert: Option<&Path>) -> Result<reqwest::ClientBuilder, CaError> {
    let roots = match ca_cert {
        Some(path) => load_certificates(path)?,
        None => load_certificates(&system_bundle()?)?,
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .tls_built_in_root_certs(false)
        .connect_timeout(CONNECT_TIMEOUT);
    for cert in roots {
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}

/// A throwaway self-signed certificate for the agent's unit tests (its key was
/// discarded; it can vouch for nothing).
#[cfg(test)]
pub(crate) const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT2gAwIBAgIUPFxsxEpS2zdW/fIHdDe47HaEMv4wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVc2VhbHJ1bi1hZ2VudC10ZXN0LWNhMCAXDTI2MTEyNTExMzcy
NloYDzIxMjYxMTAxMTEzNzI2WjAgMR4wHAYDVQQDDBVzZWFscnVuLWFnZW50LXRl
c3QtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQqU/V9wLA2E5zXRrhQQvyP
O0PB5pTt+Fjs0/2XYtBoXr4Jo6eLYpHJmTVTGoTu5E8MQ+3LyE6ovPjBHVmgi/ZT
o1MwUTAdBgNVHQ4EFgQUl8a5rcreGCjMUGNm5t76BWZt71IwHwYDVR0jBBgwFoAU
l8a5rcreGCjMUGNm5t76BWZt71IwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNJADBGAiEAuYy4zyCpNFCz5SnfiS6Eltc6RQahhLPjaRc5d6ylNYoCIQCASijK
7XyniT92qNGLbo7d/xQOOb6k631NFhg5EP16kQ==
-----END CERTIFICATE-----
";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_given_ca_file_builds_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "ca.pem", TEST_CA);
        assert!(client_builder(Some(&ca)).unwrap().build().is_ok());
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_it() {
        let err = client_builder(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert_eq!(err.path, "/nonexistent/ca.pem");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "empty.pem", "not a certificate\n");
        let err = client_builder(Some(&ca)).unwrap_err();
        assert!(err.message.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn every_certificate_of_a_bundle_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "two.pem", &format!("{TEST_CA}{TEST_CA}"));
        assert_eq!(load_certificates(&ca).unwrap().len(), 2);
    }
}
