//! The executor against a real Docker engine, without a control plane: output,
//! exit codes, timeouts, cancellation, secrets, backpressure and cleanup. After
//! every case, no container labeled with the case's agent id may remain.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use bollard::query_parameters::InspectContainerOptions;
use sealrun_agent::control::{RunControl, Stop};
use sealrun_agent::executor::{Outcome, execute};
use sealrun_agent::runtime::{RunSpec, Runtime, Shape, UnitSpec};
use sealrun_testkit::runtime::{
    MemorySink, assert_no_container_left, docker_runtime, in_image, job, run, run_with,
    start_until, with_secret,
};
use sealrun_testkit::wait_until;
use sealrun_wire::log::StreamKind;
use sealrun_wire::run::RunStatus;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn stdout_and_stderr_arrive_on_their_own_streams() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (finish, out) = run(
        &rt,
        job(&["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"]),
    )
    .await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    assert_eq!(finish.exit_code, Some(0));
    assert_eq!(out.stdout(), "to-out\nmore-out\n");
    assert_eq!(out.stderr(), "to-err\n");
}

#[tokio::test]
async fn exit_codes_are_reported_exactly() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    for code in [1, 42, 255] {
        let (finish, _) = run(&rt, job(&["sh", "-c", &format!("exit {code}")])).await;
        assert_eq!(finish.status, RunStatus::Failed);
        assert_eq!(finish.exit_code, Some(code));
        assert_eq!(finish.error, None);
    }
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_an_error() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (finish, _) = run(&rt, job(&["/no/such/binary"])).await;
    // The init shim cannot execute it (exit 127, one line on stderr): an `error`,
    // not a command failure.
    assert_eq!(finish.status, RunStatus::Error);
    assert!(finish.error.unwrap().contains("/no/such/binary"));
}

#[tokio::test]
async fn binary_output_is_kept_byte_for_byte() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (_, out) = run(&rt, job(&["printf", "\\377\\376\\000x\\n"])).await;
    assert_eq!(out.stream(StreamKind::Stdout), b"\xff\xfe\x00x\n");
}

#[tokio::test]
async fn large_output_arrives_complete_in_bounded_sequenced_chunks() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&["sh", "-c", "seq 1 200000"]);
    j.max_chunk_bytes = 16 * 1024;
    let (finish, out) = run(&rt, j).await;
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.stdout(), expected);
    let chunks = out.chunks.lock().unwrap();
    assert!(chunks.iter().all(|c| c.data.0.len() <= 16 * 1024));
    assert!(chunks.iter().enumerate().all(|(i, c)| c.seq == i as u64));
    assert_eq!(finish.next_seq, chunks.len() as u64);
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_removes_its_container() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&["sh", "-c", "echo started; sleep 60"]);
    j.assignment.timeout_secs = 1;
    let started = std::time::Instant::now();
    let (finish, out) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::TimedOut);
    // The init shim forwards SIGTERM to sh, which does not trap it and dies of it.
    assert_eq!(finish.exit_code, Some(143));
    assert_eq!(out.stdout(), "started\n");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run was not stopped by its timeout"
    );
}

#[tokio::test]
async fn the_agent_cap_on_timeouts_applies() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&["sleep", "60"]);
    j.max_timeout = Some(Duration::from_secs(1));
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::TimedOut);
}

#[tokio::test]
async fn a_cancel_sends_sigterm_which_the_command_can_handle() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    j.cancel_grace = Duration::from_secs(20);
    let (task, sink, control) = start_until(&rt, j, "ready").await;
    control.request(Stop::Cancel);
    let finish = task.await.unwrap();
    assert_eq!(finish.status, RunStatus::Canceled);
    assert_eq!(finish.exit_code, Some(3));
    assert!(sink.stdout().ends_with("got-term\n"));
}

#[tokio::test]
async fn a_cancel_kills_a_command_that_ignores_sigterm_after_the_grace_period() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&[
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    j.cancel_grace = Duration::from_millis(300);
    let (task, _, control) = start_until(&rt, j, "ready").await;
    control.request(Stop::Cancel);
    let finish = task.await.unwrap();
    assert_eq!(finish.status, RunStatus::Canceled);
    assert_eq!(finish.exit_code, Some(137));
}

#[tokio::test]
async fn a_shutdown_kills_the_command_at_once_and_reports_an_error() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&[
        "sh",
        "-c",
        "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    j.cancel_grace = Duration::from_secs(60);
    let (task, sink, control) = start_until(&rt, j, "ready").await;
    control.request(Stop::Shutdown);
    let finish = task.await.unwrap();
    assert_eq!(finish.status, RunStatus::Error);
    assert_eq!(finish.exit_code, Some(137));
    assert!(finish.error.unwrap().contains("shut down"));
    assert!(!sink.stdout().contains("got-term"), "SIGKILL, not SIGTERM");
}

#[tokio::test]
async fn an_abandoned_run_is_killed_and_removed_and_reports_nothing() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let j = job(&["sh", "-c", "echo ready; sleep 60"]);
    let agent_id = j.agent_id.clone();
    let sink = MemorySink::new();
    let control = RunControl::new();
    let task = {
        let (rt, sink, control) = (rt.clone(), Arc::clone(&sink), control.clone());
        tokio::spawn(async move { execute(&rt, j, sink, control).await })
    };
    wait_until(30, "ready", || sink.stdout().contains("ready")).await;
    control.request(Stop::Abandon);
    assert_eq!(task.await.unwrap(), Outcome::Abandoned);
    assert_no_container_left(&rt, &agent_id).await;
}

#[tokio::test]
async fn a_secret_reaches_the_command_and_is_masked_in_every_form() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let secret = "pa55-w0rd-for-prod";
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let script = r#"
        echo "raw: $DB_PASSWORD"
        printf '%s' "$DB_PASSWORD" | base64
        printf 'split: pa55-w'; sleep 0.3; printf '0rd-for'; sleep 0.3; printf -- '-prod end\n'
        echo "stderr: $DB_PASSWORD" >&2
        echo "length ${#DB_PASSWORD}"
    "#;
    let j = with_secret(job(&["sh", "-c", script]), "DB_PASSWORD", secret);
    let (finish, out) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    let (stdout, stderr) = (out.stdout(), out.stderr());
    for text in [&stdout, &stderr] {
        assert!(!text.contains(secret), "secret leaked: {text}");
        assert!(!text.contains(&b64), "base64 leaked: {text}");
    }
    assert_eq!(stdout, "raw: ***\n***\nsplit: *** end\nlength 18\n");
    assert_eq!(stderr, "stderr: ***\n");
}

#[tokio::test]
async fn a_secret_shorter_than_the_minimum_ends_the_run_with_an_error() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let j = with_secret(job(&["true"]), "PIN", "1234");
    let agent_id = j.agent_id.clone();
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Error);
    let error = finish.error.unwrap();
    assert!(
        error.contains("PIN") && error.contains("at least"),
        "{error}"
    );
    assert!(!error.contains("1234"));
    assert_no_container_left(&rt, &agent_id).await;
}

#[tokio::test]
async fn a_secret_sealed_for_another_target_is_refused() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&["true"]);
    let sealed = sealrun_vault::seal(
        &j.keypair.public_key(),
        "TOKEN",
        "other-target",
        b"long-enough-value",
    )
    .unwrap();
    j.assignment
        .secrets
        .push(sealrun_wire::agent::AssignedSecret {
            name: "TOKEN".into(),
            sealed,
        });
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Error);
    assert!(finish.error.unwrap().contains("TOKEN"));
}

#[tokio::test]
async fn an_image_pull_failure_is_an_error_whose_message_is_redacted() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // A registry that refuses connections: the engine's error quotes the image
    // reference, which here contains the secret (as a registry token might).
    let token = "leaked-registry-token-7";
    let mut j = with_secret(job(&["true"]), "REGISTRY_TOKEN", token);
    j = in_image(j, &format!("127.0.0.1:1/{token}:latest"));
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Error);
    let error = finish.error.unwrap();
    assert!(error.contains("image pull failed"), "{error}");
    assert!(error.contains("***"), "{error}");
    assert!(!error.contains(token), "{error}");
}

#[tokio::test]
async fn a_cancel_during_a_stalled_image_pull_ends_the_run_at_once() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // A "registry" that accepts connections and never answers.
    let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = registry.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = registry.accept().await {
            held.push(conn);
        }
    });
    let mut j = job(&["true"]);
    j = in_image(j, &format!("127.0.0.1:{port}/stalled/image:latest"));
    let sink = MemorySink::new();
    let control = RunControl::new();
    let task = {
        let (rt, sink, control) = (rt.clone(), Arc::clone(&sink), control.clone());
        tokio::spawn(async move { run_with(&rt, j, sink, control).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished(), "the pull did not stall");
    control.request(Stop::Cancel);
    let finish = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finish.status, RunStatus::Canceled);
    assert_eq!(finish.exit_code, None);
    hold.abort();
}

#[tokio::test]
async fn a_network_that_does_not_exist_is_an_error_and_leaves_no_container() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&["true"]);
    j.assignment.network = Some("sealrun-no-such-network".into());
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Error);
    assert!(finish.error.unwrap().contains("sealrun-no-such-network"));
}

#[tokio::test]
async fn a_stalled_sink_blocks_the_command_instead_of_dropping_or_buffering_output() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // 64 MiB: far more than the agent's bounded buffer plus the kernel's pipes.
    let total: usize = 64 * 1024 * 1024;
    let j = job(&[
        "sh",
        "-c",
        &format!("yes 0123456789abcdef0123456789abcdef | head -c {total}; echo done >&2"),
    ]);
    let agent_id = j.agent_id.clone();
    let (sink, gate) = MemorySink::stalled();
    let control = RunControl::new();
    let task = {
        let (rt, sink, control) = (rt.clone(), Arc::clone(&sink), control.clone());
        tokio::spawn(async move { run_with(&rt, j, sink, control).await })
    };
    // While the sink accepts nothing, the command must stay blocked on its output.
    let id = loop {
        if let Some(id) = rt.list(&agent_id).await.unwrap().pop() {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let inspected = rt
        .client()
        .inspect_container(&id.0, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let state = inspected.state.unwrap();
    assert_eq!(
        state.running,
        Some(true),
        "the command finished although its output could not be stored"
    );
    assert!(sink.chunks.lock().unwrap().is_empty());

    gate.add_permits(1);
    let finish = task.await.unwrap();
    assert_eq!(finish.status, RunStatus::Succeeded);
    let stdout = sink.stream(StreamKind::Stdout);
    assert_eq!(stdout.len(), total);
    let line = b"0123456789abcdef0123456789abcdef\n";
    assert!(
        stdout.chunks(line.len()).all(|l| line.starts_with(l)),
        "output reordered or corrupted"
    );
    assert_eq!(sink.stderr(), "done\n");
}

#[tokio::test]
async fn orphans_of_this_agent_are_removed_and_other_agents_containers_are_kept() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let image_id = rt.ensure_image(sealrun_testkit::IMAGE).await.unwrap();
    let spec = |agent: &str, pool: Option<&str>| UnitSpec {
        shape: Shape {
            image_id: image_id.clone(),
            limits: Default::default(),
            network: None,
            user: None,
        },
        agent_id: agent.into(),
        run_id: pool.is_none().then(|| "orphan".into()),
        pool: pool.map(str::to_owned),
        idle: std::time::Duration::from_secs(300),
        deadline: std::time::Duration::from_secs(600),
    };
    let (mine, other) = (
        sealrun_testkit::runtime::unique_agent_id(),
        sealrun_testkit::runtime::unique_agent_id(),
    );
    // One waiting for its run, one running a command, one pool member.
    let _waiting = rt.prepare(spec(&mine, None)).await.unwrap();
    let running = rt.prepare(spec(&mine, None)).await.unwrap();
    let run = RunSpec {
        argv: vec!["sleep".into(), "60".into()],
        env: vec![],
        secrets: vec![],
        stdin: false,
        deadline: std::time::Duration::from_secs(300),
        nonce: sealrun_init::ShimNonce::from_bytes([1; sealrun_init::NONCE_LEN]),
    };
    drop(rt.deliver(&running, run.bundle().unwrap()).await.unwrap());
    let _member = rt.prepare(spec(&mine, Some("demo"))).await.unwrap();
    let kept = rt.prepare(spec(&other, None)).await.unwrap();

    assert_eq!(rt.remove_orphans(&mine).await.unwrap(), 3);
    assert_no_container_left(&rt, &mine).await;
    assert_eq!(rt.list(&other).await.unwrap(), vec![kept.clone()]);
    rt.remove(&kept).await.unwrap();
    assert_no_container_left(&rt, &other).await;
}
