//! Commands on a pseudo-terminal, for tests of what sealrun does when a
//! human is at the other end (escaping, colour, hidden prompts).
//!
//! `nix`'s `openpty` and `setsid --ctty` keep this free of unsafe code.

use nix::errno::Errno;
use nix::pty::openpty;
use nix::sys::termios::{LocalFlags, tcgetattr};
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which of the command's streams go to the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// stdin, stdout and stderr, as from an interactive shell.
    All,
    /// stdout and stderr only (stdin is whatever the command set).
    Output,
}

/// A command running on a new pseudo-terminal.
#[derive(Debug)]
pub struct OnTerminal {
    child: Child,
    slave: Option<OwnedFd>,
    master: std::fs::File,
}

impl OnTerminal {
    /// Starts `command` with `streams` on a new pseudo-terminal. With
    /// `controlling`, it runs (through `setsid --ctty`) as the session
    /// leader with the terminal as its controlling one, as a password prompt
    /// needs (`streams` must then be [`Streams::All`]).
    pub fn spawn(command: Command, streams: Streams, controlling: bool) -> OnTerminal {
        let pty = openpty(None, None).expect("a pseudo-terminal");
        let slave = || Stdio::from(pty.slave.try_clone().expect("a copy of the terminal"));
        let mut command = if controlling {
            let mut leader = Command::new("setsid");
            leader.arg("--ctty").arg(command.get_program());
            leader.args(command.get_args());
            for (key, value) in command.get_envs() {
                match value {
                    Some(v) => leader.env(key, v),
                    None => leader.env_remove(key),
                };
            }
            leader
        } else {
            command
        };
        if streams == Streams::All {
            command.stdin(slave());
        }
        command.stdout(slave()).stderr(slave());
        let child = command.spawn().expect("the command starts");
        // The Command holds copies of the terminal's slave side: once they
        // (and ours, see `read_to_end`) are closed, reading the master ends
        // when the child exits.
        drop(command);
        OnTerminal {
            child,
            slave: Some(pty.slave),
            master: std::fs::File::from(pty.master),
        }
    }

    /// Waits (up to 20 s) until the terminal no longer echoes what is typed
    /// (a hidden prompt is up), then types `line` and a newline.
    pub fn type_when_echo_is_off(&mut self, line: &str) {
        let slave = self.slave.as_ref().expect("the terminal is still open");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tcgetattr(slave)
            .expect("the terminal's settings")
            .local_flags
            .contains(LocalFlags::ECHO)
        {
            assert!(
                Instant::now() < deadline,
                "the terminal never stopped echoing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("typing on the terminal");
    }

    /// Everything the command wrote to the terminal until it exited, and
    /// whether it succeeded.
    pub fn read_to_end(mut self) -> (bool, Vec<u8>) {
        drop(self.slave.take());
        let mut written = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => written.extend_from_slice(&buf[..n]),
                // Linux says EIO once no process holds the slave side any more.
                Err(e) if e.raw_os_error() == Some(Errno::EIO as i32) => break,
                Err(e) => panic!("reading the terminal: {e}"),
            }
        }
        let status = self.child.wait().expect("the command ends");
        (status.success(), written)
    }
}

/// Runs `command` with `streams` on a new pseudo-terminal; everything it
/// wrote there.
pub fn on_a_terminal(command: Command, streams: Streams) -> Vec<u8> {
    OnTerminal::spawn(command, streams, false).read_to_end().1
}
