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

/// Waits until fd 0 has something to read (or its writer has gone), for at
/// most `secs` seconds: `false` when the time ran out first. A waiting shim
/// uses it so that a container whose bundle never comes (an agent that died
/// after starting it) ends by itself.
pub fn wait_readable(secs: u64) -> nix::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let stdin = io::stdin();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // At most ~24 days a call (poll's i32 milliseconds), in a loop.
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            // The shim's signals are blocked, but a stop/continue can still
            // interrupt the wait.
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err),
        }
    }
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
