//! Runs through the executor on real Docker, as the agent runs them, with the
//! `sealrun-init` shim as every container's entrypoint: secrets delivered over
//! stdin, images without a shell, exit codes, signals forwarded by the shim,
//! zombies reaped, and a bundle the shim refuses (an unsigned failure: see
//! `shim_trust.rs`). After every case, no container labeled with the case's
//! agent id may remain.
#![allow(clippy::unwrap_used)]

use sealrun_agent::control::{RunControl, Stop};
use sealrun_agent::docker::DockerRuntime;
use sealrun_agent::executor::{Outcome, execute};
use sealrun_agent::runtime::{
    ContainerId, ExitState, Runtime, RuntimeError, Started, StdinBundle, StopSignal, UnitSpec,
};
use sealrun_testkit::runtime::{
    MemorySink, assert_no_container_left, docker_runtime, in_image, job, run, start_until,
    with_secret,
};
use sealrun_wire::agent::FinishRequest;
use sealrun_wire::run::RunStatus;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "init-shim-s3cr3t-value";

#[tokio::test]
async fn the_command_sees_its_secret_and_its_plain_variables() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = with_secret(
        job(&[
            "sh",
            "-c",
            "echo \"plain=$PLAIN\"; echo \"secret=$DB_PASSWORD\"; echo \"len=${#DB_PASSWORD}\"",
        ]),
        "DB_PASSWORD",
        SECRET,
    );
    j.assignment
        .env
        .insert("PLAIN".into(), "plain-value".into());
    let (finish, out) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Succeeded, "{finish:?}");
    assert_eq!(out.stdout(), "plain=plain-value\nsecret=***\nlen=22\n");
}

/// Builds `FROM scratch` holding one file, the static busybox as `/env`: no
/// shell, no libc, nothing else (busybox picks the applet from its name).
fn build_image_without_a_shell() -> &'static str {
    const IMAGE: &str = "sealrun/no-shell:test";
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dockerfile = "FROM sealrun/busybox:latest AS busybox\n\
                          FROM scratch\n\
                          COPY --from=busybox /bin/busybox /env\n";
        let mut build = std::process::Command::new("docker")
            .args(["build", "-q", "-t", IMAGE, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            build
                .stdin
                .take()
                .unwrap()
                .write_all(dockerfile.as_bytes())
                .unwrap();
        }
        assert!(build.wait().unwrap().success(), "could not build {IMAGE}");
    });
    IMAGE
}

#[tokio::test]
async fn an_image_without_a_shell_or_libc_runs_its_binary_with_the_secret() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let image = build_image_without_a_shell();
    let mut j = with_secret(job(&["/env"]), "DB_PASSWORD", SECRET);
    j = in_image(j, image);
    let (finish, out) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Succeeded, "{finish:?}");
    let stdout = out.stdout();
    assert!(stdout.lines().any(|l| l == "DB_PASSWORD=***"), "{stdout}");

    // And there really is no shell to run.
    let mut j = job(&["/bin/sh", "-c", "true"]);
    j = in_image(j, image);
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Error);
    assert_eq!(finish.exit_code, Some(127));
}

#[tokio::test]
async fn the_commands_exit_code_is_the_runs() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    for code in [0, 1, 3, 124, 128, 200, 255] {
        let (finish, _) = run(&rt, job(&["sh", "-c", &format!("exit {code}")])).await;
        let expected = if code == 0 {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        assert_eq!((finish.status, finish.exit_code), (expected, Some(code)));
        assert_eq!(finish.error, None);
    }
}

#[tokio::test]
async fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (finish, _) = run(&rt, job(&["sh", "-c", "kill -USR1 $$"])).await;
    assert_eq!(
        (finish.status, finish.exit_code),
        (RunStatus::Failed, Some(138))
    );
}

/// A command that exits 125-127 itself, writing something else first, is a
/// command failure and not a shim failure.
#[tokio::test]
async fn a_command_exiting_125_to_127_on_its_own_is_a_failure() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    for code in [125, 126, 127] {
        let script = format!("echo 'some error' >&2; exit {code}");
        let (finish, _) = run(&rt, job(&["sh", "-c", &script])).await;
        assert_eq!(
            (finish.status, finish.exit_code, finish.error),
            (RunStatus::Failed, Some(code), None)
        );
    }
}

#[tokio::test]
async fn a_cancel_forwards_sigterm_through_the_shim_to_a_command_that_traps_it() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // `sh` is not PID 1 here (the shim is): it gets SIGTERM only if the shim
    // forwards it.
    let mut j = job(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    j.cancel_grace = Duration::from_secs(30);
    let started = std::time::Instant::now();
    let (task, sink, control) = start_until(&rt, j, "ready").await;
    control.request(Stop::Cancel);
    let finish = task.await.unwrap();
    assert_eq!(
        (finish.status, finish.exit_code),
        (RunStatus::Canceled, Some(7))
    );
    assert_eq!(sink.stdout(), "ready\ngot-term\n");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the command ended by the grace period's SIGKILL, not by the forwarded SIGTERM"
    );
}

#[tokio::test]
async fn a_cancel_sigkills_a_command_that_ignores_sigterm_once_the_grace_period_ends() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&[
        "sh",
        "-c",
        "trap 'echo ignoring-term' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    j.cancel_grace = Duration::from_millis(800);
    let (task, sink, control) = start_until(&rt, j, "ready").await;
    control.request(Stop::Cancel);
    let finish = task.await.unwrap();
    assert_eq!(
        (finish.status, finish.exit_code),
        (RunStatus::Canceled, Some(137))
    );
    // It did receive the SIGTERM (forwarded), and survived it until SIGKILL.
    assert!(sink.stdout().contains("ignoring-term"), "{}", sink.stdout());
}

#[tokio::test]
async fn orphans_are_reaped_so_a_zombie_spawning_command_leaves_none() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // Each `(sleep ... &)` subshell exits at once, so its sleep is re-parented to
    // PID 1; the short ones then exit and would stay zombies if PID 1 never
    // reaped them. The long one shows who adopted them.
    let script = r#"
        for i in 1 2 3 4 5 6 7 8; do (sleep 0.1 &); done
        (exec sleep 30 &)
        sleep 1.5
        zombies=0
        for s in /proc/[0-9]*/stat; do
            set -- $(cat "$s" 2>/dev/null)
            [ "$3" = Z ] && zombies=$((zombies + 1))
            [ "$2" = "(sleep)" ] && [ "$4" != "$$" ] && echo "orphan-parent=$4"
        done
        echo "zombies=$zombies"
    "#;
    let (finish, out) = run(&rt, job(&["sh", "-c", script])).await;
    assert_eq!(finish.status, RunStatus::Succeeded, "{finish:?}");
    let stdout = out.stdout();
    assert!(stdout.contains("orphan-parent=1\n"), "{stdout}");
    assert!(stdout.ends_with("zombies=0\n"), "{stdout}");
}

/// [`DockerRuntime`] writing `input` to the shim instead of the run's bundle:
/// a bundle gone wrong between the agent and the container.
struct BadBundle {
    inner: DockerRuntime,
    input: Vec<u8>,
}

impl Runtime for BadBundle {
    async fn ensure_image(&self, image: &str) -> Result<String, RuntimeError> {
        self.inner.ensure_image(image).await
    }
    async fn prepare(&self, spec: UnitSpec) -> Result<ContainerId, RuntimeError> {
        self.inner.prepare(spec).await
    }
    async fn deliver(
        &self,
        id: &ContainerId,
        _encoded: StdinBundle,
    ) -> Result<Started, RuntimeError> {
        // The run's bundle is dropped (and zeroized) unwritten.
        self.inner
            .deliver(id, StdinBundle::from(self.input.clone()))
            .await
    }
    async fn is_running(&self, id: &ContainerId) -> bool {
        self.inner.is_running(id).await
    }
    async fn wait(&self, id: &ContainerId) -> Result<ExitState, RuntimeError> {
        self.inner.wait(id).await
    }
    async fn signal(&self, id: &ContainerId, signal: StopSignal) -> Result<(), RuntimeError> {
        self.inner.signal(id, signal).await
    }
    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.inner.remove(id).await
    }
    async fn list(&self, agent_id: &str) -> Result<Vec<ContainerId>, RuntimeError> {
        self.inner.list(agent_id).await
    }
    async fn list_expired(&self, now_unix_secs: u64) -> Result<Vec<ContainerId>, RuntimeError> {
        self.inner.list_expired(now_unix_secs).await
    }
}

async fn run_with_input(rt: &DockerRuntime, input: Vec<u8>) -> (FinishRequest, Arc<MemorySink>) {
    let j = with_secret(
        job(&["sh", "-c", "echo the-command-ran"]),
        "DB_PASSWORD",
        SECRET,
    );
    let agent_id = j.agent_id.clone();
    let bad = BadBundle {
        inner: rt.clone(),
        input,
    };
    let sink = MemorySink::new();
    let outcome = execute(&bad, j, Arc::clone(&sink), RunControl::new()).await;
    assert_no_container_left(rt, &agent_id).await;
    match outcome {
        Outcome::Report(f) => (f, sink),
        Outcome::Abandoned => panic!("abandoned"),
    }
}

// A bundle the shim cannot read gives it no nonce to sign its line with, so
// the agent cannot tell that line from a command's: the run is reported as
// exiting 125 (`failed`), never as "did not run", and the shim's line is in
// its stderr. (The agent writes every bundle itself: this is a broken stream.)
#[tokio::test]
async fn a_malformed_bundle_runs_nothing_and_ends_the_run_with_125_and_the_shims_line() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (finish, out) = run_with_input(&rt, b"this is not a sealrun bundle".to_vec()).await;
    assert_eq!(
        (finish.status, finish.exit_code, finish.error),
        (RunStatus::Failed, Some(125), None)
    );
    assert!(
        out.stderr()
            .starts_with("sealrun-init: error: invalid bundle on stdin"),
        "{}",
        out.stderr()
    );
    assert!(!out.stdout().contains("the-command-ran"));
}

#[tokio::test]
async fn a_short_bundle_runs_nothing_and_does_not_wait_for_the_timeout() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut bundle = sealrun_init::Bundle::new();
    bundle.push_env("DB_PASSWORD", SECRET.as_bytes()).unwrap();
    let wire = bundle.encode();
    let started = std::time::Instant::now();
    let (finish, out) = run_with_input(&rt, wire[..wire.len() - 5].to_vec()).await;
    assert_eq!(
        (finish.status, finish.exit_code),
        (RunStatus::Failed, Some(125))
    );
    let stderr = out.stderr();
    assert!(stderr.contains("short"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert!(!out.stdout().contains("the-command-ran"));
    // The agent closes stdin after the bundle, so the shim sees EOF at once
    // rather than the job's 60 s timeout.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_non_utf8_secret_reaches_the_command_byte_for_byte() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let value: &[u8] = b"\xff\xfe-binary-secret-\x01";
    // Compared inside the container: printing any encoding of the value
    // would (rightly) be masked.
    let mut j = job(&[
        "sh",
        "-c",
        "[ \"$BIN\" = \"$(printf '\\377\\376-binary-secret-\\001')\" ] && echo same || echo different",
    ]);
    let sealed = sealrun_vault::seal(
        &j.keypair.public_key(),
        "BIN",
        sealrun_testkit::runtime::TARGET,
        value,
    )
    .unwrap();
    j.assignment
        .secrets
        .push(sealrun_wire::agent::AssignedSecret {
            name: "BIN".into(),
            sealed,
        });
    let (finish, out) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Succeeded, "{finish:?}");
    assert_eq!(out.stdout(), "same\n");
}

#[tokio::test]
async fn the_agent_refuses_to_start_without_a_usable_shim_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for shim in [dir.path().join("missing"), "/bin/sh".into()] {
        let mut config = sealrun_agent::AgentConfig::new("https://127.0.0.1:1", &state, "a");
        config.targets.push(sealrun_agent::TargetConfig::new("t"));
        config.init_binary = Some(shim);
        let err = sealrun_agent::run(config, std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, sealrun_agent::Error::Init(_)), "{err}");
        assert!(err.to_string().contains("scripts/build-init.sh"), "{err}");
        assert!(!state.exists(), "the state directory was created");
    }
}
