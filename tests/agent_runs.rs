//! End to end through the real `sealrun server` and `sealrun agent` processes and
//! a real Docker engine: what a run's submitter gets back (output, exit code,
//! masked secrets), and that timeouts and cancels kill the container. After every
//! case, no container with the agent's label remains.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{World, require_docker};
use sealrun_wire::run::RunStatus;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn stdout_stderr_and_the_exit_code_arrive() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let id = world
        .submit(&["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"])
        .await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.exit_code, Some(7));
    let agent = run.agent.as_deref().unwrap();
    assert!(
        agent == world.agent.name || agent == world.agent.id,
        "ran by {agent}"
    );
    assert_eq!(world.admin.stdout(&id).await, "to-stdout\n");
    assert_eq!(world.admin.stderr(&id).await, "to-stderr\n");
    world.assert_no_containers();

    let id = world.submit(&["echo", "hello", "world"]).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!((run.status, run.exit_code), (RunStatus::Succeeded, Some(0)));
    assert_eq!(world.admin.stdout(&id).await, "hello world\n");
    world.assert_no_containers();
}

/// A value and its standard base64 (`printf %s VALUE | base64`).
const SECRET: &str = "e2e-s3cr3t-Value-42";
const SECRET_B64: &str = "ZTJlLXMzY3IzdC1WYWx1ZS00Mg==";

/// Every file under `dir`, read as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_never_appears_in_stored_logs_in_any_form() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    world
        .admin
        .set_secret(&world.target, "DB_PASSWORD", SECRET.as_bytes())
        .await;
    let script = r#"
        echo "raw: $DB_PASSWORD (end)"
        echo "b64: $(printf '%s' "$DB_PASSWORD" | base64) (end)"
        printf 'split: e2e-s3c'; sleep 0.4; printf 'r3t-Val'; sleep 0.4; printf 'ue-42 (end)\n'
        echo "stderr: $DB_PASSWORD (end)" >&2
        echo "length ${#DB_PASSWORD}"
    "#;
    let mut request = world.request(&["sh", "-c", script]);
    request.secrets = vec!["DB_PASSWORD".into()];
    let id = world.admin.submit_request(&request).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.secrets, ["DB_PASSWORD"]);

    let (stdout, stderr) = (world.admin.stdout(&id).await, world.admin.stderr(&id).await);
    assert_eq!(
        stdout,
        "raw: *** (end)\nb64: *** (end)\nsplit: *** (end)\nlength 19\n"
    );
    assert_eq!(stderr, "stderr: *** (end)\n");

    // Nothing the control plane or the agent wrote to disk holds the value either.
    for (path, bytes) in files(world.dir.path()) {
        for needle in [SECRET, SECRET_B64] {
            assert!(
                !contains(&bytes, needle),
                "{} holds {needle:?}",
                path.display()
            );
        }
    }
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_container() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let mut request = world.request(&["sh", "-c", "echo started; sleep 300"]);
    request.timeout_secs = Some(2);
    let id = world.admin.submit_request(&request).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::TimedOut);
    assert_eq!(world.admin.stdout(&id).await, "started\n");
    let ran_for = run.finished_at_ms.unwrap() - run.started_at_ms.unwrap();
    assert!(
        ran_for < 60_000,
        "the command was not stopped by its 2 s timeout ({ran_for} ms)"
    );
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_kills_the_container() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let script = "trap 'echo terminated; exit 143' TERM; while true; do echo tick; sleep 0.2; done";
    let id = world.submit(&["sh", "-c", script]).await;
    world.admin.wait_output(&id, "tick").await;
    assert_eq!(
        sealrun_testkit::containers_of(&world.agent.id).len(),
        1,
        "the run's container is running"
    );

    world.admin.cancel(&id).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!(run.status, RunStatus::Canceled);
    assert_eq!(run.exit_code, Some(143));
    assert!(
        world
            .admin
            .stdout(&id)
            .await
            .ends_with("tick\nterminated\n")
    );
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_execute_concurrently_up_to_the_agents_limit() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    // Four 3-second runs: four containers exist at once only if the agent (default
    // concurrency 4) executes them side by side.
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            world
                .submit(&["sh", "-c", "echo up; sleep 3; echo done"])
                .await,
        );
    }
    sealrun_testkit::wait_for("four containers at once", || async {
        (sealrun_testkit::containers_of(&world.agent.id).len() == 4).then_some(())
    })
    .await;
    for id in &ids {
        let run = world.admin.wait_terminal(id).await;
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(world.admin.stdout(id).await, "up\ndone\n");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    world.assert_no_containers();
}
