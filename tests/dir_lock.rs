//! End to end: one process per directory. A second `sealrun dev`, `sealrun
//! server` or `sealrun agent` on a directory another one holds fails at once,
//! with one line naming the holder's pid and a non-zero exit, and leaves the
//! holder and its files untouched; a lock file left by a killed process does
//! not block the next start.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    ControlPlane as _, DevProcess, ServerProcess, World, free_port, init_binary, output_within,
    require_docker, sealrun_bin, text,
};
use sealrun_wire::run::RunStatus;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A refusal takes milliseconds; this only bounds a regression (a second
/// process that starts and keeps running).
const REFUSED_WITHIN: Duration = Duration::from_secs(20);

/// Every file under `dir` with its bytes, sorted, but for the database's
/// files, which the running holder writes at its own pace.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                pending.push(path);
            } else if !name.starts_with("sealrun.db") {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Asserts `out` is a failure that printed one line for a human, ending
/// in `message` (daemons may have logged JSON records before it).
fn assert_refused(out: &Output, message: &str) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "it should fail; stderr:\n{stderr}");
    let human: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
    assert_eq!(human.len(), 1, "one line for a human:\n{stderr}");
    assert!(
        human[0].starts_with("sealrun: ") && human[0].ends_with(message),
        "expected `sealrun: ...{message}`, got:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_one_data_dir_fails_naming_the_first_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = ServerProcess::start(&data, &[]).await;
    let before = files(&data);
    let second_token = dir.path().join("second.token");

    let out = output_within(
        "a second sealrun server",
        Command::new(sealrun_bin())
            .args(["server", "--data-dir"])
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--admin-token-file")
            .arg(&second_token),
        REFUSED_WITHIN,
    );

    assert_refused(
        &out,
        &format!(
            "data directory {} is in use by sealrun server (pid {}); stop it first or use another data directory",
            data.display(),
            first.pid()
        ),
    );
    assert!(!second_token.exists(), "no admin token written");
    // The TLS material, the admin token, the Slack key and the lock record.
    assert_eq!(files(&data), before, "no file of the first server changed");
    let whoami = first.cli(first.admin_token()).ok(&["whoami"]);
    assert!(
        whoami.contains("role: admin"),
        "the first answers: {whoami}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_file_left_by_a_killed_server_does_not_block_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]).await;
    let killed = server.pid();

    server.kill();
    let lock = data.join(sealrun_dirlock::LOCK_FILE);
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        format!("{killed} sealrun server\n"),
        "the killed server's record is left behind"
    );
    server.restart().await;

    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        format!("{} sealrun server\n", server.pid()),
        "the new holder's record replaces it"
    );
    let whoami = server.cli(server.admin_token()).ok(&["whoami"]);
    assert!(whoami.contains("role: admin"), "it answers: {whoami}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_agent_on_one_state_dir_fails_naming_the_first_which_keeps_running() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let state = world.agent.state_dir.clone();
    let before = files(&state);

    let out = output_within(
        "a second sealrun agent",
        Command::new(sealrun_bin())
            .args(["agent", "--url", &world.server.url, "--ca-cert"])
            .arg(&world.server.ca_cert)
            .arg("--state-dir")
            .arg(&state)
            .args(["--name", "intruder", "--target", &world.target])
            .arg("--init-binary")
            .arg(init_binary()),
        REFUSED_WITHIN,
    );

    assert_refused(
        &out,
        &format!(
            "state directory {} is in use by sealrun agent (pid {}); stop it first or use another state directory",
            state.display(),
            world.agent.pid()
        ),
    );
    // Its identity, its keys and the lock record.
    assert_eq!(files(&state), before, "no file of the first agent changed");
    let id = world.submit(&["echo", "still serving"]).await;
    assert_eq!(
        world.admin.wait_terminal(&id).await.status,
        RunStatus::Succeeded
    );
    assert_eq!(world.admin.stdout(&id).await, "still serving\n");
    world.assert_no_containers();
}

#[test]
fn a_second_dev_on_one_data_dir_fails_naming_the_first_and_leaves_it_untouched() {
    if !require_docker() {
        return;
    }
    let first = DevProcess::start();
    let data = first.data_dir();
    let before = files(&data);

    let out = output_within(
        "a second sealrun dev",
        Command::new(sealrun_bin())
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("HOME", first.dir.path())
            .env("SEALRUN_AGENT_INIT", init_binary()),
        REFUSED_WITHIN,
    );

    assert_refused(
        &out,
        &format!(
            "data directory {} is in use by sealrun dev (pid {}); stop it first or use another data directory",
            std::fs::canonicalize(&data).unwrap().display(),
            first.pid()
        ),
    );
    // dev.env, the admin token, the CA, the agent's identity and keys, the
    // three lock records.
    assert_eq!(files(&data), before, "no file of the first dev changed");
    let whoami = first.cli.ok(&["whoami"]);
    assert!(
        whoami.contains("role: admin"),
        "the first answers: {whoami}"
    );
}
