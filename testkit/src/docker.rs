//! The one "Docker is required" rule, and the few `docker` CLI calls tests
//! make to look at (or clean up) what a test left on the engine.
//!
//! A Docker-backed test starts with
//!
//! ```no_run
//! if !sealrun_testkit::require_docker() {
//!     return;
//! }
//! ```
//!
//! Without an engine, [`require_docker`] prints one `SKIPPED` line on stderr
//! naming the test and why, and the test returns early; under
//! `SEALRUN_REQUIRE_DOCKER` (`scripts/test.sh` sets it) or `CI=true` it fails
//! the test instead, so CI can never pass by skipping ([`skip_or_fail`], the
//! rule every other "cannot run here" of the suites follows too). With an engine,
//! it also makes sure the base image exists, with the code `sealrun dev` uses
//! ([`sealrun_agent::image::ensure`]).

use sealrun_agent::image::{self, BASE_IMAGE};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The local image every Docker-backed test runs (built `FROM scratch`,
/// never pulled).
pub const IMAGE: &str = BASE_IMAGE;

/// Whether a test that cannot run here (no engine, no PyNaCl, no corpus...)
/// must fail rather than skip: `SEALRUN_REQUIRE_DOCKER` or `CI` is set to
/// anything but empty, `0` or `false`.
pub fn skipping_forbidden() -> bool {
    forbidden_by("SEALRUN_REQUIRE_DOCKER")
}

/// Whether `var` or `CI` is set to anything but empty, `0` or `false`.
fn forbidden_by(var: &str) -> bool {
    [var, "CI"].iter().any(|var| {
        std::env::var(var)
            .is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")))
    })
}

/// The one skip rule: a test (or part of one) that cannot run here because
/// of `why` is skipped loudly (one `*** SKIPPED <test>: <why> ***` line on the
/// process's stderr, which libtest does not capture), or failed when
/// [`skipping_forbidden`]. Returns only when skipping.
pub fn skip_or_fail(why: &str) {
    skip_or_fail_unless(why, "SEALRUN_REQUIRE_DOCKER");
}

/// [`skip_or_fail`] with `var` (or `CI`) forbidding the skip: the browser
/// tests' rule names `SEALRUN_REQUIRE_BROWSER`.
pub(crate) fn skip_or_fail_unless(why: &str, var: &str) {
    let test = test_name();
    assert!(
        !forbidden_by(var),
        "{test}: {why} ({var} or CI is set: this must run here)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {why}; set {var}=1 to fail instead ***\n"
    );
}

/// Whether Docker-backed tests can run. Without an engine: [`skip_or_fail`]
/// (returns `false` after a `SKIPPED` line, or fails the test). With one:
/// builds [`IMAGE`] if it is missing. The engine is asked once per process.
pub fn require_docker() -> bool {
    static ENGINE: OnceLock<Result<(), String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| block_on(probe_engine()));
    let Err(why) = engine else { return true };
    skip_or_fail(why);
    false
}

/// `Err(why)` when no engine answers; panics when one answers but the base
/// image cannot be built (that is a broken machine, not a missing engine).
async fn probe_engine() -> Result<(), String> {
    let docker = match image::connect_local().await {
        Ok(docker) => docker,
        Err(e) => return Err(format!("no Docker engine ({})", chain(&e))),
    };
    if let Err(e) = image::ensure(&docker, IMAGE, |msg| eprintln!("[sealrun-testkit] {msg}")).await
    {
        panic!(
            "the Docker engine answers but {IMAGE} is unusable: {}",
            chain(&e)
        );
    }
    Ok(())
}

/// Runs `future` to completion on a runtime of its own, on a thread of its
/// own: callable from sync tests, async tests (any flavour) and benchmarks
/// alike. A panic in `future` is the caller's panic.
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(future)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// An error and its sources, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The running test: libtest names each test's thread after it; a benchmark
/// (or a test run on the main thread) is named after its executable.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "this test".to_owned()),
    }
}

/// Runs `docker ARGS`, asserting success; returns its stdout.
pub fn docker_cli(args: &[&str]) -> String {
    try_docker_cli(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `docker ARGS`: its stdout, or why it failed.
fn try_docker_cli(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker {args:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| format!("docker {args:?} printed non-UTF-8"))
}

/// Ids of the containers (running or not) labeled `label` (`key=value`), or
/// why the engine could not list them.
fn try_containers_labeled(label: &str) -> Result<Vec<String>, String> {
    let listed = try_docker_cli(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={label}"),
    ])?;
    Ok(listed.lines().map(str::to_owned).collect())
}

/// Ids of the containers (running or not) labeled `label` (`key=value`).
pub fn containers_labeled(label: &str) -> Vec<String> {
    try_containers_labeled(label).unwrap_or_else(|e| panic!("{e}"))
}

/// Ids of the containers labeled as created by the agent `agent_id`.
pub fn containers_of(agent_id: &str) -> Vec<String> {
    containers_labeled(&agent_label(agent_id))
}

/// [`containers_of`] for a drop, perhaps of a failed test: nothing if the
/// engine cannot list them (a panic there would abort the test binary).
pub(crate) fn containers_of_quietly(agent_id: &str) -> Vec<String> {
    try_containers_labeled(&agent_label(agent_id)).unwrap_or_default()
}

/// The label every container the agent `agent_id` makes carries.
fn agent_label(agent_id: &str) -> String {
    format!("sealrun.agent={agent_id}")
}

/// Removes a container (by name or id) and its anonymous volumes, whatever
/// its state; a container that is already gone is not an error.
pub fn remove_container(name: &str) {
    let _ = Command::new("docker")
        .args(["rm", "--force", "--volumes", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits until no container labeled with `agent_id` exists.
pub async fn wait_no_containers(agent_id: &str) {
    crate::wait_for(
        &format!("the containers of agent {agent_id} to be removed"),
        || async { containers_of(agent_id).is_empty().then_some(()) },
    )
    .await;
}
