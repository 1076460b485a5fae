//! The profile `sealrun login` saves: URL, token and CA, in a 0600 file.

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

#[derive(Clone, Serialize, Deserialize)]
pub struct Profile {
    pub url: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl Profile {
    /// `$SEALRUN_PROFILE`, else `$XDG_CONFIG_HOME/sealrun/profile.toml`, else
    /// `~/.config/sealrun/profile.toml`.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("SEALRUN_PROFILE") {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("sealrun").join("profile.toml"))
    }

    pub fn load() -> Result<Option<Profile>> {
        let Some(path) = Profile::path() else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mode = std::fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} holds a token but is readable by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
        crate::config::parse(&path, &text).map(Some)
    }

    pub fn save(&self) -> Result<PathBuf> {
        let path = Profile::path().context("no HOME to save the profile under")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("cannot encode the profile")?;
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
