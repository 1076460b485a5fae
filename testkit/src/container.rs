//! Containers started with the `docker` CLI the way the agent starts every
//! run through the Docker API: the static shim bind-mounted read-only as the
//! entrypoint, a stdin bundle, `--network none`. For the shim's own tests and
//! benchmark; also the shim run as a plain process, and bundles.

use crate::docker::{IMAGE, block_on, chain, docker_cli, remove_container, require_docker};
use sealrun_init::{Bundle, CONTAINER_PATH};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `FROM scratch` with a single file, busybox installed as `/bin/env`: no
/// shell, no libc. Built from [`IMAGE`] by [`shim_docker`].
pub const NO_SHELL: &str = "sealrun/init-test-noshell:latest";
/// Label on every container of this module.
const LABEL: &str = "sealrun.test=init";
/// Upper bound on any container's life here: a guard against a hang, not a
/// timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(90);

/// A bundle from `(name, value)` pairs, encoded.
pub fn bundle(vars: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bundle = Bundle::new();
    for (name, value) in vars {
        bundle
            .push_env(name, value)
            .unwrap_or_else(|e| panic!("{name} cannot go into a bundle: {e}"));
    }
    bundle.encode().to_vec()
}

/// A value no earlier run can have left anywhere.
pub fn unique_secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos();
    format!("{tag}-{}-{nanos:x}-not-for-disk", std::process::id())
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
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", shim.display()));
    let mut input = child.stdin.take().expect("a piped stdin");
    // The shim may exit without reading (usage error): a broken pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("the shim's output")
}

/// Output of a finished container.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: String,
}

impl Finished {
    /// Stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// The Docker engine with the static shim, ready to run containers.
#[derive(Debug)]
pub struct ShimDocker {
    shim: PathBuf,
}

/// The engine and shim, or `None` when [`require_docker`] says to skip.
/// Builds the shim and [`NO_SHELL`] on first use in this process.
pub fn shim_docker() -> Option<&'static ShimDocker> {
    static DOCKER: OnceLock<ShimDocker> = OnceLock::new();
    if !require_docker() {
        return None;
    }
    Some(DOCKER.get_or_init(|| {
        build_no_shell_image();
        ShimDocker {
            shim: crate::init_binary().to_owned(),
        }
    }))
}

/// Builds [`NO_SHELL`] from the local [`IMAGE`] (nothing is pulled), with the
/// builder the base image uses.
fn build_no_shell_image() {
    let dockerfile = format!(
        "FROM {IMAGE} AS busybox\nFROM scratch\nCOPY --from=busybox /bin/busybox /bin/env\n"
    );
    block_on(async move {
        let docker = sealrun_agent::image::connect_local().await?;
        let context = sealrun_agent::image::build_context(&dockerfile, &[])?;
        sealrun_agent::image::build(&docker, NO_SHELL, context).await
    })
    .unwrap_or_else(|e| panic!("building {NO_SHELL} failed: {}", chain(&e)));
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

impl ShimDocker {
    /// The static shim on the host.
    pub fn shim(&self) -> &Path {
        &self.shim
    }

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
        let mut child = self
            .command(&name, image, options, argv)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
        let mut input = child.stdin.take().expect("a piped stdin");
        input
            .write_all(stdin)
            .expect("writing the container's stdin");
        input.flush().expect("flushing the container's stdin");
        let stdout = BufReader::new(child.stdout.take().expect("a piped stdout"));
        let mut stderr = child.stderr.take().expect("a piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            stderr
                .read_to_string(&mut text)
                .expect("the container's stderr is UTF-8");
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

/// A container started by [`ShimDocker::start`]; removed when dropped.
#[derive(Debug)]
pub struct Running {
    /// The container's name.
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
            let read = self
                .stdout
                .read_line(&mut next)
                .expect("reading the container's stdout");
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
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                break status;
            }
            if Instant::now() > deadline {
                remove_container(&self.name);
                panic!("container {} still running after {HANG_GUARD:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = std::mem::take(&mut self.seen);
        self.stdout
            .read_to_end(&mut stdout)
            .expect("reading the container's stdout");
        let stderr = self
            .stderr
            .take()
            .expect("stderr is collected once")
            .join()
            .expect("the stderr reader did not panic");
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
            remove_container(&self.name);
            let _ = self.child.wait();
        }
    }
}
