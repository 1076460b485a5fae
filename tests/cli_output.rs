//! How the `sealrun` binary writes what it prints, against an in-process
//! control plane (no Docker): through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{ControlPlane, InProcessServer, code, quick_settings, text};
use std::process::Output;

/// `sealrun ARGS` writing into a pipe whose reader is gone before anything
/// is written, as `sealrun runs list | head -0` (or a `head` that has read
/// enough) leaves it: the test holds the only read end and drops it at once.
fn with_closed_stdout(cli: &sealrun_testkit::Cli, args: &[&str]) -> Output {
    let mut child = cli.spawn(args);
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

/// `head <hash>` as `audit export` and `audit verify` print it, on the
/// first line of `text`.
fn head_of(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    let (_, head) = line
        .trim_end()
        .rsplit_once(", head ")
        .unwrap_or_else(|| panic!("no head in {line:?}"));
    head
}

#[tokio::test]
async fn audit_export_prints_the_head_hash_that_offline_verification_reports() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    admin.declare_target("web").await;
    let cli = server.cli(server.admin_token());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let file = file.to_str().unwrap();

    let out = cli.output(&["audit", "export", "-o", file]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    let entries = std::fs::read_to_string(file).unwrap().lines().count();
    assert!(entries >= 2, "{entries} entries");
    assert!(
        err.starts_with(&format!(
            "exported {entries} audit entries to {file}, head "
        )),
        "{err}"
    );
    let exported_head = head_of(&err);

    let verified = cli.ok(&["audit", "verify", "--file", file]);
    assert!(
        verified.contains(&format!(": OK, {entries} entries")),
        "{verified}"
    );
    assert_eq!(head_of(&verified), exported_head);
    // Positive control: the head names this chain's last entry, so it moves
    // when the trail grows.
    let live = cli.json(&["audit", "verify"]);
    assert_eq!(live["head"], exported_head, "{live}");
    admin.declare_target("cache").await;
    let grown = cli.output(&["audit", "export"]);
    let grown_err = text(&grown.stderr);
    assert!(
        grown_err.starts_with(&format!(
            "exported {} audit entries to stdout, head ",
            entries + 1
        )),
        "{grown_err}"
    );
    assert_ne!(head_of(&grown_err), exported_head);
    // Without -o, stdout is the export and nothing else.
    assert_eq!(text(&grown.stdout).lines().count(), entries + 1);
}
