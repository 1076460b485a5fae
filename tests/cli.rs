//! The `sealrun` CLI as a new user meets it: `sealrun dev` in one process,
//! every other command as its own subprocess, against a real Docker engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{require_docker, sealrun_bin};

const SECRET: &str = "correct-horse-battery-staple";

/// `sealrun dev` running in the background, and the env its `dev.env` sets.
struct Dev {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    token: String,
    ca_cert: String,
}

impl Dev {
    fn start() -> Dev {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("dev.log")).unwrap();
        let child = Command::new(sealrun_bin())
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("dev"))
            .env("HOME", dir.path())
            .env("SEALRUN_AGENT_INIT", support::init_binary())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let env_file = dir.path().join("dev").join("dev.env");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !env_file.exists() {
            assert!(
                Instant::now() < deadline,
                "sealrun dev did not write dev.env:\n{}",
                std::fs::read_to_string(dir.path().join("dev.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&env_file).unwrap();
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("{name} missing from dev.env:\n{text}"))
                .to_owned()
        };
        Dev {
            url: var("SEALRUN_URL"),
            token: var("SEALRUN_TOKEN"),
            ca_cert: var("SEALRUN_CA_CERT"),
            child,
            dir,
        }
    }

    /// A `sealrun` command with this dev's env and an empty HOME (so no
    /// profile on the machine running the tests can interfere).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sealrun_bin());
        c.args(args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SEALRUN_PROFILE")
            .env("SEALRUN_URL", &self.url)
            .env("SEALRUN_TOKEN", &self.token)
            .env("SEALRUN_CA_CERT", &self.ca_cert);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &self.token, b"")
    }

    fn run_with(&self, args: &[&str], token: &str, stdin: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .env("SEALRUN_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sealrun {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        serde_json::from_str(&self.ok(&with_json)).unwrap()
    }

    fn set_secret(&self, name: &str, value: &str) {
        let out = self.run_with(
            &["secret", "set", "--target", "demo", name],
            &self.token,
            value.as_bytes(),
        );
        assert!(
            out.status.success(),
            "secret set failed: {}",
            text(&out.stderr)
        );
    }

    fn token(&self, role: &str) -> String {
        self.ok(&["token", "create", "--role", role, "--name", role])
            .trim()
            .to_owned()
    }

    fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.json(&["runs", "show", id]);
            if run["status"] == status {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} never reached {status}: {run}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dev.log")).unwrap_or_default()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sealrun dev log ---\n{}", self.log());
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

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

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
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
    let dev = Dev::start();
    dev.set_secret("DB_PASSWORD", SECRET);
    let script = r#"
        echo "raw: $DB_PASSWORD"
        echo "b64: $(printf %s "$DB_PASSWORD" | base64)"
        echo "hex: $(printf %s "$DB_PASSWORD" | od -An -tx1 | tr -d ' \n')"
        printf 'split: %s' "${DB_PASSWORD%%-*}"; sleep 0.3; echo "-${DB_PASSWORD#*-}"
        echo "err: $DB_PASSWORD" >&2
        exit 3"#;
    let out = dev.run(&[
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
    let id = dev.json(&["runs", "list"])["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = dev.run(&["runs", "logs", &id]);
    let logged = text(&out.stdout) + &text(&out.stderr);
    assert!(logged.contains("raw: ***"), "{logged}");
    assert!(!logged.contains(SECRET), "{logged}");
}

#[test]
fn sealrun_run_exits_with_the_commands_own_exit_code() {
    if !require_docker() {
        return;
    }
    let dev = Dev::start();
    for expected in [0, 1, 42, 255] {
        let out = dev.run(&[
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
    let dev = Dev::start();
    let out = dev.run(&[
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
    let dev = Dev::start();
    let id = dev.ok(&["run", "--target", "demo", "--detach", "--", "sleep", "60"]);
    let id = id.trim();
    dev.wait_status(id, "running");
    let follower = dev
        .cmd(&["runs", "logs", id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    dev.ok(&["runs", "cancel", id]);
    let out = follower.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", text(&out.stderr));
    dev.wait_status(id, "canceled");
}

#[test]
fn ctrl_c_during_sealrun_run_cancels_the_remote_run() {
    if !require_docker() {
        return;
    }
    let dev = Dev::start();
    let child = dev
        .cmd(&[
            "run",
            "--target",
            "demo",
            "--",
            "sh",
            "-c",
            "echo started; sleep 60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let runs = dev.json(&["runs", "list", "--status", "running"]);
            if let Some(id) = runs["runs"][0]["id"].as_str() {
                break id.to_owned();
            }
            assert!(Instant::now() < deadline, "the run never started");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", text(&out.stderr));
    dev.wait_status(&id, "canceled");
}

#[test]
fn the_audit_trail_verifies_live_and_as_an_offline_export() {
    if !require_docker() {
        return;
    }
    let dev = Dev::start();
    dev.set_secret("DB_PASSWORD", SECRET);
    dev.ok(&["run", "--target", "demo", "--", "true"]);
    assert!(dev.ok(&["audit", "verify"]).contains("OK"));

    let export = dev.dir.path().join("audit.jsonl");
    dev.ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let trail = std::fs::read_to_string(&export).unwrap();
    for action in ["secret.written", "run.submitted", "run.finished"] {
        assert!(trail.contains(action), "{action} missing from the trail");
    }
    assert!(!trail.contains(SECRET));
    let out = dev.run(&["audit", "verify", "--file", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn an_edited_audit_export_fails_offline_verification() {
    if !require_docker() {
        return;
    }
    let dev = Dev::start();
    dev.ok(&["run", "--target", "demo", "--", "true"]);
    let export = dev.dir.path().join("audit.jsonl");
    dev.ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let trail = std::fs::read_to_string(&export).unwrap();
    let tampered = trail.replacen("\"run.submitted\"", "\"run.approved\"", 1);
    assert_ne!(trail, tampered);
    let forged = dev.dir.path().join("forged.jsonl");
    std::fs::write(&forged, tampered).unwrap();
    let out = dev.run(&["audit", "verify", "--file", forged.to_str().unwrap()]);
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
    let dev = Dev::start();
    dev.set_secret("DB_PASSWORD", SECRET);
    dev.ok(&[
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
    let id = dev.json(&["runs", "list"])["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let auditor = dev.token("auditor");
    let as_auditor = |args: &[&str], stdin: &[u8]| dev.run_with(args, &auditor, stdin);

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
    let detached = dev.ok(&["run", "--target", "demo", "--detach", "--", "sleep", "30"]);
    let cancel = as_auditor(&["runs", "cancel", detached.trim()], b"");
    assert_one_line_error(&cancel, "403");
    dev.wait_status(detached.trim(), "running");
    dev.ok(&["runs", "cancel", detached.trim()]);
}

#[test]
fn a_secret_shorter_than_the_minimum_is_refused_before_it_is_sent() {
    if !require_docker() {
        return;
    }
    let dev = Dev::start();
    let out = dev.run_with(
        &["secret", "set", "--target", "demo", "PIN"],
        &dev.token,
        b"1234\n",
    );
    assert_one_line_error(&out, "PIN");
    assert!(
        dev.json(&["secret", "list", "--target", "demo"])["secrets"]
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
    let dev = Dev::start();
    let bad_token = dev.run_with(&["runs", "list"], "srt_nope_nope", b"");
    assert_one_line_error(&bad_token, "401");
    let unknown_target = dev.run(&["run", "--target", "nowhere", "--", "true"]);
    assert_one_line_error(&unknown_target, "nowhere");
    let unknown_status = dev.run(&["runs", "list", "--status", "sleeping"]);
    assert_one_line_error(&unknown_status, "sleeping");

    let port = support::free_port();
    let unreachable = dev
        .cmd(&["runs", "list"])
        .env("SEALRUN_URL", format!("https://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_one_line_error(&unreachable, "cannot reach the control plane");
    let plain_http = dev
        .cmd(&["runs", "list"])
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
    let dev = Dev::start();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/targets.toml");
    dev.ok(&["agent-pool", "create", "dc1"]);
    dev.ok(&["target", "apply", "-f", file.to_str().unwrap()]);
    let names: Vec<String> = dev.json(&["target", "list"])["targets"]
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
    let dev = Dev::start();
    dev.ok(&["login"]);
    let profile: PathBuf = dev.dir.path().join(".config/sealrun/profile.toml");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = dev
        .cmd(&["whoami"])
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
        vec!["run", "--help"],
        vec!["target", "create", "--help"],
        vec!["target", "apply", "--help"],
        vec!["secret", "set", "--help"],
        vec!["runs", "logs", "--help"],
        vec!["token", "create", "--help"],
        vec!["agent-pool", "enroll-token", "--help"],
        vec!["audit", "verify", "--help"],
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
