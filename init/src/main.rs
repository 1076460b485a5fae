//! `sealrun-init --wait [--idle-secs N]` or `sealrun-init -- CMD [ARGS...]`:
//! the entrypoint of every sealrun run container. Reads the bundle from
//! stdin (waiting at most `N` seconds for it to begin), detaches stdin
//! (unless the bundle says the run's input follows it), runs the command the
//! bundle names (`--wait`) or `CMD`, with the bundle's variables on top of
//! the container's environment, and acts as the container's init until the
//! command exits. See the library documentation for the bundle format and
//! the exit codes.

#![forbid(unsafe_code)]

mod command;
mod stdin;
mod supervisor;

use std::ffi::{OsStr, OsString};
use std::fmt::Arguments;
use std::process::exit;

use sealrun_init::{ERROR_PREFIX, EXIT_INIT_FAILED, IDLE_FLAG, ShimNonce};

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
    let Some(mode) = parse_args(&args) else {
        return fail(format_args!(
            "usage: sealrun-init --wait [{IDLE_FLAG} N] | sealrun-init -- CMD [ARGS...]"
        ));
    };
    let signals = match Signals::block() {
        Ok(signals) => signals,
        Err(err) => return fail(format_args!("cannot block signals: {err}")),
    };
    supervisor::adopt_orphans();

    if let Mode::Wait {
        idle_secs: Some(secs),
    } = mode
    {
        match stdin::wait_readable(secs) {
            Ok(true) => {}
            Ok(false) => return fail(format_args!("no bundle arrived within {secs} s")),
            Err(err) => return fail(format_args!("cannot wait for the bundle: {err}")),
        }
    }
    let mut bundle = match stdin::take_bundle() {
        Ok(bundle) => bundle,
        Err(err) => return fail(format_args!("invalid bundle on stdin: {err}")),
    };
    // One command, named in one place: two would leave one silently ignored.
    let (program, args): (OsString, Vec<OsString>) = match mode {
        Mode::Command { program, args } if bundle.argv().is_empty() => {
            (program.to_owned(), args.to_vec())
        }
        Mode::Command { .. } => {
            return fail(format_args!(
                "the bundle names a command, and so does the command line: run with --wait"
            ));
        }
        Mode::Wait { .. } => match bundle.take_argv() {
            Some((program, args)) => (program, args),
            None => return fail(format_args!("the bundle names no command")),
        },
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
    let pid = match command::spawn(&program, &args, bundle, signals.original_mask()) {
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

/// Where the command comes from.
#[derive(Debug, PartialEq, Eq)]
enum Mode<'a> {
    /// `-- CMD [ARGS...]`: the command line names it.
    Command {
        program: &'a OsStr,
        args: &'a [OsString],
    },
    /// `--wait [--idle-secs N]`: the bundle does; give up if it has not
    /// begun to arrive after `N` seconds.
    Wait { idle_secs: Option<u64> },
}

/// Reads the shim's command line; `None` is a usage error.
fn parse_args(args: &[OsString]) -> Option<Mode<'_>> {
    match args {
        [dashes, program, rest @ ..] if dashes == "--" => Some(Mode::Command {
            program: program.as_os_str(),
            args: rest,
        }),
        [wait] if wait == "--wait" => Some(Mode::Wait { idle_secs: None }),
        [wait, flag, secs] if wait == "--wait" && flag == IDLE_FLAG => {
            let secs = secs.to_str()?.parse::<u64>().ok().filter(|s| *s > 0)?;
            Some(Mode::Wait {
                idle_secs: Some(secs),
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_line_names_the_command_after_dashes() {
        let a = args(&["--", "echo", "hi"]);
        assert_eq!(
            parse_args(&a),
            Some(Mode::Command {
                program: OsStr::new("echo"),
                args: &a[2..],
            })
        );
    }

    #[test]
    fn a_waiting_shim_takes_an_optional_idle_limit_and_nothing_else() {
        assert_eq!(
            parse_args(&args(&["--wait"])),
            Some(Mode::Wait { idle_secs: None })
        );
        assert_eq!(
            parse_args(&args(&["--wait", "--idle-secs", "30"])),
            Some(Mode::Wait {
                idle_secs: Some(30)
            })
        );
        for bad in [
            &["--wait", "--idle-secs"][..],
            &["--wait", "--idle-secs", "0"],
            &["--wait", "--idle-secs", "x"],
            &["--wait", "sh"],
            &["--"],
            &[],
        ] {
            assert_eq!(parse_args(&args(bad)), None, "{bad:?}");
        }
    }
}
