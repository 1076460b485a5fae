//! End to end through the real `sealrun server` and `sealrun agent` processes and
//! a real Docker engine: a run's secret reaches its command (through the
//! `sealrun-init` shim's stdin bundle) without Docker ever holding it, neither in
//! what `docker inspect` shows nor anywhere in its state directory on disk,
//! while the command runs.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{World, containers_of, require_docker};
use sealrun_wire::run::RunStatus;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The value and its standard base64 (`printf %s VALUE | base64`).
const SECRET: &str = "shim-e2e-s3cr3t-Qx7";
const SECRET_B64: &str = "c2hpbS1lMmUtczNjcjN0LVF4Nw==";
/// `printf %s VALUE | sha256sum`: how the command proves it saw the value
/// without the value appearing in its argv (which Docker does store).
const SECRET_SHA256: &str = "36263c53ad3c75fd09b3a90af8d505404697b99b06fec7ee12f225f111ca7c7a";
/// A plain variable's value: like the command, it reaches the shim in the
/// bundle, so it is not in Docker's state either.
const PLAIN: &str = "plain-marker-5f1c0e";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every regular file under `dir`, recursively (symlinks not followed).
fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// `<Docker root>/containers`, or `None` (after saying why) when this process
/// cannot read it; a failure when `SEALRUN_REQUIRE_DOCKER` is set (CI runs as
/// root and must check the disk).
fn docker_state_dir() -> Option<PathBuf> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.DockerRootDir}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker info failed");
    let root = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let dir = Path::new(if root.is_empty() {
        "/var/lib/docker"
    } else {
        &root
    })
    .join("containers");
    match std::fs::read_dir(&dir) {
        Ok(_) => Some(dir),
        Err(e) => {
            sealrun_testkit::skip_or_fail(&format!(
                "the disk half: {} is unreadable ({e}): run the tests as root",
                dir.display()
            ));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_commands_secret_is_in_neither_docker_inspect_nor_dockers_state_directory() {
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
        echo "sha: $(printf '%s' "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)"
        echo "plain: $PLAIN_VAR"
        trap 'echo done; exit 0' TERM
        echo ready
        while true; do sleep 0.1; done
    "#;
    let mut request = world.request(&["sh", "-c", script]);
    request.secrets = vec!["DB_PASSWORD".into()];
    request.env.insert("PLAIN_VAR".into(), PLAIN.into());
    let id = world.admin.submit_request(&request).await;
    world.admin.wait_output(&id, "ready").await;

    // The command is running (it waits to be canceled, however slow the
    // machine): look at its container now.
    let containers = containers_of(&world.agent.id);
    assert_eq!(containers.len(), 1, "{containers:?}");
    let inspect = Command::new("docker")
        .args(["inspect", &containers[0]])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let inspect = inspect.stdout;
    let shown: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
    let container = &shown[0];
    assert_eq!(container["State"]["Running"], true, "not running any more");
    let full_id = container["Id"].as_str().unwrap().to_owned();
    // Control: inspect does show the run's id (a label), and the waiting
    // shim as entrypoint.
    assert!(contains(&inspect, &id), "the control value is not shown");
    assert_eq!(
        container["Config"]["Entrypoint"],
        serde_json::json!(["/.sealrun/init", "--wait", "--idle-secs", "120"])
    );
    // Nothing about the run is in its configuration: neither the command
    // nor the plain variable, let alone the secret.
    for needle in [SECRET, SECRET_B64, PLAIN, "trap 'echo done"] {
        assert!(
            !contains(&inspect, needle),
            "docker inspect shows {needle:?}"
        );
    }

    if let Some(state) = docker_state_dir() {
        let mut all = Vec::new();
        files(&state, &mut all).unwrap();
        // Control: the running container's directory is there, and its
        // configuration holds the run's id, so the search reads what it must.
        let own = state.join(&full_id);
        let config = std::fs::read(own.join("config.v2.json")).unwrap();
        assert!(
            contains(&config, &id),
            "config.v2.json lacks the control value"
        );
        assert!(all.iter().any(|p| p.starts_with(&own)));
        for path in &all {
            // A file can vanish while we read (another test's container going away).
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            for needle in [SECRET, SECRET_B64, PLAIN] {
                assert!(
                    !contains(&bytes, needle),
                    "{} holds {needle:?}",
                    path.display()
                );
            }
        }
    }

    world.admin.cancel(&id).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!(
        (run.status, run.exit_code),
        (RunStatus::Canceled, Some(0)),
        "{run:?}"
    );
    assert_eq!(
        world.admin.stdout(&id).await,
        format!("raw: *** (end)\nsha: {SECRET_SHA256}\nplain: {PLAIN}\nready\ndone\n")
    );
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_reaches_the_command_through_the_shim_as_a_trappable_sigterm() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done";
    let id = world.submit(&["sh", "-c", script]).await;
    world.admin.wait_output(&id, "ready").await;
    world.admin.cancel(&id).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!((run.status, run.exit_code), (RunStatus::Canceled, Some(7)));
    assert_eq!(world.admin.stdout(&id).await, "ready\ngot-term\n");
    world.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_is_not_in_the_image_is_an_error_saying_so() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let id = world.submit(&["/no/such/tool", "--flag"]).await;
    let run = world.admin.wait_terminal(&id).await;
    assert_eq!((run.status, run.exit_code), (RunStatus::Error, Some(127)));
    let error = run.error.unwrap();
    assert!(
        error.contains("sealrun-init: error: cannot execute /no/such/tool"),
        "{error}"
    );
    world.assert_no_containers();
}
