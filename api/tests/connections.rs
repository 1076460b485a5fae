//! Slow clients stall nothing: every phase of a connection has a timeout
//! (TLS handshake, headers, keep-alive idleness, a request's body), idle
//! and slow connections make room for clients that send requests, and a
//! server whose every connection is busy answers `503` with `Retry-After`
//! instead of failing. Run input is the one body that may pause for long.
//! (Through a real `sealrun server` with a lowered open-file limit:
//! `tests/slow_clients.rs`.)
#![allow(clippy::unwrap_used)]

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use sealrun_api::{ConnectionLimits, ServerConfig};
use sealrun_testkit::stall::{Stall, Stalled};
use sealrun_testkit::{ControlPlane as _, InProcessServer, quick_settings};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// Every timeout one second: long enough for a healthy client on loopback,
/// short enough to wait for.
fn short_limits() -> ConnectionLimits {
    ConnectionLimits {
        tls_handshake_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    }
}

async fn server(limits: ConnectionLimits) -> (tempfile::TempDir, InProcessServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcessServer::start_config(ServerConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        org_name: "acme".into(),
        admin_token_file: Some(dir.path().join("admin.token")),
        settings: quick_settings(),
        connections: limits,
        ..ServerConfig::default()
    })
    .await;
    (dir, server)
}

fn addr(server: &InProcessServer) -> SocketAddr {
    let port = server.url.rsplit(':').next().unwrap().parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Opens a stalled connection (on a blocking thread).
async fn stall(server: &InProcessServer, how: Stall) -> Stalled {
    let (addr, ca) = (addr(server), server.ca_cert.clone());
    tokio::task::spawn_blocking(move || Stalled::open(addr, &ca, how))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot open a {how:?} connection: {e}"))
}

/// Whether (and with what answer) the server closes `conn` within `within`.
async fn closed_within(mut conn: Stalled, within: Duration) -> Option<String> {
    tokio::task::spawn_blocking(move || conn.closed_within(within))
        .await
        .unwrap()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_client_silent_or_stopped_mid_handshake_is_cut_at_the_handshake_timeout() {
    let (_dir, s) = server(short_limits()).await;
    for how in [Stall::Silent, Stall::HalfHandshake] {
        let conn = stall(&s, how).await;
        assert!(
            closed_within(conn, Duration::from_secs(5)).await.is_some(),
            "{how:?} still open"
        );
    }
}

#[tokio::test]
async fn a_client_idle_before_its_request_or_slow_with_its_headers_is_cut() {
    let (_dir, s) = server(short_limits()).await;
    for how in [Stall::Handshaken, Stall::HalfHeaders] {
        let conn = stall(&s, how).await;
        assert!(
            closed_within(conn, Duration::from_secs(5)).await.is_some(),
            "{how:?} still open"
        );
    }
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_once_idle_for_the_idle_timeout() {
    let (_dir, s) = server(short_limits()).await;
    let conn = stall(&s, Stall::KeepAlive).await;
    let answer = closed_within(conn, Duration::from_secs(5))
        .await
        .expect("closed after its idle time");
    // Positive control: the request itself was answered first.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn the_timeouts_leave_a_connection_alone_within_them() {
    let mut limits = short_limits();
    limits.tls_handshake_timeout = Duration::from_secs(10);
    limits.idle_timeout = Duration::from_secs(10);
    let (_dir, s) = server(limits).await;
    for how in [Stall::Silent, Stall::HalfHeaders] {
        let conn = stall(&s, how).await;
        assert!(
            closed_within(conn, Duration::from_secs(2)).await.is_none(),
            "{how:?} closed before its timeout"
        );
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_its_connection_closed() {
    let (_dir, s) = server(short_limits()).await;
    // The Slack route reads its body before anything else (the signature
    // covers it): what an anonymous client could otherwise hold forever.
    let conn = stall(&s, Stall::HalfBody("/v1/integrations/slack/commands")).await;
    let answer = closed_within(conn, Duration::from_secs(5))
        .await
        .expect("closed after the body timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#""error":"the request body did not arrive within 1 s""#),
        "{answer}"
    );
}

/// A body that sends `first`, pauses for `pause`, then sends `rest`.
fn paused_body(first: &'static str, pause: Duration, rest: &'static str) -> reqwest::Body {
    let chunks =
        futures_util::stream::iter([first, rest])
            .enumerate()
            .then(move |(i, chunk)| async move {
                if i == 1 {
                    tokio::time::sleep(pause).await;
                }
                Ok::<_, std::io::Error>(chunk)
            });
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test]
async fn run_input_may_pause_longer_than_the_body_timeout() {
    let (_dir, s) = server(short_limits()).await;
    let admin = s.admin();
    admin.declare_target("db").await;
    let mut request = sealrun_testkit::run_request("db", &["cat"]);
    request.stdin = true;
    let run = admin.submit_request(&request).await;
    let sent = admin
        .put_body(
            &format!("/v1/runs/{run}/stdin"),
            paused_body("hello ", Duration::from_secs(3), "world"),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    assert_eq!(sent.json()["bytes"], json!(11));
    // Positive control: the same pause in another request's body is cut.
    let submitted = s
        .http
        .post(format!("{}/v1/runs", s.url))
        .bearer_auth(&s.admin_token)
        .header("content-type", "application/json")
        .body(paused_body(
            r#"{"target": "db", "#,
            Duration::from_secs(3),
            r#""argv": ["true"]}"#,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn idle_and_slow_connections_make_room_for_a_client_with_a_request() {
    let limits = ConnectionLimits {
        max_connections: 20,
        ..ConnectionLimits::default()
    };
    let (_dir, s) = server(limits).await;
    let (addr, ca) = (addr(&s), s.ca_cert.clone());
    // Five times the cap, of every kind, held open.
    let held = tokio::task::spawn_blocking(move || {
        (0..100)
            .map(|i| Stalled::open(addr, &ca, Stall::ALL[i % Stall::ALL.len()]))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        held.iter().all(Result::is_ok),
        "every stalled client connected"
    );
    let me = s.admin().get("/v1/whoami").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    let submitted = s.admin().post("/v1/pools", json!({"name": "eu"})).await;
    assert_eq!(submitted.status, StatusCode::CREATED, "{}", submitted.text);
    drop(held);
}

#[tokio::test]
async fn with_every_connection_busy_a_newcomer_is_answered_503_with_retry_after() {
    let limits = ConnectionLimits {
        max_connections: 8,
        retry_after: Duration::from_secs(7),
        ..ConnectionLimits::default()
    };
    let (_dir, s) = server(limits).await;
    let admin = s.admin();
    admin.declare_target("db").await;
    let run = admin.submit("db", &["true"], &[]).await;
    // Eight followed streams of a queued run: eight busy connections.
    let mut streams = Vec::new();
    for _ in 0..8 {
        let stream = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&s.ca_cert).unwrap()).unwrap(),
            )
            .build()
            .unwrap()
            .get(format!("{}/v1/runs/{run}/logs?follow=true", s.url))
            .bearer_auth(&s.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        streams.push(stream);
    }
    let refused = sealrun_testkit::https_client(&s.ca_cert)
        .get(format!("{}/v1/whoami", s.url))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "7");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("connection limit"),
        "{body}"
    );
    // Positive control: once a stream ends, a newcomer is served.
    streams.pop();
    sealrun_testkit::wait_for("a connection to be served again", || async {
        let me = sealrun_testkit::https_client(&s.ca_cert)
            .get(format!("{}/v1/whoami", s.url))
            .bearer_auth(&s.admin_token)
            .send()
            .await
            .ok()?;
        (me.status() == StatusCode::OK).then_some(())
    })
    .await;
}
