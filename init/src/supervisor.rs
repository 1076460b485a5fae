//! PID 1 duties: hold signals, forward them to the command, reap every exited
//! process, and turn the command's end into an exit code. Modelled on tini.
//! (Part of the `sealrun-init` binary, not the library.)
//!
//! The run's deadline, when the bundle carries one, is an `alarm(2)` whose
//! SIGALRM is collected the same way: the command is killed then.
//!
//! Signals are blocked and collected with `sigwait` rather than handled
//! asynchronously: the shim stays single-threaded and free of signal handlers,
//! and a blocked signal is queued even for PID 1, which the kernel otherwise
//! spares every signal it has no handler for.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use sealrun_init::EXIT_SIGNAL_BASE;

/// Signals passed on to the command.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The blocked signals the supervisor waits for.
#[derive(Debug)]
pub struct Signals {
    waited: SigSet,
    original_mask: SigSet,
}

impl Signals {
    /// Blocks the forwarded signals and SIGCHLD. Called first thing, so that a
    /// signal sent while the shim is still reading the bundle is held, not lost,
    /// and forwarded once the command runs.
    pub fn block() -> nix::Result<Self> {
        let mut waited = SigSet::empty();
        for signal in FORWARDED {
            waited.add(signal);
        }
        waited.add(Signal::SIGCHLD);
        // The run's deadline (see `TAG_DEADLINE`), never forwarded.
        waited.add(Signal::SIGALRM);
        let original_mask = waited.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        Ok(Signals {
            waited,
            original_mask,
        })
    }

    /// The mask the shim started with, for the command to start with: a
    /// spawned process inherits the caller's mask, and a command with SIGTERM
    /// blocked would never see the signals the shim forwards.
    pub fn original_mask(&self) -> &SigSet {
        &self.original_mask
    }
}

/// Makes the shim the reaper of orphaned descendants when it is not PID 1 (run
/// by hand, or under another init); as PID 1 it already is.
pub fn adopt_orphans() {
    if nix::unistd::getpid() != Pid::from_raw(1) {
        // Best effort: without it, orphans go to the real init, which reaps them.
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
}

/// Supervises `command` until it ends and returns the shim's exit code: the
/// command's exit code, or 128 + the signal that killed it.
pub fn supervise(command: Pid, signals: &Signals) -> nix::Result<i32> {
    loop {
        // Reap before waiting: SIGCHLDs coalesce, and one may have been taken
        // by the previous `wait` for several exits.
        if let Some(code) = reap(command)? {
            return Ok(code);
        }
        let signal = signals.waited.wait()?;
        // ESRCH only: the command exited and its SIGCHLD is on its way.
        match signal {
            Signal::SIGCHLD => {}
            // The deadline passed: whoever should have stopped the command
            // (its agent) did not. As PID 1 the shim then exits, and the
            // kernel kills what is left of the container.
            Signal::SIGALRM => {
                let _ = kill(command, Signal::SIGKILL);
            }
            other => {
                let _ = kill(command, other);
            }
        }
    }
}

/// Reaps every exited child without blocking; returns the exit code once
/// `command` is among them.
fn reap(command: Pid) -> nix::Result<Option<i32>> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) if pid == command => code = Some(status),
            Ok(WaitStatus::Signaled(pid, signal, _core_dumped)) if pid == command => {
                code = Some(EXIT_SIGNAL_BASE + signal as i32);
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(code),
            // Another process (an orphan) was reaped; look for more.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
}
