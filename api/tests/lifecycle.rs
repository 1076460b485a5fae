//! Starting, restarting and stopping a control plane; offline org creation;
//! certificates.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_api::{Server, ServerConfig, Settings, TlsConfig};
use sealrun_testkit::{ControlPlane as _, InProcessServer, World, https_client, quick_settings};
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

fn config(dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token_file: Some(dir.join("admin.token")),
        settings: quick_settings(),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn the_first_start_writes_a_private_admin_token_and_a_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(config(dir.path())).await.unwrap();
    let token_file = dir.path().join("admin.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(token.starts_with("srt_"));
    let ca = std::fs::read(server.ca_cert_path().unwrap()).unwrap();
    let key_mode = std::fs::metadata(dir.path().join("data/tls/server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    drop(server);

    std::fs::remove_file(&token_file).unwrap();
    let again = Server::bind(config(dir.path())).await.unwrap();
    assert!(!token_file.exists(), "no second org, no second token");
    assert_eq!(
        std::fs::read(again.ca_cert_path().unwrap()).unwrap(),
        ca,
        "the same CA"
    );
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcessServer::start_config(config(dir.path())).await;
    let token = server.admin_token.clone();
    let put = server
        .admin()
        .put(
            "/v1/targets/db",
            serde_json::json!({"name": "db", "image": "x"}),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    server.stop().await;

    let server = InProcessServer::start_config(config(dir.path())).await;
    let got = server
        .http
        .get(format!(
            "{}/v1/targets/db",
            server.url.replace("localhost", "127.0.0.1")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn create_org_makes_an_independent_org_and_refuses_duplicates() {
    let s = InProcessServer::start().await;
    let b = s.create_org("umbrella");
    let me = b.get("/v1/whoami").await.ok().json();
    assert_eq!(me["org"], "umbrella");
    assert_eq!(me["role"], "admin");
    let err = sealrun_api::create_org(&s.data_dir, s.database.as_ref().map(|d| &d.url), "umbrella")
        .unwrap_err();
    assert!(matches!(err, sealrun_api::Error::OrgExists(_)), "{err}");
    let err = sealrun_api::create_org(&s.data_dir, s.database.as_ref().map(|d| &d.url), "no/slash")
        .unwrap_err();
    assert!(matches!(err, sealrun_api::Error::InvalidName(_)), "{err}");
    // Each org has its own chain, starting at 1.
    let audit = b.get("/v1/audit").await.ok().json();
    assert_eq!(audit["entries"][0]["seq"], 1);
    assert_eq!(audit["entries"][0]["action"], "org.created");
}

#[tokio::test]
async fn shutdown_answers_held_polls_and_ends_run_cleanly() {
    let w = World::in_process_with(Settings {
        poll_timeout: Duration::from_secs(60),
        ..quick_settings()
    })
    .await;
    let agent = w.agent;
    let poll = tokio::spawn(async move { agent.poll().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(10), w.server.stop())
        .await
        .expect("shutdown does not wait for the 60 s poll");
    let answer = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_none(), "the held poll was answered 204");
}

#[tokio::test]
async fn certificate_files_can_be_given_instead_of_generated() {
    let dir = tempfile::tempdir().unwrap();
    // Borrow a generated pair from a first server.
    drop(Server::bind(config(dir.path())).await.unwrap());
    let tls = dir.path().join("data/tls");
    let other = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        tls: TlsConfig::Files {
            cert: tls.join("server.pem"),
            key: tls.join("server.key"),
        },
        ..config(other.path())
    };
    let server = Server::bind(cfg).await.unwrap();
    assert!(server.ca_cert_path().is_none());
    let port = server.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let health = https_client(&tls.join("ca.pem"))
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    let bad = ServerConfig {
        tls: TlsConfig::Files {
            cert: tls.join("ca.key"),
            key: tls.join("server.key"),
        },
        ..config(other.path())
    };
    let err = Server::bind(bad).await.unwrap_err();
    assert!(matches!(err, sealrun_api::Error::Tls(_)), "{err}");
}

#[tokio::test]
async fn extra_host_names_reissue_the_server_certificate_under_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::bind(config(dir.path())).await.unwrap();
    let ca = std::fs::read(first.ca_cert_path().unwrap()).unwrap();
    let cert = std::fs::read(dir.path().join("data/tls/server.pem")).unwrap();
    drop(first);
    let cfg = ServerConfig {
        extra_hostnames: vec!["cp.internal".into()],
        ..config(dir.path())
    };
    let second = Server::bind(cfg).await.unwrap();
    assert_eq!(std::fs::read(second.ca_cert_path().unwrap()).unwrap(), ca);
    assert_ne!(
        std::fs::read(dir.path().join("data/tls/server.pem")).unwrap(),
        cert
    );
    // The new certificate chains to the pinned CA.
    let port = second.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(second.run(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("cp.internal", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let health = http
        .get(format!("https://cp.internal:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
