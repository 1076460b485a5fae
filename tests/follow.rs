//! Following a run gives up on errors that cannot get better, and never on
//! its own when the reader goes away: through the real `sealrun` binary.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    ControlPlane, DevProcess, InProcessServer, code, quick_settings, require_docker, text,
};
use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The old follower retried a permanent error for about 51 s; "at once" is
/// anything far below that.
const AT_ONCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn following_an_unknown_run_ends_at_once_with_the_refused_code() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let cli = server.cli(server.admin_token());
    let started = Instant::now();
    let out = cli.output(&["runs", "logs", "run_0123456789abcdef", "--follow"]);
    assert!(started.elapsed() < AT_ONCE, "took {:?}", started.elapsed());
    let err = text(&out.stderr);
    assert_eq!(code(&out), 125, "{err}");
    assert!(err.contains("not found (404)"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn following_with_a_refused_token_ends_at_once() {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("idle").await;
    let id = admin
        .submit_request(&sealrun_testkit::run_request("idle", &["true"]))
        .await;
    let started = Instant::now();
    let out = server
        .cli("srt_0123456789abcdef_nope")
        .output(&["runs", "logs", &id, "--follow"]);
    assert!(started.elapsed() < AT_ONCE, "took {:?}", started.elapsed());
    let err = text(&out.stderr);
    assert_eq!(code(&out), 125, "{err}");
    assert!(err.contains("refused the token (401)"), "{err}");
    // Positive control: the admin's token follows the same run (it waits,
    // queued, so it is not expected to end here).
    let mut follower = server
        .cli(server.admin_token())
        .command(&["runs", "logs", &id, "--follow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "the admin's follower ended"
    );
    follower.kill().unwrap();
    follower.wait().unwrap();
}

#[test]
fn a_closed_reader_stops_following_quietly_and_the_run_goes_on() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let mut child = dev.cli.spawn(&[
        "run",
        "--target",
        "demo",
        "--",
        "sh",
        "-c",
        "while :; do echo y; done",
    ]);
    let mut first = [0u8; 4];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"y\ny\n");
    // The reader goes away, as `| head -2` does.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(code(&out), 141, "{err}");
    assert!(!err.to_lowercase().contains("broken pipe"), "{err}");
    let runs = dev.cli.json(&["runs", "list"]);
    assert_eq!(runs["runs"][0]["status"], "running", "{runs}");
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    dev.cli.ok(&["runs", "cancel", &id]);
    dev.cli.wait_status(&id, "canceled");
}
