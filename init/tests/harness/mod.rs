//! What the shim's integration tests share: the static shim (built once per
//! test process with scripts/build-init.sh), bundles, and containers run with
//! the docker CLI the way the agent runs them through the Docker API.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealrun_init::{Bundle, CONTAINER_PATH};

/// The image every run uses unless a test says otherwise (built locally, FROM
/// scratch with a static busybox; never pulled).
pub const BUSYBOX: &str = "sealrun/busybox:latest";
/// FROM scratch with a single file, busybox installed as `/bin/env`: no shell,
/// no libc.
pub const NO_SHELL: &str = "sealrun/init-test-noshell:latest";
/// Label on every container these tests create.
const LABEL: &str = "sealrun.test=init";
/// Upper bound on any container's life in these tests: a guard against a hang,
/// not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(90);

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The static shim, built by scripts/build-init.sh on first use.
pub fn static_shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let output = Command::new(workspace_root().join("scripts/build-init.sh"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(output.status.success(), "scripts/build-init.sh failed");
        let path = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        assert!(
            path.is_file(),
            "build-init.sh printed {path:?}, which is not a file"
        );
        path
    })
}

/// A bundle from `(name, value)` pairs, encoded.
pub fn bundle(vars: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bundle = Bundle::new();
    for (name, value) in vars {
        bundle.push_env(name, value).unwrap();
    }
    bundle.encode().to_vec()
}

/// A value no earlier run can have left anywhere.
pub fn unique_secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos:x}-not-for-disk", std::process::id())
}

/// Output of a finished run.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// The Docker engine, when reachable.
#[derive(Debug)]
pub struct Docker {
    shim: PathBuf,
}

/// The engine, or `None` after printing `SKIPPED: no Docker engine`; panics
/// instead when `SEALRUN_REQUIRE_DOCKER` is set (CI). Builds the shim and the
/// test images on first use.
pub fn docker() -> Option<&'static Docker> {
    static DOCKER: OnceLock<Option<Docker>> = OnceLock::new();
    let docker = DOCKER.get_or_init(|| {
        let reachable = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !reachable {
            assert!(
                std::env::var_os("SEALRUN_REQUIRE_DOCKER").is_none(),
                "SEALRUN_REQUIRE_DOCKER is set but no Docker engine is reachable"
            );
            return None;
        }
        let status = Command::new(workspace_root().join("scripts/build-busybox-image.sh"))
            .status()
            .unwrap();
        assert!(status.success(), "scripts/build-busybox-image.sh failed");
        build_no_shell_image();
        Some(Docker {
            shim: static_shim().to_owned(),
        })
    });
    if docker.is_none() {
        eprintln!("SKIPPED: no Docker engine (set SEALRUN_REQUIRE_DOCKER=1 to fail instead)");
    }
    docker.as_ref()
}

/// Builds [`NO_SHELL`] from the local busybox image (nothing is pulled).
fn build_no_shell_image() {
    let context = std::env::temp_dir().join(format!("sealrun-init-noshell-{}", std::process::id()));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {BUSYBOX} AS busybox\nFROM scratch\nCOPY --from=busybox /bin/busybox /bin/env\n"
        ),
    )
    .unwrap();
    // The legacy builder needs no BuildKit; its deprecation notice on stderr
    // is shown only if the build fails.
    let output = Command::new("docker")
        .args(["build", "-q", "-t", NO_SHELL])
        .arg(&context)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&context).unwrap();
    assert!(
        output.status.success(),
        "building {NO_SHELL} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A container name unique to this test process.
fn container_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sealrun-init-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `docker` with `args`, asserting success; returns stdout.
pub fn docker_cli(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

impl Docker {
    /// `docker run -i --rm` of `image` with the shim bind-mounted read-only at
    /// its container path as the entrypoint, `options` before the image, and
    /// `-- argv` as the command: how the agent runs every command.
    fn command(&self, name: &str, image: &str, options: &[&str], argv: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command
            .args([
                "run",
                "-i",
                "--rm",
                "--name",
                name,
                "--label",
                LABEL,
                "--network",
                "none",
            ])
            .arg("--volume")
            .arg(format!("{}:{CONTAINER_PATH}:ro", self.shim.display()))
            .args(["--entrypoint", CONTAINER_PATH])
            .args(options)
            .arg(image)
            .arg("--")
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `argv` in `image`, writes `stdin` to the attached stdin, closes it,
    /// and waits for the container to exit.
    pub fn run(&self, image: &str, options: &[&str], argv: &[&str], stdin: &[u8]) -> Finished {
        let mut running = self.start(image, options, argv, stdin);
        running.close_stdin();
        running.finish()
    }

    /// Starts `argv` in `image` and writes `stdin` to the attached stdin,
    /// leaving it open.
    pub fn start(&self, image: &str, options: &[&str], argv: &[&str], stdin: &[u8]) -> Running {
        let name = container_name();
        let mut child = self.command(&name, image, options, argv).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
        input.flush().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).unwrap();
            text
        });
        Running {
            name,
            child,
            stdin: Some(input),
            stdout,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }
}

/// A container started by [`Docker::start`]; removed when dropped.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    /// Stdout lines consumed by [`Running::wait_for_line`].
    seen: Vec<u8>,
}

impl Running {
    /// Closes the attached stdin (end-of-file for the container).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads stdout up to and including the line `line`; panics if stdout
    /// ends first.
    pub fn wait_for_line(&mut self, line: &str) {
        loop {
            let mut next = String::new();
            let read = self.stdout.read_line(&mut next).unwrap();
            assert!(
                read > 0,
                "stdout ended before {line:?}; stdout so far: {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            self.seen.extend_from_slice(next.as_bytes());
            if next.trim_end_matches('\n') == line {
                return;
            }
        }
    }

    /// `docker kill --signal SIGNAL` (to PID 1, the shim).
    pub fn signal(&self, signal: &str) {
        docker_cli(&["kill", "--signal", signal, &self.name]);
    }

    /// The container id.
    pub fn id(&self) -> String {
        docker_cli(&["inspect", "--format", "{{.Id}}", &self.name])
            .trim()
            .to_owned()
    }

    /// Waits for the container to exit; returns its exit code and all output.
    pub fn finish(mut self) -> Finished {
        let deadline = Instant::now() + HANG_GUARD;
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                remove(&self.name);
                panic!("container {} still running after {HANG_GUARD:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = std::mem::take(&mut self.seen);
        self.stdout.read_to_end(&mut stdout).unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        Finished {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            remove(&self.name);
            let _ = self.child.wait();
        }
    }
}

/// Removes a container, whatever its state.
fn remove(name: &str) {
    let _ = Command::new("docker")
        .args(["rm", "--force", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs the shim binary `shim` directly (not in a container) with `argv`,
/// `stdin` written and closed.
pub fn run_process(shim: &Path, argv: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(shim)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The shim may exit without reading (usage error): a broken pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}
