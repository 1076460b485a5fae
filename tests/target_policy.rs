//! What a target allows is decided when it is declared and enforced when a
//! run is submitted: the images a run may name (by default the target's own
//! only), and limits the container engine can honour. Against an in-process
//! control plane; the agent's own refusal before any pull is
//! `agent/tests/images.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use sealrun_testkit::{ControlPlane as _, InProcessServer, World, text, to_value};
use serde_json::json;

#[tokio::test]
async fn a_run_naming_an_image_its_target_does_not_allow_is_refused_403_naming_the_rule() {
    let world = World::in_process().await;
    for image in ["10.0.0.5:6379/x", "busybox", "sealrun/busybox:other"] {
        let mut request = world.request(&["true"]);
        request.image = Some(image.into());
        let message = world
            .admin
            .post("/v1/runs", to_value(&request))
            .await
            .error(StatusCode::FORBIDDEN);
        assert_eq!(
            message,
            format!(
                "image {image} is not allowed on target db: it allows sealrun/busybox:latest (an admin can add images to the target's allowed_images)"
            )
        );
    }
    // Positive control: the target's own image, however it is spelled.
    let mut request = world.request(&["true"]);
    request.image = Some("docker.io/sealrun/busybox".into());
    world.admin.submit_request(&request).await;
}

#[tokio::test]
async fn the_images_a_target_allows_are_accepted_and_the_agent_is_told_them() {
    let world = World::in_process().await;
    world
        .admin
        .put(
            "/v1/targets/db",
            json!({
                "name": "db",
                "image": sealrun_testkit::IMAGE,
                "allowed_images": ["registry.example.com/ops/*", "postgres:16"],
            }),
        )
        .await
        .ok();
    for image in ["registry.example.com/ops/psql:16", "postgres:16"] {
        let mut request = world.request(&["true"]);
        request.image = Some(image.into());
        let id = world.admin.submit_request(&request).await;
        let assignment = world.agent.next_run().await;
        assert_eq!(assignment.run_id, id);
        assert_eq!(assignment.image, image);
        assert_eq!(
            assignment.allowed_images,
            [
                sealrun_testkit::IMAGE,
                "registry.example.com/ops/*",
                "postgres:16"
            ]
        );
    }
    let mut request = world.request(&["true"]);
    request.image = Some("registry.example.com/opsx/psql".into());
    world
        .admin
        .post("/v1/runs", to_value(&request))
        .await
        .error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_allowed_images_entry_that_would_allow_anything_is_refused_at_declare() {
    let world = World::in_process().await;
    for (entry, reason) in [
        ("*", "there is no allow-everything entry"),
        ("ghcr.io/a*", "`*` is allowed only as a final `/*`"),
        ("Bad/Name", "lowercase"),
    ] {
        let message = world
            .admin
            .put(
                "/v1/targets/db",
                json!({"name": "db", "image": "x", "allowed_images": [entry]}),
            )
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            message.starts_with(&format!("allowed_images: invalid image {entry:?}"))
                && message.contains(reason),
            "{message}"
        );
    }
}

#[tokio::test]
async fn limits_the_engine_cannot_honour_are_refused_at_declare_naming_the_limit_and_range() {
    let server = InProcessServer::start().await;
    let admin = server.admin();
    for (limits, expected) in [
        (
            json!({"millicpus": 1_000_000}),
            "limits.millicpus 1000000 is out of range: the accepted range is 10 to 512000",
        ),
        (
            json!({"pids": u64::MAX}),
            "limits.pids 18446744073709551615 is out of range: the accepted range is 2 to 4194304",
        ),
        (
            json!({"memory_mb": 5}),
            "limits.memory_mb 5 is out of range: the accepted range is 6 to 4194304",
        ),
        (
            json!({"millicpus": 0}),
            "limits.millicpus 0 is out of range: the accepted range is 10 to 512000",
        ),
    ] {
        let message = admin
            .put(
                "/v1/targets/t",
                json!({"name": "t", "image": "x", "limits": limits}),
            )
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.starts_with(expected), "{message}");
    }
    // Positive control: the edges of every range are accepted.
    admin
        .put(
            "/v1/targets/t",
            json!({"name": "t", "image": "x",
                   "limits": {"memory_mb": 6, "millicpus": 512_000, "pids": 4_194_304}}),
        )
        .await
        .ok();

    // The same refusal through `sealrun target apply`, in one line.
    let cli = server.cli(server.admin_token());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.toml");
    std::fs::write(
        &file,
        "[[target]]\nname = \"big\"\nimage = \"x\"\n[target.limits]\nmillicpus = 1000000\n",
    )
    .unwrap();
    let out = cli.output(&["target", "apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "limits.millicpus 1000000 is out of range: the accepted range is 10 to 512000"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
