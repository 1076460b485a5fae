//! Colour only where it helps (issue 12): `sealrun dev` and the daemons'
//! text logs colour stderr on a terminal, and write plain text into pipes,
//! files and CI logs, or when `NO_COLOR` is set (https://no-color.org).
//! Through the real binary; only the last test needs Docker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::pty::{self, Streams};
use sealrun_testkit::{DevProcess, require_docker, sealrun_bin, text};
use std::process::{Command, Stdio};

const ESC: char = '\x1b';

/// `sealrun dev` that says its first line and then stops: the init shim it
/// is given does not exist, which it checks before touching Docker. Its
/// data directory is a fresh temporary one, removed with `dir`.
fn dev_that_stops_early(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(sealrun_bin());
    c.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("dev"))
        .args(["--init-binary", "/nonexistent/sealrun-init"])
        .env("HOME", dir.path())
        .env_remove("NO_COLOR")
        .env_remove("SEALRUN_AGENT_INIT")
        .stdin(Stdio::null());
    c
}

/// Everything `command` wrote with stdout and stderr on a new
/// pseudo-terminal.
fn on_a_terminal(command: Command) -> String {
    text(&pty::on_a_terminal(command, Streams::Output))
}

#[test]
fn sealrun_dev_colours_its_messages_on_a_terminal() {
    // The positive control for the two tests below: colour does exist.
    let dir = tempfile::tempdir().unwrap();
    let shown = on_a_terminal(dev_that_stops_early(&dir));
    assert!(
        shown.contains("\x1b[1;34m[sealrun dev]\x1b[0m checking the Docker engine"),
        "{shown:?}"
    );
}

#[test]
fn sealrun_dev_writes_no_colour_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = dev_that_stops_early(&dir).output().unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("[sealrun dev] checking the Docker engine"),
        "{err}"
    );
    assert!(!err.contains(ESC), "{err:?}");
}

#[test]
fn sealrun_dev_writes_no_colour_on_a_terminal_under_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = dev_that_stops_early(&dir);
    dev.env("NO_COLOR", "1");
    let shown = on_a_terminal(dev);
    assert!(
        shown.contains("[sealrun dev] checking the Docker engine"),
        "{shown:?}"
    );
    assert!(!shown.contains(ESC), "{shown:?}");
}

#[test]
fn a_running_sealrun_dev_logs_plain_text_into_a_file() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    // Its first run makes the agent and the control plane log too.
    dev.cli.ok(&["run", "--target", "demo", "--", "true"]);
    let log = dev.log();
    assert!(log.contains("Ready."), "{log}");
    assert!(log.contains("INFO"), "no log line in:\n{log}");
    assert!(!log.contains(ESC), "{log:?}");
}
