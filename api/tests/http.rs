//! Bad requests get clear 4xx JSON errors; health answers. (Metrics:
//! `ops.rs`.)
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_api::Settings;
use sealrun_testkit::{ControlPlane as _, InProcessServer, World, quick_settings};
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_a_400_json_error() {
    let s = InProcessServer::start().await;
    let resp = s
        .http
        .post(format!("{}/v1/runs", s.url))
        .bearer_auth(&s.admin_token)
        .header("content-type", "application/json")
        .body("{\"target\": \"db\", \"argv\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_400_naming_the_problem() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let msg = admin
        .post("/v1/runs", json!({"target": "db"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("argv"), "{msg}");
    let msg = admin
        .post(
            "/v1/runs",
            json!({"target": "db", "argv": ["x"], "shell": true}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("shell"), "{msg}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let s = InProcessServer::start().await;
    let resp = s
        .http
        .post(format!("{}/v1/runs", s.url))
        .bearer_auth(&s.admin_token)
        .header("content-type", "text/plain")
        .body("target=db")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn an_oversize_body_is_a_413_json_error() {
    let s = InProcessServer::start_with(Settings {
        max_body_bytes: 64 * 1024,
        ..quick_settings()
    })
    .await;
    let big = "x".repeat(100 * 1024);
    let a = s
        .admin()
        .post("/v1/runs", json!({"target": "db", "argv": [big]}))
        .await;
    a.error(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_unknown_route_is_a_404_json_error_and_a_wrong_method_a_405() {
    let s = InProcessServer::start().await;
    let msg = s
        .admin()
        .get("/v1/nothing-here")
        .await
        .error(StatusCode::NOT_FOUND);
    assert!(msg.contains("/v1/nothing-here"));
    s.admin()
        .delete("/v1/runs")
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bad_query_parameters_are_400s() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    admin
        .get("/v1/runs?limit=lots")
        .await
        .error(StatusCode::BAD_REQUEST);
    admin
        .get("/v1/runs?status=sleeping")
        .await
        .error(StatusCode::BAD_REQUEST);
    admin
        .get("/v1/runs?colour=red")
        .await
        .error(StatusCode::BAD_REQUEST);
    admin
        .get("/v1/audit?after=-1")
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_agent_speaking_another_protocol_version_gets_a_426() {
    let w = World::in_process().await;
    let resp = w
        .server
        .http
        .post(format!("{}/v1/agent/poll", w.server.url))
        .bearer_auth(&w.agent.client.token)
        .header(sealrun_wire::PROTOCOL_VERSION_HEADER, "2")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("protocol"));
}

#[tokio::test]
async fn health_answers_without_a_token() {
    let s = InProcessServer::start().await;
    let a = s.anonymous().get("/health").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "ok"}));
}
