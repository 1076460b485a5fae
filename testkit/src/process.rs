//! `sealrun` subprocesses: the binary under test, daemons with their logs
//! (printed when a test fails; killed and reaped on drop), and the CLI as a
//! user runs it.

use crate::wait::WAIT;
use serde_json::Value;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The `sealrun` binary Cargo built next to the running test or benchmark
/// (`target/<profile>/sealrun`; Cargo builds a package's binaries before its
/// integration tests and benchmarks run).
pub fn sealrun_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test");
    let deps = exe.parent().expect("the test executable's directory");
    let profile_dir = if deps.ends_with("deps") {
        deps.parent().expect("target/<profile>")
    } else {
        deps
    };
    let bin = profile_dir.join("sealrun");
    assert!(
        bin.is_file(),
        "{} does not exist: the end-to-end tests drive the sealrun binary (cargo build --bin sealrun)",
        bin.display()
    );
    bin
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Raises this process's soft open-file limit to at least `want`: a test
/// holding a thousand connections needs more than the usual default of
/// 1024. Fails the test if the hard limit is lower.
pub fn raise_open_file_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("the open-file limit");
    if soft >= want {
        return;
    }
    assert!(
        hard >= want,
        "this test needs {want} open files; the hard limit is {hard} (raise it: ulimit -Hn)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).expect("raising the open-file limit");
}

/// Sends SIGTERM to `pid` (through kill(1): the tests stay free of unsafe code).
pub fn sigterm(pid: u32) {
    signal(pid, "TERM");
}

/// Sends `SIG<name>` (e.g. `"INT"`) to `pid` through kill(1).
pub fn signal(pid: u32, name: &str) {
    assert!(try_signal(pid, name), "kill -{name} {pid} failed");
}

/// [`signal`], saying whether it was sent rather than failing the test.
fn try_signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The exit code of a process that exited by itself (a test fails if a
/// signal killed it).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

/// The text of a process's output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The id of the run `sealrun run` announced on stderr (`run <id> ...`).
pub fn announced_run(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .find(|w| w.starts_with("run_"))
        .unwrap_or_else(|| panic!("no run id in: {stderr}"))
        .to_owned()
}

/// `len` bytes of varied, deterministic content (every byte value occurs):
/// input to pipe into a run.
pub fn varied_bytes(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Runs `command` (stdin empty, output captured) until it exits by itself,
/// for daemons that must refuse to start: its output, or a failed test
/// (naming `what`, with what it printed) if it is still running after
/// `within`, in which case it is killed and reaped first.
pub fn output_within(what: &str, command: &mut Command, within: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    // Waiting drains both pipes, so a chatty process cannot block on them.
    let waiter = std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(within) {
        Ok(output) => output,
        Err(_) => {
            signal(pid, "KILL");
            let output = finished
                .recv()
                .expect("the waiter reports")
                .expect("waitpid");
            panic!(
                "{what} was still running after {within:?} (killed); its output:\n{}{}",
                text(&output.stdout),
                text(&output.stderr)
            );
        }
    };
    let _ = waiter.join();
    output.unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// A daemon child process with its log file.
#[derive(Debug)]
pub(crate) struct Daemon {
    what: &'static str,
    /// A program `sealrun` is started through (`prlimit --nofile=N:N`), or
    /// nothing; it must `exec` sealrun, so the pid stays sealrun's.
    launcher: Vec<String>,
    args: Vec<String>,
    envs: Vec<(String, PathBuf)>,
    pub(crate) log: PathBuf,
    child: Option<Child>,
    /// Whether a process of it was ever killed (SIGKILL): what it was
    /// doing was cut off, perhaps with a request the engine still completes.
    killed: bool,
}

impl Daemon {
    /// Starts `sealrun ARGS` with `envs`, logging to `log`.
    pub(crate) fn spawn(
        what: &'static str,
        args: Vec<String>,
        envs: Vec<(String, PathBuf)>,
        log: PathBuf,
    ) -> Daemon {
        Daemon::spawn_under(what, Vec::new(), args, envs, log)
    }

    /// Starts `LAUNCHER... sealrun ARGS` with `envs`, logging to `log`.
    pub(crate) fn spawn_under(
        what: &'static str,
        launcher: Vec<String>,
        args: Vec<String>,
        envs: Vec<(String, PathBuf)>,
        log: PathBuf,
    ) -> Daemon {
        let mut d = Daemon {
            what,
            launcher,
            args,
            envs,
            log,
            child: None,
            killed: false,
        };
        d.respawn();
        d
    }

    pub(crate) fn respawn(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.what);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let bin = sealrun_bin();
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let child = command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env_remove("SEALRUN_CONFIG")
            .env_remove("SEALRUN_AGENT_CONFIG")
            .env_remove("SEALRUN_URL")
            .env_remove("SEALRUN_TOKEN")
            .env_remove("SEALRUN_CA_CERT")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", self.what, bin.display()));
        self.child = Some(child);
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("process not running").id()
    }

    /// Polls `check` every 50 ms until it returns `Some`, failing the test
    /// (with the log) if the process exits first or after [`WAIT`].
    pub(crate) async fn wait_for<T, Fut>(&mut self, what: &str, mut check: impl FnMut() -> Fut) -> T
    where
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.assert_alive();
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}; the log of {}:\n{}",
                self.what,
                self.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails the test (with the log) if the process has exited.
    pub(crate) fn assert_alive(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(status) = child.try_wait().expect("waitpid") {
                panic!(
                    "{} exited early ({status}); its log:\n{}",
                    self.what,
                    self.tail(80)
                );
            }
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.killed = true;
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process as its operator would (SIGTERM), giving it up to
    /// `within` to exit, and kills it if it has not. Never panics (it runs
    /// in drops, perhaps of a failed test). Returns whether any process of
    /// this daemon was killed, now or before ([`Daemon::kill`]).
    pub(crate) fn stop_or_kill(&mut self, within: Duration) -> bool {
        if let Some(child) = &mut self.child {
            // Only a child not yet reaped: its pid may be another's after.
            if let Ok(Some(_)) | Err(_) = child.try_wait() {
                self.child = None;
                return self.killed;
            }
            try_signal(child.id(), "TERM");
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return self.killed;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
        self.killed
    }

    /// SIGTERM, then [`Daemon::wait_exit`].
    pub(crate) fn terminate(&mut self, within: Duration) -> ExitStatus {
        sigterm(self.pid());
        self.wait_exit(within)
    }

    /// Waits (up to `within`) for the process to exit; kills it and fails
    /// the test (with the log) if it does not.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("process not running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("waitpid") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {within:?}; its log:\n{}",
                    self.what,
                    self.tail(80)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}\n-----",
                self.what,
                self.log.display(),
                self.tail(60)
            );
        }
    }
}

/// The `sealrun` CLI as a user of one control plane runs it: its URL, token
/// and CA through the environment (`SEALRUN_URL`, `SEALRUN_TOKEN`,
/// `SEALRUN_CA_CERT`), and `HOME` set to a directory of the test with
/// `XDG_CONFIG_HOME`, `SEALRUN_PROFILE` and `SEALRUN_PROFILE_FILE` unset, so no profile on the machine
/// running the tests can interfere.
#[derive(Clone, Debug)]
pub struct Cli {
    /// `https://localhost:<port>`.
    pub url: String,
    /// The token commands run with.
    pub token: String,
    /// The CA certificate the CLI pins.
    pub ca_cert: PathBuf,
    /// `HOME` of every command.
    pub home: PathBuf,
    /// More of its environment (a `dev.env`'s admin key and trust files).
    pub env: Vec<(String, String)>,
}

impl Cli {
    /// The same CLI with another token.
    pub fn with_token(&self, token: &str) -> Cli {
        Cli {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// `sealrun ARGS`, ready to spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sealrun_bin());
        c.args(args)
            .env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SEALRUN_PROFILE")
            .env_remove("SEALRUN_PROFILE_FILE")
            .env("SEALRUN_URL", &self.url)
            .env("SEALRUN_TOKEN", &self.token)
            .env("SEALRUN_CA_CERT", &self.ca_cert)
            .env_remove("SEALRUN_SIGNING_KEY_FILE")
            .env_remove("SEALRUN_TRUST_FILE");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Starts `sealrun ARGS` with no stdin and its stdout and stderr piped,
    /// for a test that reads it or signals it while it runs.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_reading(args, Stdio::null())
    }

    /// Starts `sealrun ARGS` with its stdin, stdout and stderr piped, for a
    /// test that feeds it input while it runs.
    pub fn spawn_fed(&self, args: &[&str]) -> Child {
        self.spawn_reading(args, Stdio::piped())
    }

    /// Starts `sealrun ARGS` with `stdin`, its stdout and stderr piped.
    fn spawn_reading(&self, args: &[&str], stdin: Stdio) -> Child {
        self.command(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sealrun {args:?}: {e}"))
    }

    /// Runs `sealrun ARGS` with stdin on `/dev/null` (so `sealrun run`
    /// gives its command no input); its exit status and output.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run sealrun {args:?}: {e}"))
    }

    /// Runs `sealrun ARGS` with `stdin` piped in, written from another
    /// thread while the output is read (so a large input and a chatty
    /// command cannot block each other); its exit status and output.
    pub fn output_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.spawn_fed(args);
        let mut input = child.stdin.take().expect("a piped stdin");
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            // sealrun may stop reading (the command exited early): a broken
            // pipe is then expected.
            let _ = input.write_all(&stdin);
        });
        let output = child.wait_with_output().expect("the command's output");
        writer.join().expect("the stdin writer");
        output
    }

    /// Runs `sealrun ARGS`, asserting success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "sealrun {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs `sealrun ARGS --json`, asserting success; its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let out = self.ok(&with_json);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("sealrun {args:?}: not JSON ({e}): {out}"))
    }

    /// `sealrun secret set --target TARGET NAME` with `value` on stdin,
    /// asserting success.
    pub fn set_secret(&self, target: &str, name: &str, value: &str) {
        let out = self.output_with_stdin(
            &["secret", "set", "--target", target, name],
            value.as_bytes(),
        );
        assert!(
            out.status.success(),
            "secret set failed: {}",
            text(&out.stderr)
        );
    }

    /// A new token with `role` (named after the role).
    pub fn create_token(&self, role: &str) -> String {
        self.ok(&["token", "create", "--role", role, "--name", role])
            .trim()
            .to_owned()
    }

    /// Polls `sealrun runs show ID` (every 100 ms, up to [`WAIT`]) until the
    /// run has `status`; returns the run.
    pub fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + WAIT;
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

    /// Polls `sealrun runs list --status running` (every 100 ms, up to
    /// [`WAIT`]) until a run is running; returns the newest one's id.
    pub fn wait_running_run(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let runs = self.json(&["runs", "list", "--status", "running"]);
            if let Some(id) = runs["runs"][0]["id"].as_str() {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no run started: {runs}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The path of `name` in `dir`, for logs next to a data directory.
pub(crate) fn sibling(dir: &Path, name: &str) -> PathBuf {
    dir.parent().unwrap_or(dir).join(name)
}
