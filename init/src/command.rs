//! The user's command: its argv, its environment (the container's, with the
//! bundle's variables on top), and starting it. (Part of the `sealrun-init`
//! binary, not the library.)

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::errno::Errno;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawnp};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use zeroize::Zeroize;

use sealrun_init::{Bundle, EXIT_INIT_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};

/// A `NAME=VALUE` string for the command's environment, wiped when dropped.
struct EnvString(CString);

impl EnvString {
    /// Joins `name=value` into one exactly-sized allocation, so building it
    /// leaves no stray copy of the value behind. `None` if either contains a
    /// NUL byte (the bundle codec already refuses those).
    fn new(name: &[u8], value: &[u8]) -> Option<Self> {
        let mut bytes = Vec::with_capacity(name.len() + 1 + value.len() + 1);
        bytes.extend_from_slice(name);
        bytes.push(b'=');
        bytes.extend_from_slice(value);
        bytes.push(0);
        // The capacity equals the length, so no reallocation happens here.
        match CString::from_vec_with_nul(bytes) {
            Ok(string) => Some(EnvString(string)),
            Err(err) => {
                err.into_bytes().zeroize();
                None
            }
        }
    }
}

impl AsRef<CStr> for EnvString {
    fn as_ref(&self) -> &CStr {
        &self.0
    }
}

impl Drop for EnvString {
    fn drop(&mut self) {
        // `into_bytes_with_nul` reuses the allocation, so this wipes the very
        // bytes the command's environment was copied from.
        std::mem::take(&mut self.0).into_bytes_with_nul().zeroize();
    }
}

/// Why the command could not be started.
#[derive(Debug)]
pub struct SpawnError(Errno);

impl SpawnError {
    /// 127 when the command is not there, 126 when it is but cannot run (as a
    /// shell reports them), 125 when the system could not create a process.
    pub fn exit_code(&self) -> i32 {
        match self.0 {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => EXIT_NOT_FOUND,
            Errno::EAGAIN | Errno::ENOMEM => EXIT_INIT_FAILED,
            _ => EXIT_NOT_EXECUTABLE,
        }
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.desc())
    }
}

/// Starts `program` with `args`, looked up on the container's `PATH` as
/// `execvp` would, with the container's environment plus the bundle's
/// variables (a bundle variable replaces a container variable of the same
/// name). Consumes the bundle, and wipes every copy of its values made here,
/// once the command has been started (or failed to start).
///
/// The command starts with the signal mask the shim itself started with
/// (`mask`), not the shim's blocking one, and with SIGPIPE at its default
/// (the Rust runtime ignores it in the shim). `posix_spawnp` returns only
/// after the command has been executed or has failed to, and reports why.
pub fn spawn(
    program: &OsStr,
    args: &[OsString],
    bundle: Bundle,
    mask: &SigSet,
) -> Result<Pid, SpawnError> {
    // Arguments come from the OS, which cannot deliver a NUL inside one.
    let to_cstring =
        |arg: &OsStr| CString::new(arg.as_bytes()).map_err(|_| SpawnError(Errno::EINVAL));
    let program = to_cstring(program)?;
    let mut argv = vec![program.clone()];
    for arg in args {
        argv.push(to_cstring(arg)?);
    }

    let overridden: HashSet<&[u8]> = bundle.env().map(|(name, _)| name.as_bytes()).collect();
    let mut envp = Vec::new();
    for (name, value) in std::env::vars_os() {
        if !overridden.contains(name.as_bytes()) {
            let entry = EnvString::new(&name.into_vec(), &value.into_vec());
            envp.extend(entry);
        }
    }
    for (name, value) in bundle.env() {
        envp.push(EnvString::new(name.as_bytes(), value).ok_or(SpawnError(Errno::EINVAL))?);
    }
    drop(overridden);
    drop(bundle);

    let mut attr = PosixSpawnAttr::init().map_err(SpawnError)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )
    .map_err(SpawnError)?;
    attr.set_sigmask(mask).map_err(SpawnError)?;
    let mut default = SigSet::empty();
    default.add(Signal::SIGPIPE);
    attr.set_sigdefault(&default).map_err(SpawnError)?;
    let actions = PosixSpawnFileActions::init().map_err(SpawnError)?;

    let pid = posix_spawnp(&program, &actions, &attr, &argv, &envp).map_err(SpawnError);
    drop(envp);
    pid
}
