//! The `sealrun-init` shim binary on the Docker host: where the agent finds it,
//! and the checks it passes before the agent agrees to start.
//!
//! Every run container starts the shim (bind-mounted read-only at
//! [`sealrun_init::CONTAINER_PATH`]) as its entrypoint, and the shim is the only
//! way secrets reach a command. Without a usable shim the agent refuses to start:
//! falling back to environment variables in the container's configuration would
//! break the promise that Docker never stores a secret, silently.
//!
//! The shim must be a static executable, because it runs inside images that may
//! have no libc at all (`FROM scratch` plus one binary), and readable and
//! executable by everyone, because commands run as uid 65534 by default.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// What the error messages tell an operator to run.
const BUILD_HINT: &str = "build it with scripts/build-init.sh and pass its path with --init-binary (SEALRUN_AGENT_INIT, or init_binary in agent.toml)";

/// Where the agent looks for the shim when none is configured, after the
/// directory of its own executable.
pub const SEARCH_PATHS: [&str; 2] = [
    "/usr/local/lib/sealrun/sealrun-init",
    "/usr/lib/sealrun/sealrun-init",
];

/// File name of the shim next to the `sealrun` binary.
pub const FILE_NAME: &str = "sealrun-init";

/// Why the shim cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// No path was configured and none of the default locations holds the shim.
    #[error("no sealrun-init shim found (looked in {looked}); {BUILD_HINT}")]
    NotFound {
        /// The paths searched, comma-separated.
        looked: String,
    },
    /// The configured or found file is not a usable shim.
    #[error("sealrun-init shim {path}: {reason}; {BUILD_HINT}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The shim to bind-mount: `configured` if given, else the first of
/// `<directory of the current executable>/sealrun-init` and [`SEARCH_PATHS`]
/// that exists; then [`check`]ed.
///
/// The path is resolved on the agent's filesystem, and Docker resolves a bind
/// mount's source on the engine's host: the two are the same with the local
/// socket. An agent driving a remote engine, or running in a container, must
/// be given a path that exists, identically, on the engine's host.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, InitError> {
    let path = match configured {
        Some(p) => p.to_owned(),
        None => {
            let mut candidates: Vec<PathBuf> = Vec::new();
            if let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_owned))
            {
                candidates.push(dir.join(FILE_NAME));
            }
            candidates.extend(SEARCH_PATHS.iter().map(PathBuf::from));
            match candidates.iter().find(|p| p.exists()) {
                Some(found) => found.clone(),
                None => {
                    let looked: Vec<String> =
                        candidates.iter().map(|p| p.display().to_string()).collect();
                    return Err(InitError::NotFound {
                        looked: looked.join(", "),
                    });
                }
            }
        }
    };
    check(&path)?;
    // Docker wants an absolute bind source.
    std::path::absolute(&path).map_err(|e| InitError::Unusable {
        path: path.clone(),
        reason: format!("cannot make the path absolute: {e}"),
    })
}

/// Checks that `path` is a regular file, readable and executable by everyone,
/// and a static ELF executable (no `PT_INTERP`: it needs no dynamic loader, so
/// it runs in an image without libc).
pub fn check(path: &Path) -> Result<(), InitError> {
    let unusable = |reason: String| InitError::Unusable {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| unusable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unusable("not a regular file".into()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o005 != 0o005 {
        return Err(unusable(format!(
            "mode {:o} does not let every user read and execute it (run containers use uid 65534): chmod 0755 it",
            mode & 0o7777
        )));
    }
    let mut header = Vec::with_capacity(4096);
    File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut header))
        .map_err(|e| unusable(e.to_string()))?;
    match elf_interpreter(&header) {
        Ok(false) => Ok(()),
        Ok(true) => Err(unusable(
            "dynamically linked (it names a program interpreter), so it cannot run in images without libc".into(),
        )),
        Err(reason) => Err(unusable(reason.into())),
    }
}

/// Whether the 64-bit little-endian ELF executable whose first bytes are
/// `bytes` has a `PT_INTERP` program header.
fn elf_interpreter(bytes: &[u8]) -> Result<bool, &'static str> {
    const PT_INTERP: u32 = 3;
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF executable");
    }
    // ELFCLASS64, ELFDATA2LSB: the only targets the agent runs on (x86-64, aarch64).
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file");
    }
    let kind = u16_at(16).ok_or("truncated ELF header")?;
    if kind != ET_EXEC && kind != ET_DYN {
        return Err("not an ELF executable");
    }
    let phoff = u64_at(32).ok_or("truncated ELF header")?;
    let phentsize = u16_at(54).ok_or("truncated ELF header")?;
    let phnum = u16_at(56).ok_or("truncated ELF header")?;
    let phoff = usize::try_from(phoff).map_err(|_| "program headers out of range")?;
    for i in 0..usize::from(phnum) {
        let at = phoff + i * usize::from(phentsize);
        let p_type = u32_at(at).ok_or("program headers beyond the first 64 KiB")?;
        if p_type == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write as _;

    fn file_with(bytes: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn a_dynamically_linked_executable_is_refused() {
        // The test binary itself is linked against the system's libc.
        let exe = std::env::current_exe().unwrap();
        let err = check(&exe).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        assert!(err.contains("scripts/build-init.sh"), "{err}");
    }

    #[test]
    fn a_file_others_cannot_execute_is_refused() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let f = file_with(&exe, 0o750);
        let err = check(f.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 0755"), "{err}");
    }

    #[test]
    fn a_script_is_not_an_executable_the_shim_can_be() {
        let f = file_with(b"#!/bin/sh\nexit 0\n", 0o755);
        let err = check(f.path()).unwrap_err().to_string();
        assert!(err.contains("not an ELF executable"), "{err}");
    }

    #[test]
    fn a_directory_or_a_missing_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(dir.path()).is_err());
        let err = locate(Some(&dir.path().join("nope")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("build-init.sh"),
            "{err}"
        );
    }

    #[test]
    fn an_elf_header_without_an_interpreter_is_static() {
        // A minimal ELF64 header with one PT_LOAD program header.
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[16..18].copy_from_slice(&3u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(elf_interpreter(&elf), Ok(false));
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(elf_interpreter(&elf), Ok(true));
        assert!(elf_interpreter(&elf[..60]).is_err());
    }
}
