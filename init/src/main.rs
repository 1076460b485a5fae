//! `sealrun-init -- CMD [ARGS...]`: the entrypoint of every sealrun run
//! container. Reads the secret bundle from stdin, detaches stdin (unless the
//! bundle says the run's input follows it), runs `CMD`
//! with the bundle's variables on top of the container's environment, and acts
//! as the container's init until `CMD` exits. See the library documentation
//! for the bundle format and the exit codes.

#![forbid(unsafe_code)]

mod command;
mod stdin;
mod supervisor;

use std::ffi::{OsStr, OsString};
use std::fmt::Arguments;
use std::process::exit;

use sealrun_init::{ERROR_PREFIX, EXIT_INIT_FAILED, ShimNonce};

use crate::supervisor::Signals;

fn main() {
    exit(run(std::env::args_os().skip(1).collect()));
}

/// Everything the shim does; returns its exit code.
fn run(args: Vec<OsString>) -> i32 {
    // First, before any secret or the run's nonce is in memory: the command
    // (the same user, possibly root without capabilities) must not be able to
    // read this process's memory or `/proc/1/*`.
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        return fail(format_args!("cannot make the shim non-dumpable: {err}"));
    }
    let Some((program, args)) = parse_args(&args) else {
        return fail(format_args!("usage: sealrun-init -- CMD [ARGS...]"));
    };
    let signals = match Signals::block() {
        Ok(signals) => signals,
        Err(err) => return fail(format_args!("cannot block signals: {err}")),
    };
    supervisor::adopt_orphans();

    let bundle = match stdin::take_bundle() {
        Ok(bundle) => bundle,
        Err(err) => return fail(format_args!("invalid bundle on stdin: {err}")),
    };
    // From here until the command has started, a failure means the command
    // never ran: those lines are signed with the run's nonce.
    let nonce = bundle.nonce().cloned();
    if !bundle.stdin_follows() {
        if let Err(err) = stdin::detach() {
            return fail_signed(
                nonce.as_ref(),
                EXIT_INIT_FAILED,
                format_args!("cannot detach stdin: {err}"),
            );
        }
    }

    let deadline = bundle.deadline();
    let pid = match command::spawn(program, args, bundle, signals.original_mask()) {
        Ok(pid) => pid,
        Err(err) => {
            return fail_signed(
                nonce.as_ref(),
                err.exit_code(),
                format_args!("cannot execute {}: {err}", program.to_string_lossy()),
            );
        }
    };
    // The command runs: nothing the shim writes from now on may be signed,
    // since the command could be writing to the same stderr. Wiped on drop.
    drop(nonce);
    if let Some(secs) = deadline {
        // SIGALRM is blocked and collected like the forwarded signals; the
        // supervisor kills the command when it arrives. (An alarm of more
        // than u32::MAX seconds is as good as none.)
        nix::unistd::alarm::set(u32::try_from(secs).unwrap_or(u32::MAX).max(1));
    }
    match supervisor::supervise(pid, &signals) {
        Ok(code) => code,
        Err(err) => fail(format_args!("cannot supervise the command: {err}")),
    }
}

/// Splits `-- CMD [ARGS...]` into `CMD` and `ARGS`.
fn parse_args(args: &[OsString]) -> Option<(&OsStr, &[OsString])> {
    match args {
        [dashes, program, rest @ ..] if dashes == "--" => Some((program.as_os_str(), rest)),
        _ => None,
    }
}

/// Reports a failure of the shim itself and returns [`EXIT_INIT_FAILED`].
fn fail(message: Arguments<'_>) -> i32 {
    fail_with(EXIT_INIT_FAILED, message)
}

/// Writes [`ERROR_PREFIX`] and `message` as one line on stderr and returns
/// `code`: an unsigned line, which the agent treats as the command's output.
fn fail_with(code: i32, message: Arguments<'_>) -> i32 {
    eprintln!("{ERROR_PREFIX}{message}");
    code
}

/// Writes `message` as one line on stderr, signed with the run's `nonce`
/// when the bundle gave one ([`ShimNonce::signed_error_prefix`]), and returns
/// `code`. Only for failures before the command started: the agent reports a
/// signed line as "the command did not run".
fn fail_signed(nonce: Option<&ShimNonce>, code: i32, message: Arguments<'_>) -> i32 {
    match nonce {
        Some(nonce) => {
            eprintln!("{}{message}", &*nonce.signed_error_prefix());
            code
        }
        None => fail_with(code, message),
    }
}
