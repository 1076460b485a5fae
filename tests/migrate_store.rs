//! `sealrun server migrate-store`: an installation moves from SQLite to
//! PostgreSQL with its runs, its people and its audit chain, which is
//! verified on the copy; the server then runs on PostgreSQL as before.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{ControlPlane as _, ServerProcess, require_postgres, run_request, to_value};
use sealrun_wire::audit::AuditVerification;
use sealrun_wire::run::{RunCreated, RunView};
use std::path::PathBuf;
use std::process::Command;

fn migrate(from: &std::path::Path, url: &str) -> std::process::Output {
    Command::new(sealrun_testkit::sealrun_bin())
        .args(["server", "migrate-store", "--from"])
        .arg(from)
        .env("SEALRUN_DATABASE_URL", url)
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_installation_moves_to_postgres_with_its_runs_and_a_verified_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let created: RunCreated = admin
        .post(
            "/v1/runs",
            to_value(&run_request("db", &["psql", "-c", "select 1"])),
        )
        .await
        .ok()
        .parse();
    let before: AuditVerification = admin.get("/v1/audit/verify").await.ok().parse();
    assert!(before.ok && before.entries > 0, "{before:?}");
    server.terminate();

    let moved = migrate(&data.join("sealrun.db"), &db.url_text);
    let out = String::from_utf8_lossy(&moved.stdout);
    let err = String::from_utf8_lossy(&moved.stderr);
    assert!(moved.status.success(), "{out}{err}");
    assert!(out.contains("1 audit chains verified"), "{out}");
    assert!(err.contains(&format!("head {}", before.head)), "{err}");
    // The password never shows.
    assert!(
        !format!("{out}{err}").contains("sealrun:sealrun@"),
        "{out}{err}"
    );

    // The same data directory (TLS, keys) on PostgreSQL: the same run, the
    // same chain, and the server goes on appending to it.
    std::fs::rename(data.join("sealrun.db"), dir.path().join("moved-away.db")).unwrap();
    let on_pg = ServerProcess::start_with_env(
        &data,
        sealrun_testkit::free_port(),
        &[],
        &[],
        vec![("SEALRUN_DATABASE_URL".into(), PathBuf::from(&db.url_text))],
    )
    .await;
    let admin = on_pg.client(&server.admin_token);
    let run: RunView = admin
        .get(&format!("/v1/runs/{}", created.id))
        .await
        .ok()
        .parse();
    assert_eq!(run.argv, ["psql", "-c", "select 1"]);
    admin.declare_target("db2").await;
    let after: AuditVerification = admin.get("/v1/audit/verify").await.ok().parse();
    assert!(after.ok, "{after:?}");
    assert!(after.entries > before.entries, "{after:?} {before:?}");
    assert!(
        !data.join("sealrun.db").exists(),
        "the server on PostgreSQL made a SQLite database"
    );
    drop(on_pg);
    drop(server);
    db.drop_database();
}

#[tokio::test]
async fn a_database_that_already_holds_an_installation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]).await;
    server.terminate();
    // Positive control: the first move succeeds.
    assert!(
        migrate(&data.join("sealrun.db"), &db.url_text)
            .status
            .success()
    );
    let again = migrate(&data.join("sealrun.db"), &db.url_text);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(err.contains("already holds an installation"), "{err}");
    drop(server);
    db.drop_database();
}
