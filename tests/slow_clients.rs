//! Slow clients stall nothing, through the real binaries: a `sealrun
//! server` started with a low open-file limit (`prlimit --nofile=256:256`,
//! so it cannot raise it) is held by 500 idle and slow connections, and the
//! `sealrun` CLI still submits a run. The server fits its connection cap to
//! the limit, keeping a reserve for its database, and closes the
//! longest-idle connections to make room for ones that send requests: no
//! write fails for want of a file descriptor. (Each timeout and the `503`
//! of a saturated server: `api/tests/connections.rs`.)
#![allow(clippy::unwrap_used)]

use sealrun_testkit::stall::{Stall, Stalled};
use sealrun_testkit::{ControlPlane as _, ServerProcess, code, free_port, text};
use std::net::SocketAddr;

const METRICS_TOKEN: &str = "metrics-token-for-the-tests";

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_idle_or_slow_connections_do_not_stop_a_client_with_a_token() {
    let prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output();
    if !prlimit.is_ok_and(|o| o.status.success()) {
        sealrun_testkit::skip_or_fail("prlimit (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, METRICS_TOKEN).unwrap();
    let port = free_port();
    let server = ServerProcess::start_under(
        &dir.path().join("server"),
        port,
        &["prlimit", "--nofile=256:256", "--"],
        &["--metrics-token-file", token_file.to_str().unwrap()],
    )
    .await;
    let admin = server.admin();
    admin.declare_target("db").await;

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ca = server.ca_cert.clone();
    let held = tokio::task::spawn_blocking(move || {
        (0..500)
            .map(|i| Stalled::open(addr, &ca, Stall::ALL[i % Stall::ALL.len()]))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let opened = held.iter().filter(|c| c.is_ok()).count();
    assert_eq!(opened, 500, "every stalled client got a connection");

    let out = server
        .cli(&server.admin_token)
        .output(&["run", "--target", "db", "--detach", "--", "echo", "hi"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(admin.run(&id).await.target, "db");

    // The server fitted its cap to the limit and made room by closing idle
    // connections (the positive control that the limit was in force)...
    let metrics = server.client(METRICS_TOKEN).metrics().await;
    let value = |series: &str| metrics.value(series);
    let max = value("sealrun_connections_max{listener=\"api\"}");
    assert!(max < 256, "the cap is fitted to the open-file limit: {max}");
    // Of the 500, those sending a body without a token were answered 401
    // and closed at once; the rest outnumbered the cap.
    let evicted = value("sealrun_connections_evicted_total{listener=\"api\"}");
    assert!(
        evicted >= 500 - 500 / 6 - max,
        "{evicted} evicted:\n{metrics}"
    );
    // ...and no write or open failed for want of a descriptor.
    let log = server.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(
        log.contains("the open-file limit lowers the connection cap"),
        "{log}"
    );
    drop(held);
}
