//! The profiles `sealrun login` saves: URL, token and CA under a name, in one
//! 0600 file.
//!
//! ```toml
//! [profiles.default]
//! url = "https://sealrun.example:8443"
//! token = "..."
//! ca_cert = "/home/me/ca.pem"
//!
//! [profiles.staging]
//! url = "https://sealrun-staging.example:8443"
//! token = "..."
//! ```
//!
//! A file of the format before named profiles (`url`, `token`, `ca_cert` at
//! the top level) is read as the profile `default`, and rewritten in the
//! format above the next time `login` or `logout` saves.
//!
//! The file holds tokens, so it is written 0600 and a file that group or
//! others may read is refused rather than silently tightened: its tokens may
//! have been read already, which its owner should know (and rotate them).

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

/// The profile used when none is named (`--profile` / `SEALRUN_PROFILE`).
pub const DEFAULT: &str = "default";

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Admin keys (`ed25519:...`) pinned for this control plane on `sealrun
    /// login`, after the person checked their fingerprints with an admin:
    /// trusted, with the trust file's, for what this profile reaches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_admins: Vec<String>,
}

/// Every saved profile, by name.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profiles {
    /// The single profile of the old format, read as `default`.
    #[serde(default, skip_serializing)]
    url: Option<String>,
    #[serde(default, skip_serializing)]
    token: Option<String>,
    #[serde(default, skip_serializing)]
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// Checks a profile name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!(
            "`{}` is not a valid profile name (1 to 64 letters, digits, '.', '_' or '-')",
            name.escape_default()
        );
    }
    Ok(())
}

impl Profiles {
    /// `$SEALRUN_PROFILE_FILE`, else `$XDG_CONFIG_HOME/sealrun/profile.toml`,
    /// else `~/.config/sealrun/profile.toml`.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("SEALRUN_PROFILE_FILE") {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("sealrun").join("profile.toml"))
    }

    /// The saved profiles; none if there is no file.
    pub fn load() -> Result<Profiles> {
        let Some(path) = Profiles::path() else {
            return Ok(Profiles::default());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Profiles::default());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mode = std::fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} holds tokens but is readable by others (mode {:o}): chmod 600 it \
                 (and consider revoking its tokens)",
                path.display(),
                mode & 0o777
            );
        }
        let mut profiles: Profiles = crate::config::parse(&path, &text)?;
        match (profiles.url.take(), profiles.token.take()) {
            (Some(url), Some(token)) => {
                let ca_cert = profiles.ca_cert.take();
                profiles
                    .profiles
                    .entry(DEFAULT.to_owned())
                    .or_insert(Profile {
                        url,
                        token,
                        ca_cert,
                        trusted_admins: Vec::new(),
                    });
            }
            (None, None) if profiles.ca_cert.is_none() => {}
            _ => bail!(
                "{}: a profile at the top level needs both `url` and `token`",
                path.display()
            ),
        }
        Ok(profiles)
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.profiles.keys().map(String::as_str).collect()
    }

    pub fn insert(&mut self, name: &str, profile: Profile) {
        self.profiles.insert(name.to_owned(), profile);
    }

    pub fn remove(&mut self, name: &str) -> Option<Profile> {
        self.profiles.remove(name)
    }

    /// Writes every profile (0600, atomically), or removes the file when
    /// none is left; the file's path.
    pub fn save(&self) -> Result<PathBuf> {
        let path = Profiles::path().context("no HOME to save the profile under")?;
        if self.profiles.is_empty() {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                }
            }
            return Ok(path);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("cannot encode the profiles")?;
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}
