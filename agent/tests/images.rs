//! The image cannot steer the engine or the host: through the real executor
//! and Docker runtime, an image its target (or this agent) does not allow is
//! refused before anything is pulled, an image's `VOLUME` becomes a
//! size-limited `noexec` tmpfs instead of host disk, and its `HEALTHCHECK`
//! never runs. Images are built here from the local base image (itself
//! `FROM scratch` with the host's static busybox); nothing is pulled.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::runtime::{docker_runtime, in_image, job, run, start_until};
use sealrun_testkit::{containers_labeled, docker_cli, remove_container};
use sealrun_wire::run::RunStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A "registry" on a local port that counts the connections made to it.
async fn counting_registry() -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dialled = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&dialled);
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, dialled, task)
}

#[tokio::test]
async fn an_image_the_target_does_not_allow_is_refused_with_no_pull_attempted() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (port, dialled, registry) = counting_registry().await;
    let image = format!("127.0.0.1:{port}/internal/service:latest");

    // The target allows only its own image (the job's default).
    let mut j = job(&["true"]);
    j.assignment.image = image.clone();
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Error, "{finish:?}");
    let error = finish.error.unwrap();
    assert!(
        error.contains(&format!("image {image} is not allowed on target"))
            && error.contains("nothing was pulled"),
        "{error}"
    );
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        0,
        "the registry was dialled"
    );

    // The agent's own list refuses what the target allows.
    let mut j = in_image(job(&["true"]), &image);
    j.allowed_images = Some(vec![sealrun_testkit::IMAGE.to_owned()]);
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Error, "{finish:?}");
    let error = finish.error.unwrap();
    assert!(error.contains("by this agent's configuration"), "{error}");
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        0,
        "the registry was dialled"
    );

    // Positive control: once allowed, the engine does dial that address.
    let (finish, _) = run(&rt, in_image(job(&["true"]), &image)).await;
    assert_eq!(finish.status, RunStatus::Error, "{finish:?}");
    assert!(
        finish.error.unwrap().contains("image pull failed"),
        "the pull was not attempted"
    );
    assert!(
        dialled.load(Ordering::SeqCst) > 0,
        "the registry was not dialled"
    );
    registry.abort();
}

/// `FROM` the base image, with a `VOLUME` and a `HEALTHCHECK` whose probe
/// leaves a file in the volume each time it runs.
const STEERING_IMAGE: &str = "sealrun/steering-image:test";

/// Builds [`STEERING_IMAGE`] with the builder of the base image.
async fn build_steering_image() {
    let dockerfile = format!(
        "FROM {}\nVOLUME /data\n\
         HEALTHCHECK --interval=1s --timeout=1s --retries=1 \
         CMD [\"/bin/sh\", \"-c\", \"echo probe-output; touch /data/probe-ran\"]\n",
        sealrun_testkit::IMAGE
    );
    let docker = sealrun_agent::image::connect_local().await.unwrap();
    let context = sealrun_agent::image::build_context(&dockerfile, &[]).unwrap();
    sealrun_agent::image::build(&docker, STEERING_IMAGE, context)
        .await
        .unwrap();
}

/// A container of this test, removed (with its volumes) when dropped.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        remove_container(&self.0);
    }
}

/// `.State.Health` and `.Mounts` of a container, as JSON text.
fn health_and_mounts(container: &str) -> (String, String) {
    let out = docker_cli(&[
        "inspect",
        "--format",
        "{{json .State.Health}}\n{{json .Mounts}}",
        container,
    ]);
    let mut lines = out.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_volume_gives_no_writable_host_disk_and_its_healthcheck_stores_no_probe_output() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    build_steering_image().await;

    // Positive control: run as Docker would by default, the image's volume
    // is a Docker volume (host disk) and its probe runs and is stored.
    let control = docker_cli(&[
        "run",
        "-d",
        "--label",
        "sealrun.test=steering-control",
        STEERING_IMAGE,
        "sleep",
        "30",
    ])
    .trim()
    .to_owned();
    let _control = Removed(control.clone());

    let script = "grep ' /data ' /proc/mounts; \
        echo written > /data/f && echo data-writable; \
        cp /bin/busybox /data/bb && (/data/bb true && echo data-executable || echo data-not-executable); \
        echo ready; sleep 4; ls /data";
    let j = in_image(job(&["sh", "-c", script]), STEERING_IMAGE);
    let run_label = format!("sealrun.run={}", j.assignment.run_id);
    let (task, out, _) = start_until(&rt, j, "ready").await;
    let ours = containers_labeled(&run_label);
    assert_eq!(ours.len(), 1, "{ours:?}");
    let (health, mounts) = health_and_mounts(&ours[0]);
    assert_eq!(health, "null", "a healthcheck is configured: {health}");
    assert!(!mounts.contains("\"volume\""), "a Docker volume: {mounts}");
    let finish = task.await.unwrap();
    assert_eq!(finish.status, RunStatus::Succeeded, "{finish:?}");

    let stdout = out.stdout();
    let mut lines = stdout.lines();
    let mount = lines.next().unwrap();
    assert!(mount.starts_with("tmpfs /data tmpfs "), "{stdout}");
    let options: Vec<&str> = mount
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split(',')
        .collect();
    for wanted in ["noexec", "nosuid", "nodev", "size=65536k"] {
        assert!(options.contains(&wanted), "{wanted} missing: {mount}");
    }
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["data-writable", "data-not-executable", "ready", "bb", "f"],
        "{stdout}"
    );

    // The control's probe has run by now (1 s interval), its output kept.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (health, mounts) = health_and_mounts(&control);
    assert!(health.contains("probe-output"), "no probe output: {health}");
    assert!(mounts.contains("\"volume\""), "no Docker volume: {mounts}");
}
