//! `sealrun server migrate-store`: an installation moves from SQLite to
//! PostgreSQL with its runs, its people and its audit chain, which is
//! verified on the copy; the server then runs on PostgreSQL as before.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    ControlPlane as _, ServerProcess, free_port, output_within, require_postgres, run_request,
    to_value,
};
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

/// A URL no database answers at: the source is checked before anything
/// connects, so these refusals need no PostgreSQL.
const NOWHERE: &str = "postgres://sealrun:sealrun@127.0.0.1:1/nowhere";

/// `sealrun server` on `data` and the database at `url`, expected to refuse
/// to start: what it said (a server that started fails the test).
fn refused_start(data: &std::path::Path, url: &str) -> String {
    let mut command = Command::new(sealrun_testkit::sealrun_bin());
    command
        .args(["server", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("SEALRUN_DATABASE_URL", url);
    let refused = output_within(
        &format!("a server on {}", data.display()),
        &mut command,
        std::time::Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "{err}");
    err
}

fn refusal(moved: &std::process::Output) -> String {
    assert!(!moved.status.success(), "{moved:?}");
    let err = String::from_utf8_lossy(&moved.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn a_path_that_does_not_exist_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("sealrun.bd");
    let err = refusal(&migrate(&typo, NOWHERE));
    assert!(
        err.contains("is not a sealrun installation: no such file"),
        "{err}"
    );
    assert!(!typo.exists(), "the mistyped path was created");
}

/// (Another program's SQLite database is left alone too: `store::copy`'s
/// unit tests, where SQLite is at hand.)
#[test]
fn an_empty_file_is_refused_and_left_unchanged_with_no_lock_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = refusal(&migrate(&empty, NOWHERE));
    assert!(err.contains("no sealrun schema in it"), "{err}");
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "the file changed"
    );
    assert!(
        !dir.path().join("sealrun.lock").exists(),
        "a lock file was left beside it"
    );
}

#[tokio::test]
async fn a_data_directory_a_server_is_using_is_refused_then_moves_once_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]).await;
    // The directory itself names its database, as the file does.
    let err = refusal(&migrate(&data, NOWHERE));
    assert!(
        err.contains(&format!("in use by sealrun server (pid {})", server.pid())),
        "{err}"
    );
    server.terminate();
    // Positive control: stopped, the same directory gets as far as the
    // database (which the nowhere URL then refuses).
    let err = refusal(&migrate(&data, NOWHERE));
    assert!(
        !err.contains("in use") && err.contains("127.0.0.1:1/nowhere"),
        "{err}"
    );
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let moved = migrate(&data, &db.url_text);
    let out = String::from_utf8_lossy(&moved.stdout);
    assert!(moved.status.success(), "{moved:?}");
    assert!(
        out.contains(&format!("moved {}", data.join("sealrun.db").display())),
        "{out}"
    );
    drop(server);
    db.drop_database();
}

#[tokio::test]
async fn a_server_pointed_at_an_empty_database_beside_its_unmoved_installation_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    server.terminate();

    let err = refused_start(&data, &db.url_text);
    assert!(
        err.contains("the PostgreSQL database is empty: move it there first")
            && err.contains(&format!("migrate-store --from {}", data.display())),
        "{err}"
    );
    assert!(!err.contains("admin token"), "a new org was made: {err}");

    // Positive control: moved, the same command starts, on the same org
    // (its target is there), the SQLite file left beside it unused.
    assert!(migrate(&data, &db.url_text).status.success());
    let on_pg = ServerProcess::start_with_env(
        &data,
        free_port(),
        &[],
        &[],
        vec![("SEALRUN_DATABASE_URL".into(), PathBuf::from(&db.url_text))],
    )
    .await;
    let admin = on_pg.client(&server.admin_token);
    admin.get("/v1/targets/db").await.ok();
    drop(on_pg);
    drop(server);
    db.drop_database();
}

#[tokio::test]
async fn a_server_beside_an_installation_the_database_does_not_hold_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let env = || vec![("SEALRUN_DATABASE_URL".into(), PathBuf::from(&db.url_text))];
    // An installation on SQLite, never moved...
    let unmoved = dir.path().join("unmoved");
    let mut server = ServerProcess::start(&unmoved, &[]).await;
    server.terminate();
    // ...while another replica, its data directory empty, started one
    // afresh in the database.
    let fresh =
        ServerProcess::start_with_env(&dir.path().join("fresh"), free_port(), &[], &[], env())
            .await;
    drop(fresh);
    let err = refused_start(&unmoved, &db.url_text);
    assert!(
        err.contains("holds an installation the PostgreSQL database does not"),
        "{err}"
    );
    // (Positive control: beside the installation the database does hold,
    // moved there, a server starts: the test of the unmoved installation
    // above, after its move.)
    drop(server);
    db.drop_database();
}
