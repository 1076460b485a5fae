//! The shim as a plain process on the host (not PID 1, no Docker needed):
//! argument handling, the bundle on stdin, exit codes, and reaping orphans as
//! a child subreaper.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use sealrun_init::{EXIT_INIT_FAILED, EXIT_NOT_FOUND};
use sealrun_testkit::container::{bundle, run_process};

fn shim() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sealrun-init"))
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn without_wait_or_a_double_dash_and_a_command_the_shim_exits_125_with_its_usage() {
    for argv in [&[][..], &["--"], &["sh", "-c", "true"]] {
        let output = run_process(shim(), argv, &bundle(&[]));
        assert_eq!(output.status.code(), Some(EXIT_INIT_FAILED), "{argv:?}");
        assert_eq!(
            stderr(&output),
            "sealrun-init: error: usage: sealrun-init --wait [--idle-secs N] | sealrun-init -- CMD [ARGS...]\n"
        );
    }
}

#[test]
fn the_command_gets_the_bundle_variables() {
    let output = run_process(
        shim(),
        &["--", "printenv", "TOKEN"],
        &bundle(&[("TOKEN", b"t-1")]),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(output.stdout, b"t-1\n");
}

#[test]
fn garbage_on_stdin_exits_125_and_runs_nothing() {
    let output = run_process(shim(), &["--", "echo", "ran"], b"not a bundle at all");
    assert_eq!(output.status.code(), Some(EXIT_INIT_FAILED));
    assert_eq!(output.stdout, b"");
    assert!(stderr(&output).starts_with("sealrun-init: error: invalid bundle on stdin: "));
}

#[test]
fn a_command_that_cannot_start_is_reported_on_a_line_signed_with_the_runs_nonce() {
    let mut signed = sealrun_init::Bundle::new();
    signed.set_nonce(sealrun_init::ShimNonce::from_bytes([0x5a; 16]));
    let output = run_process(shim(), &["--", "no-such-command"], &signed.encode());
    assert_eq!(output.status.code(), Some(EXIT_NOT_FOUND));
    assert!(
        stderr(&output).starts_with(
            "sealrun-init[5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a]: error: cannot execute no-such-command: "
        ),
        "{}",
        stderr(&output)
    );
    // Positive control: without a nonce the same failure is unsigned.
    let output = run_process(shim(), &["--", "no-such-command"], &bundle(&[]));
    assert!(
        stderr(&output).starts_with("sealrun-init: error: cannot execute no-such-command: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_command_that_runs_never_sees_the_nonce() {
    let mut signed = sealrun_init::Bundle::new();
    signed.set_nonce(sealrun_init::ShimNonce::from_bytes([0x5a; 16]));
    signed.push_env("VISIBLE", b"yes").unwrap();
    let output = run_process(
        shim(),
        &["--", "sh", "-c", "env; cat /proc/self/cmdline; exit 3"],
        &signed.encode(),
    );
    assert_eq!(output.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("VISIBLE=yes"), "{stdout}");
    assert!(!stdout.to_lowercase().contains("5a5a"), "{stdout}");
    assert_eq!(stderr(&output), "");
}

#[test]
fn exit_codes_and_deaths_by_signal_propagate() {
    for (script, code) in [("exit 7", 7), ("kill -TERM $$", 143)] {
        let output = run_process(shim(), &["--", "sh", "-c", script], &bundle(&[]));
        assert_eq!(output.status.code(), Some(code), "{script}");
    }
}

#[test]
fn a_missing_command_exits_127() {
    let output = run_process(shim(), &["--", "/nonexistent/command"], &bundle(&[]));
    assert_eq!(output.status.code(), Some(EXIT_NOT_FOUND));
}

#[test]
fn the_command_reads_end_of_file_while_the_writer_keeps_stdin_open() {
    let mut child = Command::new(shim())
        .args(["--", "sh", "-c", "cat; echo cat-done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bundle(&[])).unwrap();
    stdin
        .write_all(b"more input the command must not see\n")
        .unwrap();
    stdin.flush().unwrap();
    // `stdin` stays open until the command is done.
    let output = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, b"cat-done\n");
}

#[test]
fn with_a_stdin_record_the_command_reads_exactly_what_follows_the_bundle() {
    let mut bundle = sealrun_init::Bundle::new();
    bundle.push_env("TOKEN", b"t-1").unwrap();
    bundle.attach_stdin();
    let input = [&bundle.encode()[..], b"select 1;\nselect 2;\n"].concat();
    let output = run_process(shim(), &["--", "sh", "-c", "cat; echo \"$TOKEN\""], &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(output.stdout, b"select 1;\nselect 2;\nt-1\n");
}

#[test]
fn orphans_are_adopted_and_reaped_by_the_shim_when_it_is_not_pid_1() {
    // Each `( ... &)` leaves an orphan `sleep`. As a child subreaper the shim
    // ($PPID of the script) adopts all three; once they exit, a zombie whose
    // parent is the shim would mean it failed to reap them.
    let script = r#"(sleep 1 &); (sleep 1 &); (sleep 1 &); sleep 0.3
        count() {
            n=0
            for f in /proc/[0-9]*/status; do
                grep -q "^PPid:.$PPID\$" "$f" 2>/dev/null && grep -q "$1" "$f" 2>/dev/null && n=$((n+1))
            done
            echo $n
        }
        echo "adopted=$(count '^Name:.sleep')"
        sleep 1.5
        echo "zombies=$(count '^State:.Z')""#;
    let output = run_process(shim(), &["--", "sh", "-c", script], &bundle(&[]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "adopted=3\nzombies=0\n"
    );
}

#[test]
fn a_signal_sent_while_the_bundle_is_awaited_is_forwarded_once_the_command_runs() {
    let mut child = Command::new(shim())
        .args(["--", "sleep", "30"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the shim has blocked its signals (it then waits for the
    // bundle), so SIGTERM is held rather than acted on.
    let status = format!("/proc/{}/status", child.id());
    loop {
        let text = std::fs::read_to_string(&status).unwrap();
        if text
            .lines()
            .any(|line| line.starts_with("SigBlk:") && !line.ends_with("0000000000000000"))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bundle(&[])).unwrap();
    drop(stdin);
    // `sleep` has no handler, so the held SIGTERM ends it at once: 128 + 15.
    assert_eq!(child.wait().unwrap().code(), Some(143));
}

#[test]
fn at_its_deadline_the_shim_kills_the_command_even_with_nobody_else_to_stop_it() {
    let mut with_deadline = sealrun_init::Bundle::new();
    with_deadline.set_deadline(1);
    let started = std::time::Instant::now();
    let output = run_process(shim(), &["--", "sleep", "30"], &with_deadline.encode());
    assert_eq!(output.status.code(), Some(137), "{}", stderr(&output));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // Positive control: without a deadline the same command runs to its end.
    let output = run_process(
        shim(),
        &["--", "sh", "-c", "sleep 2; echo slept"],
        &bundle(&[]),
    );
    assert_eq!(output.stdout, b"slept\n");
}

/// A bundle naming `argv` (the program first) and holding `vars`.
fn bundle_with_argv(argv: &[&str], vars: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bundle = sealrun_init::Bundle::new();
    for arg in argv {
        bundle.push_arg(arg.as_bytes()).unwrap();
    }
    for (name, value) in vars {
        bundle.push_env(name, value).unwrap();
    }
    bundle.encode().to_vec()
}

#[test]
fn a_waiting_shim_runs_the_command_the_bundle_names_with_its_variables() {
    let output = run_process(
        shim(),
        &["--wait"],
        &bundle_with_argv(
            &["sh", "-c", "echo \"$1 $TOKEN\"", "sh", "a b"],
            &[("TOKEN", b"t-1")],
        ),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(output.stdout, b"a b t-1\n");
}

#[test]
fn a_waiting_shim_given_a_bundle_without_a_command_exits_125_and_runs_nothing() {
    let output = run_process(shim(), &["--wait"], &bundle(&[("TOKEN", b"t-1")]));
    assert_eq!(output.status.code(), Some(EXIT_INIT_FAILED));
    assert_eq!(output.stdout, b"");
    assert_eq!(
        stderr(&output),
        "sealrun-init: error: the bundle names no command\n"
    );
}

#[test]
fn a_command_in_both_the_bundle_and_the_command_line_is_refused() {
    let output = run_process(
        shim(),
        &["--", "echo", "from-the-command-line"],
        &bundle_with_argv(&["echo", "from-the-bundle"], &[]),
    );
    assert_eq!(output.status.code(), Some(EXIT_INIT_FAILED));
    assert_eq!(output.stdout, b"");
    assert!(stderr(&output).contains("the bundle names a command, and so does the command line"));
}

#[test]
fn a_waiting_shim_whose_bundle_never_comes_gives_up_after_its_idle_limit() {
    // The writer keeps stdin open and silent, as an agent that died after
    // starting the container would leave it (Docker holds the pipe).
    let mut child = Command::new(shim())
        .args(["--wait", "--idle-secs", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let output = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(output.status.code(), Some(EXIT_INIT_FAILED));
    assert_eq!(
        stderr(&output),
        "sealrun-init: error: no bundle arrived within 1 s\n"
    );
    // Positive control: with the same limit, a bundle that comes runs.
    let output = run_process(
        shim(),
        &["--wait", "--idle-secs", "1"],
        &bundle_with_argv(&["echo", "ran"], &[]),
    );
    assert_eq!(output.stdout, b"ran\n", "{}", stderr(&output));
}
