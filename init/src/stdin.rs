//! The shim's stdin: where the bundle arrives, and what the command must never
//! be able to read from. (Part of the `sealrun-init` binary, not the library.)

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use sealrun_init::{Bundle, BundleError, read_bundle};

/// Reads exactly one bundle from file descriptor 0.
///
/// Reads go straight to `read(2)` on a duplicate of fd 0: `std::io::stdin()`
/// would buffer, and could swallow bytes past the bundle into memory that is
/// never wiped.
pub fn take_bundle() -> Result<Bundle, BundleError> {
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    read_bundle(File::from(fd))
}

/// Replaces fd 0 with `/dev/null` (or, in a container without one, with the
/// read end of a pipe whose write end is already closed), so that nothing the
/// agent's attached stream carries after the bundle can reach the command,
/// which inherits fd 0. Either way the command reads end-of-file.
pub fn detach() -> nix::Result<()> {
    match File::open("/dev/null") {
        Ok(null) => nix::unistd::dup2_stdin(null),
        Err(_) => {
            let (read_end, write_end) = nix::unistd::pipe()?;
            drop(write_end);
            nix::unistd::dup2_stdin(read_end)
        }
    }
}
