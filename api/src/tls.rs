//! The server's certificate: given as files, or a private CA and a server
//! certificate generated into `data_dir/tls/` on first start.
//!
//! The CA's key is kept (mode 0600) so the server certificate can be
//! re-issued under the same CA when the host names change or it nears expiry,
//! without breaking clients that pinned `ca.pem`.

use crate::config::TlsConfig;
use crate::error::Error;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Days a generated CA is valid.
const CA_DAYS: i64 = 3650;
/// Days a generated server certificate is valid.
const SERVER_DAYS: i64 = 730;
/// Re-issue the server certificate when it has fewer days left than this.
const RENEW_DAYS: i64 = 30;

/// What the HTTPS listener needs.
pub(crate) struct Tls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// The CA clients should pin, when self-signed.
    pub(crate) ca_cert: Option<PathBuf>,
}

/// Loads or generates the certificate `tls` asks for.
pub(crate) fn load(
    data_dir: &Path,
    tls: &TlsConfig,
    extra_hostnames: &[String],
) -> Result<Tls, Error> {
    match tls {
        TlsConfig::Files { cert, key } => Ok(Tls {
            config: server_config(cert, key)?,
            ca_cert: None,
        }),
        TlsConfig::SelfSigned => {
            let dir = data_dir.join("tls");
            let (cert, key, ca) = self_signed(&dir, extra_hostnames)?;
            Ok(Tls {
                config: server_config(&cert, &key)?,
                ca_cert: Some(ca),
            })
        }
    }
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {e}"))
}

/// A rustls server configuration (ring provider) for a PEM chain and key.
fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| tls_err(&format!("cannot read {}", p.display()), e))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            tls_err(
                &format!("{} is not a PEM certificate chain", cert.display()),
                e,
            )
        })?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err(&format!("{} is not a PEM private key", key.display()), e))?
        .ok_or_else(|| Error::Tls(format!("{} holds no private key", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err("certificate and key do not fit together", e))?;
    // HTTP/1.1 only: every client speaks it, and for this API's small
    // request/answer pairs hyper's HTTP/2 costs ~15% more CPU per request
    // (measured with benches/dispatch.rs).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Recorded next to a generated server certificate, so a restart can tell
/// whether it still fits without parsing X.509.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct ServerCertMeta {
    names: Vec<String>,
    expires_day: i64,
}

/// Ensures `dir` holds a CA and a server certificate for `localhost`,
/// loopback and `extra`; returns (server cert, server key, CA cert) paths.
pub(crate) fn self_signed(
    dir: &Path,
    extra: &[String],
) -> Result<(PathBuf, PathBuf, PathBuf), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| tls_err(&format!("cannot create {}", dir.display()), e))?;
    let ca_pem = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let server_pem = dir.join("server.pem");
    let server_key = dir.join("server.key");
    let meta_path = dir.join("server.json");
    let today = days_since_epoch();

    let ca_key = if ca_pem.is_file() && ca_key_path.is_file() {
        let pem = std::fs::read_to_string(&ca_key_path)
            .map_err(|e| tls_err(&format!("cannot read {}", ca_key_path.display()), e))?;
        KeyPair::from_pem(&pem).map_err(|e| tls_err(&format!("{}", ca_key_path.display()), e))?
    } else {
        let key = KeyPair::generate().map_err(|e| tls_err("cannot generate the CA key", e))?;
        let cert = ca_params(today)?
            .self_signed(&key)
            .map_err(|e| tls_err("cannot sign the CA", e))?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca_pem, cert.pem().as_bytes(), 0o644)?;
        // A new CA invalidates any server certificate left from an old one.
        let _ = std::fs::remove_file(&meta_path);
        tracing::info!(ca = %ca_pem.display(), "generated a private CA");
        key
    };

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let current: Option<ServerCertMeta> = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fits = current.as_ref().is_some_and(|m| {
        m.names == names
            && m.expires_day - today > RENEW_DAYS
            && server_pem.is_file()
            && server_key.is_file()
    });
    if !fits {
        // Re-create the issuer from the stored key: issuing needs only its
        // name and key, which are what ca.pem holds.
        let issuer = ca_params(today)?
            .self_signed(&ca_key)
            .map_err(|e| tls_err("cannot load the CA", e))?;
        let mut params = CertificateParams::new(names.clone())
            .map_err(|e| tls_err("invalid host name for the certificate", e))?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "sealrun control plane");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, today - 1, today + SERVER_DAYS)?;
        let key = KeyPair::generate().map_err(|e| tls_err("cannot generate the server key", e))?;
        let cert = params
            .signed_by(&key, &issuer, &ca_key)
            .map_err(|e| tls_err("cannot sign the server certificate", e))?;
        write_file(&server_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&server_pem, cert.pem().as_bytes(), 0o644)?;
        let meta = ServerCertMeta {
            names,
            expires_day: today + SERVER_DAYS,
        };
        let meta_json = serde_json::to_vec(&meta).map_err(|e| tls_err("server.json", e))?;
        write_file(&meta_path, &meta_json, 0o644)?;
        tracing::info!(cert = %server_pem.display(), names = ?meta.names, "issued the server certificate");
    }
    Ok((server_pem, server_key, ca_pem))
}

fn ca_params(today: i64) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "sealrun");
    params
        .distinguished_name
        .push(DnType::CommonName, "sealrun control plane CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, today - 1, today + CA_DAYS)?;
    Ok(params)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let err = |e: std::io::Error| tls_err(&format!("cannot write {}", path.display()), e);
    // Written beside and renamed, so a crash never leaves half a key. The
    // file is made afresh with its mode (a temporary file left by a crash,
    // or another file's, would keep its own), and the mode set again: the
    // umask only ever clears bits, but a key's mode is not left to it.
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Makes `params` valid from midnight UTC of day `from` to that of day `to`
/// (days since the epoch).
fn set_validity(params: &mut CertificateParams, from: i64, to: i64) -> Result<(), Error> {
    let (y, m, d) = ymd(from)?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(to)?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    Ok(())
}

fn days_since_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

/// The civil date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn ymd(days: i64) -> Result<(i32, u8, u8), Error> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = i32::try_from(year).map_err(|_| Error::Tls("date out of range".into()))?;
    Ok((year, month as u8, day as u8))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn civil_dates_are_computed_from_days_since_the_epoch() {
        assert_eq!(ymd(0).unwrap(), (1970, 1, 1));
        assert_eq!(ymd(59).unwrap(), (1970, 3, 1));
        assert_eq!(ymd(11_016).unwrap(), (2000, 2, 29));
        assert_eq!(ymd(19_723).unwrap(), (2024, 1, 1));
    }
}
