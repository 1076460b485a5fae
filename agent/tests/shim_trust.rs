//! The init shim can be believed, and trusted: through the real executor,
//! Docker runtime and static shim, a command cannot make its run look as if
//! it never started (only the shim can sign its error line, and the command
//! cannot read the nonce it signs with, even as root), and a shim that
//! someone else could have replaced is refused, at start and before a run.
#![allow(clippy::unwrap_used)]

use sealrun_agent::docker::DockerRuntime;
use sealrun_testkit::runtime::{docker_runtime, job, run};
use sealrun_wire::run::RunStatus;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

#[tokio::test]
async fn a_command_printing_the_shims_error_and_exiting_125_is_reported_as_its_own_failure() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    for code in ["125", "126", "127"] {
        let script = format!(
            "echo 'sealrun-init: error: invalid bundle on stdin: bad magic' >&2; exit {code}"
        );
        let (finish, out) = run(&rt, job(&["sh", "-c", &script])).await;
        assert_eq!(finish.status, RunStatus::Failed, "{code}: {finish:?}");
        assert_eq!(finish.exit_code, Some(code.parse().unwrap()));
        assert_eq!(finish.error, None, "{code}");
        assert_eq!(
            out.stderr(),
            "sealrun-init: error: invalid bundle on stdin: bad magic\n"
        );
    }
}

#[tokio::test]
async fn a_command_cannot_forge_the_signed_form_either() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let forged = "sealrun-init[00000000000000000000000000000000]: error: cannot execute x";
    let (finish, out) = run(
        &rt,
        job(&["sh", "-c", &format!("echo '{forged}' >&2; exit 127")]),
    )
    .await;
    assert_eq!(
        (finish.status, finish.exit_code, finish.error),
        (RunStatus::Failed, Some(127), None)
    );
    assert_eq!(out.stderr(), format!("{forged}\n"));
}

#[tokio::test]
async fn a_command_the_shim_cannot_start_is_an_error_quoting_the_shim_without_its_nonce() {
    // Positive control of the two tests above: the shim's own, signed, line.
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (finish, out) = run(&rt, job(&["no-such-command"])).await;
    assert_eq!(
        (finish.status, finish.exit_code),
        (RunStatus::Error, Some(127))
    );
    let error = finish.error.unwrap();
    assert!(
        error.starts_with(
            "the command did not run: sealrun-init: error: cannot execute no-such-command: "
        ),
        "{error}"
    );
    // The run's output shows the line as people know it: the nonce is gone.
    let stderr = out.stderr();
    assert!(
        stderr.starts_with("sealrun-init: error: cannot execute no-such-command: "),
        "{stderr}"
    );
    assert!(!stderr.contains('['), "{stderr}");
}

/// What a command sees of the shim's process (PID 1) and of its own.
const PROBE: &str = "\
    (exec 3</proc/1/mem) 2>/dev/null && echo shim-mem-opened || echo shim-mem-denied; \
    cat /proc/1/environ >/dev/null 2>&1 && echo shim-environ-read || echo shim-environ-denied; \
    (exec 3</proc/self/mem) 2>/dev/null && echo own-mem-opened || echo own-mem-denied";

#[tokio::test]
async fn a_command_cannot_read_the_shims_memory_where_the_nonce_is_even_as_root() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    for user in [None, Some("0:0")] {
        let mut j = job(&["sh", "-c", PROBE]);
        j.assignment.user = user.map(str::to_owned);
        let (finish, out) = run(&rt, j).await;
        assert_eq!(finish.status, RunStatus::Succeeded, "{user:?}: {finish:?}");
        // The last line is the positive control: a process's own memory opens.
        assert_eq!(
            out.stdout(),
            "shim-mem-denied\nshim-environ-denied\nown-mem-opened\n",
            "{user:?}"
        );
    }
}

/// A copy of the kit's static shim in a fresh private directory.
fn shim_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealrun-init");
    std::fs::copy(sealrun_testkit::init_binary(), &path).unwrap();
    set_mode(&path, 0o755);
    (dir, path)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn a_shim_others_can_write_is_refused_before_a_run_and_no_container_is_made() {
    if docker_runtime().await.is_none() {
        return;
    }
    let (dir, shim) = shim_copy();
    let rt = DockerRuntime::connect(None, &sealrun_agent::init::locate(Some(&shim)).unwrap())
        .await
        .unwrap();
    // Positive control: the same shim, untouched, runs the command.
    let (finish, out) = run(&rt, job(&["echo", "ran"])).await;
    assert_eq!(finish.status, RunStatus::Succeeded, "{finish:?}");
    assert_eq!(out.stdout(), "ran\n");

    for (what, path, mode) in [
        ("the shim", shim.as_path(), 0o757),
        ("its directory", dir.path(), 0o777),
    ] {
        set_mode(path, mode);
        // `run` also asserts that no container of the run is left.
        let (finish, out) = run(&rt, job(&["echo", "ran"])).await;
        assert_eq!(finish.status, RunStatus::Error, "{what}: {finish:?}");
        let error = finish.error.unwrap();
        assert!(error.contains("chmod go-w"), "{what}: {error}");
        assert_eq!(out.stdout(), "", "{what}");
        set_mode(path, if path == shim { 0o755 } else { 0o700 });
    }
}

#[tokio::test]
async fn a_shim_others_can_write_is_refused_at_start_before_anything_is_touched() {
    for writable in ["file", "directory"] {
        let (dir, shim) = shim_copy();
        match writable {
            "file" => set_mode(&shim, 0o777),
            _ => set_mode(dir.path(), 0o777),
        }
        let state = dir.path().join("state");
        let mut config = sealrun_agent::AgentConfig::new("https://127.0.0.1:1", &state, "a");
        config.targets.push(sealrun_agent::TargetConfig::new("t"));
        config.init_binary = Some(shim.clone());
        let err = sealrun_agent::run(config, std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, sealrun_agent::Error::Init(_)), "{err}");
        assert!(err.to_string().contains("chmod go-w"), "{writable}: {err}");
        assert!(
            !state.exists(),
            "{writable}: the state directory was created"
        );
        set_mode(dir.path(), 0o700);
    }
}
