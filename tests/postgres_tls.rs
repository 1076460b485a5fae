//! The control plane's connections to PostgreSQL over TLS, against a real
//! cluster that takes connections over TLS only (a private one, its
//! certificate signed by a CA of the test's own): with `sslmode=verify-full`
//! and that CA, replicas run on it; with another CA, or in the clear, a
//! server refuses to start, saying why in one line.
//!
//! Each test needs PostgreSQL's server binaries; each skips loudly without
//! them, and fails under `CI` / `SEALRUN_REQUIRE_POSTGRES`.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{ControlPlane, PrivateCluster, Replicas, sealrun_bin, unrelated_ca};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The cluster's URL with `query` (`sslmode=...`).
fn url_with(cluster: &PrivateCluster, query: &str) -> String {
    format!("{}?{query}", cluster.url_text)
}

/// `query` asking for TLS verified against the PEM file `ca`.
fn verified_by(ca: &Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", ca.display())
}

/// `sealrun server` on `url`, expected to fail at startup: its exit status
/// and what it said.
fn failed_start(dir: &Path, url: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(sealrun_bin())
        .args(["server", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--admin-token-file"])
        .arg(dir.join("admin.token"))
        .env("SEALRUN_DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that started would run until killed: give it long enough to
    // have refused, then stop it either way (no process left behind).
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_run_on_a_database_reached_over_tls_verified_against_its_ca() {
    let Some(cluster) = PrivateCluster::require_tls() else {
        return;
    };
    let ca = cluster.ca_cert.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let replicas =
        Replicas::start(dir.path(), &url_with(&cluster, &verified_by(&ca)), 2, &[]).await;
    // Written through one replica, read through the other: both hold
    // working connections (migrations, the writer, the readers).
    replicas.at(0).admin().declare_target("db").await;
    let seen = replicas.at(1).admin().get("/v1/targets/db").await;
    assert!(seen.status.is_success(), "{}", seen.text);
    assert!(seen.text.contains("\"db\""), "{}", seen.text);
    // And each hears the others: its hint channel (a connection of its
    // own, `LISTEN`) is open over the same TLS.
    for i in 0..2 {
        let opened = eventually(|| {
            replicas
                .at(i)
                .log()
                .contains("the replicas' hint channel is open")
        });
        assert!(opened, "replica {i}: {}", replicas.logs());
    }
    assert!(
        !replicas.logs().contains("hint channel was lost"),
        "{}",
        replicas.logs()
    );
}

/// Whether `holds` holds within ten seconds.
fn eventually(holds: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if holds() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_reaches_a_database_on_this_host_through_its_unix_socket() {
    // No TLS over a socket: the URL names none, and the driver is given a
    // connector it never uses.
    let Some(cluster) = PrivateCluster::require_tls() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let replicas = Replicas::start(dir.path(), &cluster.socket_url(), 1, &[]).await;
    replicas.at(0).admin().declare_target("db").await;
}

#[test]
fn a_server_refuses_a_database_whose_certificate_another_ca_signed() {
    let Some(cluster) = PrivateCluster::require_tls() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A valid CA, but not the one that signed this server's certificate.
    let other = dir.path().join("other-ca.pem");
    unrelated_ca(&other);
    let url = url_with(&cluster, &verified_by(&other));
    let (status, said) = failed_start(dir.path(), &url);
    assert!(!status.success(), "the server started: {said}");
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
    // (rustls names the cause: here `BadSignature`, the other CA bearing
    // the same name as this one.)
    assert!(said.contains("invalid peer certificate"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_refuses_a_database_whose_certificate_names_another_host() {
    let Some(cluster) = PrivateCluster::require_tls() else {
        return;
    };
    let ca = cluster.ca_cert.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The right server (reached at `hostaddr`), its certificate signed by
    // the right CA, but the URL names a host its certificate does not.
    let port = cluster.port();
    let url = format!(
        "postgres://sealrun@db.example:{port}/postgres?hostaddr=127.0.0.1&{}",
        verified_by(&ca)
    );
    let (status, said) = failed_start(dir.path(), &url);
    assert!(!status.success(), "the server started: {said}");
    assert!(
        said.contains("certificate not valid for name \"db.example\""),
        "{said}"
    );
    // Positive control: named as its certificate names it, it is reached.
    let url = format!(
        "postgres://sealrun@localhost:{port}/postgres?hostaddr=127.0.0.1&{}",
        verified_by(&ca)
    );
    let named = tempfile::tempdir().unwrap();
    let replicas = Replicas::start(named.path(), &url, 1, &[]).await;
    replicas.at(0).admin().declare_target("db").await;
}

#[test]
fn a_database_taking_tls_only_refuses_a_server_in_the_clear() {
    // The positive control of the first test: this cluster refuses every
    // connection in the clear, so the replicas there were on TLS.
    let Some(cluster) = PrivateCluster::require_tls() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (status, said) = failed_start(dir.path(), &url_with(&cluster, "sslmode=disable"));
    assert!(!status.success(), "the server started: {said}");
    assert!(said.contains("no encryption"), "{said}");
}

#[test]
fn a_url_that_would_fall_back_to_the_clear_unseen_is_refused() {
    // No database needed: the URL is refused as it is read.
    let dir = tempfile::tempdir().unwrap();
    for mode in ["prefer", "allow"] {
        let url = format!("postgres://sealrun:hunter2@127.0.0.1:1/postgres?sslmode={mode}");
        let (status, said) = failed_start(dir.path(), &url);
        assert!(!status.success(), "{mode}: the server started: {said}");
        assert!(
            said.contains(&format!("sslmode={mode} is refused")) && said.contains("verify-full"),
            "{said}"
        );
        assert!(!said.contains("hunter2"), "the password was shown: {said}");
    }
}
