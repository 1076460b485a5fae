//! The `sealrun-init` shim binary on the Docker host: where the agent finds it,
//! and the checks it passes before the agent agrees to start, and again
//! before every run.
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
//!
//! It must also be trustworthy: whoever can replace it sees every secret of
//! every run. So the file and its directory must belong to root or to the
//! agent's own user and be writable by nobody else (no group or other write
//! bit), and no directory above them may belong to another user or be
//! writable by everyone without the sticky bit (a group-writable directory
//! further up is accepted, as workspaces created under `umask 002` have
//! them). Symbolic links are resolved first, and the resolved path is what
//! Docker mounts.
//!
//! Where it is looked for when no path is configured: `<prefix>/lib/sealrun/`
//! next to `<prefix>/bin/sealrun` (for a repository checkout,
//! `target/lib/sealrun/sealrun-init` beside `target/debug/sealrun`, where
//! `scripts/build-init.sh` installs it and cargo never writes: a `cargo build`
//! of the workspace writes its own, dynamically linked, `target/debug/sealrun-init`,
//! which the agent never picks up), then [`SEARCH_PATHS`].

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// What the error messages tell an operator to run.
const BUILD_HINT: &str = "build it with scripts/build-init.sh (which installs it where the agent looks) or pass its path with --init-binary (SEALRUN_AGENT_INIT, or init_binary in agent.toml)";

/// Where the agent looks for the shim when none is configured, after
/// [`BESIDE_EXE`] relative to its own executable.
pub const SEARCH_PATHS: [&str; 2] = [
    "/usr/local/lib/sealrun/sealrun-init",
    "/usr/lib/sealrun/sealrun-init",
];

/// Where the agent looks first, relative to the directory of its own
/// executable: `<prefix>/bin/sealrun` finds `<prefix>/lib/sealrun/sealrun-init`,
/// and `target/debug/sealrun` finds `target/lib/sealrun/sealrun-init`.
pub const BESIDE_EXE: &str = "../lib/sealrun/sealrun-init";

/// File name of the shim.
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

/// The places searched when no shim is configured, in order.
pub fn default_candidates() -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
    {
        // Lexically: `..` of the executable's directory, not of a symlink.
        if let Some(prefix) = dir.parent() {
            candidates.push(prefix.join(&BESIDE_EXE[3..]));
        }
    }
    candidates.extend(SEARCH_PATHS.iter().map(PathBuf::from));
    candidates
}

/// The shim to bind-mount: `configured` if given, else the first of
/// [`default_candidates`] that exists; [`check`]ed, and resolved to the
/// absolute path without symbolic links that Docker is to mount.
///
/// The path is resolved on the agent's filesystem, and Docker resolves a bind
/// mount's source on the engine's host: the two are the same with the local
/// socket. An agent driving a remote engine, or running in a container, must
/// be given a path that exists, identically, on the engine's host.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, InitError> {
    let path = match configured {
        Some(p) => p.to_owned(),
        None => {
            let candidates = default_candidates();
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
    check(&path)
}

/// Checks that `path` is a shim the agent can trust and every container can
/// run, and returns it resolved (absolute, no symbolic links): a static
/// executable ([`check_static_executable`]) that only root or the agent's
/// user can change (see the module documentation for the exact rule).
pub fn check(path: &Path) -> Result<PathBuf, InitError> {
    let unusable = |reason: String| InitError::Unusable {
        path: path.to_owned(),
        reason,
    };
    let real = std::fs::canonicalize(path).map_err(|e| unusable(e.to_string()))?;
    check_static_executable(&real).map_err(|e| match e {
        InitError::Unusable { reason, .. } => unusable(reason),
        other => other,
    })?;
    check_trusted(&real).map_err(unusable)?;
    Ok(real)
}

/// The rule on who may change the shim, for the resolved path `real`.
fn check_trusted(real: &Path) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    let owner_ok = |uid: u32| uid == 0 || uid == me;
    let meta = std::fs::metadata(real).map_err(|e| e.to_string())?;
    if !owner_ok(meta.uid()) {
        return Err(format!(
            "it belongs to uid {}, neither root nor the agent's user (uid {me}), who could replace it and so read every run's secrets: chown it to root",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "mode {:o} lets group or others write it, and so read every run's secrets: chmod go-w it",
            mode & 0o7777
        ));
    }
    let mut first = true;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mode = meta.permissions().mode();
        if !owner_ok(meta.uid()) {
            return Err(format!(
                "directory {} belongs to uid {}, neither root nor the agent's user (uid {me}), who could replace the shim in it",
                dir.display(),
                meta.uid()
            ));
        }
        let others_write = if first {
            // Its own directory: nobody else may add, remove or rename files.
            mode & 0o022 != 0
        } else {
            // Further up: world-writable only with the sticky bit (`/tmp`),
            // where others cannot rename what is not theirs.
            mode & 0o002 != 0 && mode & 0o1000 == 0
        };
        if others_write {
            return Err(format!(
                "directory {} (mode {:o}) lets others replace the shim in it: chmod go-w it",
                dir.display(),
                mode & 0o7777
            ));
        }
        first = false;
    }
    Ok(())
}

/// Checks that `path` is a regular file, readable and executable by everyone,
/// and a static ELF executable (no `PT_INTERP`: it needs no dynamic loader, so
/// it runs in an image without libc). Also what the base image's busybox must
/// be ([`crate::image`]).
pub fn check_static_executable(path: &Path) -> Result<(), InitError> {
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
            "dynamically linked (it names a program interpreter), so it cannot run in images without libc (a `cargo build` writes such a sealrun-init: the static one is scripts/build-init.sh's)".into(),
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

    /// A copy of a static ELF header (enough for the checks) in a fresh
    /// private directory, with `mode`.
    fn static_shim(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[16..18].copy_from_slice(&2u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&path, elf).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_static_shim_only_its_owner_can_change_is_accepted_and_resolved() {
        let (dir, path) = static_shim(0o755);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(check(&link).unwrap(), std::fs::canonicalize(&path).unwrap());
    }

    #[test]
    fn a_shim_group_or_others_can_write_is_refused() {
        for mode in [0o777, 0o775, 0o757] {
            let (_dir, path) = static_shim(mode);
            let err = check(&path).unwrap_err().to_string();
            assert!(err.contains("chmod go-w"), "{mode:o}: {err}");
        }
    }

    #[test]
    fn a_shim_in_a_directory_others_can_write_is_refused() {
        for mode in [0o777, 0o775, 0o1777] {
            let (dir, path) = static_shim(0o755);
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let err = check(&path).unwrap_err().to_string();
            assert!(
                err.contains("lets others replace the shim"),
                "{mode:o}: {err}"
            );
        }
    }

    #[test]
    fn a_world_writable_directory_further_up_is_refused_unless_sticky() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("lib");
        std::fs::create_dir(&dir).unwrap();
        let (_src, shim) = static_shim(0o755);
        let path = dir.join(FILE_NAME);
        std::fs::copy(&shim, &path).unwrap();
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check(&path).unwrap_err().to_string();
        assert!(err.contains("lets others replace the shim"), "{err}");
        // Positive control: sticky, as /tmp, others cannot rename `lib`.
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check(&path).is_ok());
    }

    #[test]
    fn a_shim_belonging_to_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "*** SKIPPED a_shim_belonging_to_another_user_is_refused: needs root to chown ***"
            );
            return;
        }
        let (dir, path) = static_shim(0o755);
        let other = Some(nix::unistd::Uid::from_raw(4321));
        nix::unistd::chown(&path, other, None).unwrap();
        let err = check(&path).unwrap_err().to_string();
        assert!(err.contains("belongs to uid 4321"), "{err}");
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        nix::unistd::chown(dir.path(), other, None).unwrap();
        let err = check(&path).unwrap_err().to_string();
        assert!(err.contains("belongs to uid 4321"), "{err}");
    }

    #[test]
    fn the_first_place_looked_is_lib_sealrun_beside_the_bin_directory() {
        let exe = std::env::current_exe().unwrap();
        let prefix = exe.parent().unwrap().parent().unwrap();
        assert_eq!(
            default_candidates()[0],
            prefix.join("lib/sealrun/sealrun-init")
        );
        assert_eq!(&default_candidates()[1..], SEARCH_PATHS.map(PathBuf::from));
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
