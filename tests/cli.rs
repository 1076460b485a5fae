//! The `sealrun` CLI as a new user meets it: `sealrun dev` in one process,
//! every other command as its own subprocess, against a real Docker engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{DevProcess, code, free_port, require_docker, sealrun_bin, signal, text};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SECRET: &str = "correct-horse-battery-staple";

fn base64(s: &str) -> String {
    use std::process::Command;
    let mut c = Command::new("base64")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    text(&c.wait_with_output().unwrap().stdout)
        .trim()
        .to_owned()
}

/// Asserts a failed command said one line on stderr, and no panic.
fn assert_one_line_error(out: &Output, contains: &str) {
    assert!(!out.status.success(), "expected a failure");
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "a panic: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "a backtrace hint: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("sealrun: "), "{err}");
    assert!(err.contains(contains), "expected `{contains}` in: {err}");
}

#[test]
fn a_new_user_runs_a_command_whose_secret_comes_back_masked_in_every_encoding() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    dev.cli.set_secret("demo", "DB_PASSWORD", SECRET);
    let script = r#"
        echo "raw: $DB_PASSWORD"
        echo "b64: $(printf %s "$DB_PASSWORD" | base64)"
        echo "hex: $(printf %s "$DB_PASSWORD" | od -An -tx1 | tr -d ' \n')"
        printf 'split: %s' "${DB_PASSWORD%%-*}"; sleep 0.3; echo "-${DB_PASSWORD#*-}"
        echo "err: $DB_PASSWORD" >&2
        exit 3"#;
    let out = dev.cli.output(&[
        "run",
        "--target",
        "demo",
        "--secret",
        "DB_PASSWORD",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 3, "the command's exit code; stderr: {stderr}");
    for line in ["raw: ***", "b64: ***", "hex: ***", "split: ***"] {
        assert!(stdout.contains(line), "missing `{line}` in {stdout}");
    }
    assert!(stderr.contains("err: ***"), "{stderr}");
    let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    for leak in [SECRET, &base64(SECRET), &hex] {
        assert!(
            !stdout.contains(leak) && !stderr.contains(leak),
            "leaked {leak}"
        );
    }

    // The stored log, as anyone reading it later sees it.
    let id = dev.cli.json(&["runs", "list"])["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = dev.cli.output(&["runs", "logs", &id]);
    let logged = text(&out.stdout) + &text(&out.stderr);
    assert!(logged.contains("raw: ***"), "{logged}");
    assert!(!logged.contains(SECRET), "{logged}");
}

#[test]
fn sealrun_run_exits_with_the_commands_own_exit_code() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    for expected in [0, 1, 42, 255] {
        let out = dev.cli.output(&[
            "run",
            "--target",
            "demo",
            "--",
            "sh",
            "-c",
            &format!("exit {expected}"),
        ]);
        assert_eq!(code(&out), expected, "{}", text(&out.stderr));
    }
}

#[test]
fn a_run_past_its_timeout_exits_124() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let out = dev.cli.output(&[
        "run",
        "--target",
        "demo",
        "--timeout",
        "1s",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(code(&out), 124, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timed out"));
}

#[test]
fn a_run_canceled_from_another_shell_ends_canceled_and_its_follower_exits_130() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let id = dev
        .cli
        .ok(&["run", "--target", "demo", "--detach", "--", "sleep", "60"]);
    let id = id.trim();
    dev.cli.wait_status(id, "running");
    let follower = dev.cli.spawn(&["runs", "logs", id, "--follow"]);
    dev.cli.ok(&["runs", "cancel", id]);
    let out = follower.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", text(&out.stderr));
    dev.cli.wait_status(id, "canceled");
}

/// Starts `sealrun run` of a command that runs for a minute, waits until the
/// run is running, and sends `sealrun run` SIG`sig`; its output once it
/// exited, and the run's id.
fn signal_a_running_sealrun_run(dev: &DevProcess, sig: &str) -> (Output, String) {
    let child = dev.cli.spawn(&[
        "run",
        "--target",
        "demo",
        "--",
        "sh",
        "-c",
        "echo started; sleep 60",
    ]);
    let id = dev.cli.wait_running_run();
    signal(child.id(), sig);
    (child.wait_with_output().unwrap(), id)
}

#[test]
fn ctrl_c_during_sealrun_run_cancels_the_remote_run() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let (out, id) = signal_a_running_sealrun_run(&dev, "INT");
    assert_eq!(code(&out), 130, "{}", text(&out.stderr));
    dev.cli.wait_status(&id, "canceled");
}

#[test]
fn a_command_that_is_not_found_or_not_executable_exits_127_or_126_as_stored() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    for (argv, expected) in [
        (&["no-such-command"][..], 127),
        (&["/etc/hostname"][..], 126),
    ] {
        let mut args = vec!["run", "--target", "demo", "--"];
        args.extend_from_slice(argv);
        let out = dev.cli.output(&args);
        assert_eq!(code(&out), expected, "{argv:?}: {}", text(&out.stderr));
        let runs = dev.cli.json(&["runs", "list"]);
        assert_eq!(runs["runs"][0]["exit_code"], expected, "{runs}");
    }
    // Positive control: a command's own exit code comes through as it is.
    let out = dev
        .cli
        .output(&["run", "--target", "demo", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
}

#[test]
fn sigterm_or_sighup_during_sealrun_run_cancels_the_remote_run_like_ctrl_c() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    for sig in ["TERM", "HUP"] {
        let (out, id) = signal_a_running_sealrun_run(&dev, sig);
        let err = text(&out.stderr);
        assert_eq!(code(&out), 130, "SIG{sig}: {err}");
        assert!(
            err.contains(&format!("canceling run {id}")),
            "SIG{sig}: {err}"
        );
        dev.cli.wait_status(&id, "canceled");
    }
}

#[test]
fn without_a_terminal_sealrun_run_names_its_run_on_stderr() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let out = dev.cli.output(&["run", "--target", "demo", "--", "true"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let runs = dev.cli.json(&["runs", "list"]);
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    assert!(err.contains(&format!("run {id} submitted")), "{err}");
}

#[test]
fn the_audit_trail_verifies_live_and_as_an_offline_export() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    dev.cli.set_secret("demo", "DB_PASSWORD", SECRET);
    dev.cli.ok(&["run", "--target", "demo", "--", "true"]);
    assert!(dev.cli.ok(&["audit", "verify"]).contains("OK"));

    let export = dev.dir.path().join("audit.jsonl");
    dev.cli
        .ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let trail = std::fs::read_to_string(&export).unwrap();
    for action in ["secret.written", "run.submitted", "run.finished"] {
        assert!(trail.contains(action), "{action} missing from the trail");
    }
    assert!(!trail.contains(SECRET));
    let out = dev
        .cli
        .output(&["audit", "verify", "--file", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn an_edited_audit_export_fails_offline_verification() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    dev.cli.ok(&["run", "--target", "demo", "--", "true"]);
    let export = dev.dir.path().join("audit.jsonl");
    dev.cli
        .ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let trail = std::fs::read_to_string(&export).unwrap();
    let tampered = trail.replacen("\"run.submitted\"", "\"run.approved\"", 1);
    assert_ne!(trail, tampered);
    let forged = dev.dir.path().join("forged.jsonl");
    std::fs::write(&forged, tampered).unwrap();
    let out = dev
        .cli
        .output(&["audit", "verify", "--file", forged.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("TAMPERED"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_auditor_reads_runs_logs_and_the_trail_but_cannot_run_set_secrets_or_cancel() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    dev.cli.set_secret("demo", "DB_PASSWORD", SECRET);
    dev.cli.ok(&[
        "run",
        "--target",
        "demo",
        "--secret",
        "DB_PASSWORD",
        "--",
        "sh",
        "-c",
        "echo $DB_PASSWORD",
    ]);
    let id = dev.cli.json(&["runs", "list"])["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let auditor = dev.cli.create_token("auditor");
    let as_auditor =
        |args: &[&str], stdin: &[u8]| dev.cli.with_token(&auditor).output_with_stdin(args, stdin);

    assert!(as_auditor(&["runs", "list"], b"").status.success());
    let logs = as_auditor(&["runs", "logs", &id], b"");
    assert!(logs.status.success());
    assert_eq!(text(&logs.stdout), "***\n");
    assert!(as_auditor(&["audit", "list"], b"").status.success());
    assert!(as_auditor(&["audit", "verify"], b"").status.success());

    let run = as_auditor(&["run", "--target", "demo", "--", "true"], b"");
    assert_one_line_error(&run, "403");
    let set = as_auditor(
        &["secret", "set", "--target", "demo", "OTHER"],
        b"a-long-enough-value",
    );
    assert_one_line_error(&set, "403");
    let detached = dev
        .cli
        .ok(&["run", "--target", "demo", "--detach", "--", "sleep", "30"]);
    let cancel = as_auditor(&["runs", "cancel", detached.trim()], b"");
    assert_one_line_error(&cancel, "403");
    dev.cli.wait_status(detached.trim(), "running");
    dev.cli.ok(&["runs", "cancel", detached.trim()]);
}

#[test]
fn a_secret_shorter_than_the_minimum_is_refused_before_it_is_sent() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let out = dev
        .cli
        .output_with_stdin(&["secret", "set", "--target", "demo", "PIN"], b"1234\n");
    assert_one_line_error(&out, "PIN");
    assert!(
        dev.cli.json(&["secret", "list", "--target", "demo"])["secrets"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn failures_are_one_line_errors_with_a_non_zero_exit() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let bad_token = dev
        .cli
        .with_token("srt_nope_nope")
        .output(&["runs", "list"]);
    assert_one_line_error(&bad_token, "401");
    let unknown_target = dev
        .cli
        .output(&["run", "--target", "nowhere", "--", "true"]);
    assert_one_line_error(&unknown_target, "nowhere");
    let unknown_status = dev.cli.output(&["runs", "list", "--status", "sleeping"]);
    assert_one_line_error(&unknown_status, "sleeping");

    let port = free_port();
    let unreachable = dev
        .cli
        .command(&["runs", "list"])
        .env("SEALRUN_URL", format!("https://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_one_line_error(&unreachable, "cannot reach the control plane");
    let plain_http = dev
        .cli
        .command(&["runs", "list"])
        .env("SEALRUN_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_one_line_error(&plain_http, "https://");
}

#[test]
fn target_apply_declares_every_target_of_the_file() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/targets.toml");
    dev.cli.ok(&["agent-pool", "create", "dc1"]);
    dev.cli
        .ok(&["target", "apply", "-f", file.to_str().unwrap()]);
    let names: Vec<String> = dev.cli.json(&["target", "list"])["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    for name in ["demo", "prod-db", "k8s-prod"] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
}

#[test]
fn login_saves_a_private_profile_that_later_commands_use() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    dev.cli.ok(&["login"]);
    let profile: PathBuf = dev.dir.path().join(".config/sealrun/profile.toml");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = dev
        .cli
        .command(&["whoami"])
        .env_remove("SEALRUN_URL")
        .env_remove("SEALRUN_TOKEN")
        .env_remove("SEALRUN_CA_CERT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("role: admin"));
}

#[test]
fn every_subcommand_has_help_with_examples() {
    let with_examples = [
        vec!["--help"],
        vec!["server", "--help"],
        vec!["agent", "--help"],
        vec!["dev", "--help"],
        vec!["login", "--help"],
        vec!["logout", "--help"],
        vec!["run", "--help"],
        vec!["target", "create", "--help"],
        vec!["target", "apply", "--help"],
        vec!["secret", "set", "--help"],
        vec!["runs", "logs", "--help"],
        vec!["token", "create", "--help"],
        vec!["agent-pool", "enroll-token", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
        vec!["audit", "list", "--help"],
        vec!["completions", "--help"],
    ];
    for args in with_examples {
        let out = Command::new(sealrun_bin()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = text(&out.stdout);
        assert!(
            help.contains("Examples:"),
            "no examples in `sealrun {}`",
            args.join(" ")
        );
    }
    let run_help = text(
        &Command::new(sealrun_bin())
            .args(["run", "--help"])
            .output()
            .unwrap()
            .stdout,
    );
    for code in ["124", "125", "75", "130"] {
        assert!(run_help.contains(code), "exit code {code} undocumented");
    }
}

#[test]
fn a_usage_mistake_is_reported_without_a_panic() {
    let out = Command::new(sealrun_bin())
        .args(["run", "--target"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(!text(&out.stderr).contains("panicked"));
}
