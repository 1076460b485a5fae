//! How the `sealrun` binary writes what it prints, against an in-process
//! control plane (no Docker): through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{ControlPlane, InProcessServer, quick_settings, text};
use std::process::{Output, Stdio};

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

/// `sealrun ARGS` writing into a pipe whose reader is gone before anything
/// is written, as `sealrun runs list | head -0` (or a `head` that has read
/// enough) leaves it: the test holds the only read end and drops it at once.
fn with_closed_stdout(cli: &sealrun_testkit::Cli, args: &[&str]) -> Output {
    let mut child = cli
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_closed_stdout_ends_every_printing_command_quietly_with_141() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let id = admin
        .submit_request(&sealrun_testkit::run_request("db", &["true"]))
        .await;
    let cli = server.cli(server.admin_token());
    let commands: [&[&str]; 8] = [
        &["runs", "list"],
        &["runs", "show", &id],
        &["audit", "list"],
        &["audit", "list", "--json"],
        &["audit", "export"],
        &["audit", "verify"],
        &["target", "show", "db"],
        &["whoami"],
    ];
    for args in commands {
        // Positive control: the command prints something and succeeds when
        // its output is read, so the closed pipe below is what changes.
        let read = cli.output(args);
        assert_eq!(code(&read), 0, "{args:?}: {}", text(&read.stderr));
        assert!(!read.stdout.is_empty(), "{args:?} printed nothing");

        let out = with_closed_stdout(&cli, args);
        let err = text(&out.stderr);
        assert_eq!(code(&out), 141, "{args:?}: {err}");
        // Not "Broken pipe", not "failed printing to stdout" (println!'s
        // panic): nothing at all.
        assert_eq!(err, "", "{args:?}");
    }
}
