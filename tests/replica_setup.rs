//! Setting up replicas of one control plane on PostgreSQL, as the README's
//! "PostgreSQL and several replicas" tells an operator to: the files they
//! share made once (`sealrun server replica-files`), and the offline
//! commands reading the server's own config file.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{ControlPlane as _, ServerProcess, require_postgres, sealrun_bin};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `sealrun server replica-files --out dir` with `--hostname` each of `names`.
fn replica_files(dir: &Path, names: &[&str]) {
    let mut command = Command::new(sealrun_bin());
    command.args(["server", "replica-files", "--out"]).arg(dir);
    for name in names {
        command.args(["--hostname", name]);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn replica_files_made_once_serve_two_replicas_that_clients_reach_pinning_one_ca() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let shared = dir.path().join("shared");
    replica_files(&shared, &["lb"]);
    let cert = shared.join("server.pem");
    let key = shared.join("server.key");
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let env = || vec![("SEALRUN_DATABASE_URL".into(), PathBuf::from(&db.url_text))];
    let mut replicas = Vec::new();
    for i in 0..2 {
        let data = dir.path().join(format!("replica-{i}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(shared.join("slack.key"), data.join("slack.key")).unwrap();
        if i > 0 {
            // The org's first admin token was printed by the first replica.
            std::fs::copy(
                dir.path().join("replica-0/admin.token"),
                data.join("admin.token"),
            )
            .unwrap();
        }
        // Started, it answers /health to a client pinning the one CA.
        replicas
            .push(ServerProcess::start_pinned(&data, &tls, env(), &shared.join("ca.pem")).await);
    }
    // One org, one database: a target declared through one is seen through
    // the other, and each kept the Slack key it was given.
    replicas[0].admin().declare_target("db").await;
    replicas[1].admin().get("/v1/targets/db").await.ok();
    for i in 0..2 {
        assert_eq!(
            read(dir.path().join(format!("replica-{i}/slack.key"))),
            read(shared.join("slack.key"))
        );
        assert!(
            !dir.path().join(format!("replica-{i}/tls")).exists(),
            "replica {i} made a certificate of its own"
        );
    }
    drop(replicas);
    db.drop_database();
}

#[test]
fn replica_files_made_again_keep_the_ca_and_slack_key_and_reissue_only_for_new_names() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    replica_files(&shared, &["lb"]);
    let first = |name: &str| read(shared.join(name));
    let (ca, ca_key, slack, cert) = (
        first("ca.pem"),
        first("ca.key"),
        first("slack.key"),
        first("server.pem"),
    );
    for key in ["ca.key", "server.key", "slack.key"] {
        assert_eq!(mode(&shared.join(key)), 0o600, "{key}");
    }
    // The same names: nothing changes.
    replica_files(&shared, &["lb"]);
    assert_eq!(first("server.pem"), cert);
    // A temporary file a crash left, readable by all, lends its mode to no
    // key written after it.
    std::fs::write(shared.join("server.tmp"), b"left").unwrap();
    std::fs::set_permissions(
        shared.join("server.tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    // A new name: a new certificate from the same CA (clients pinned it);
    // the Slack key (secrets are sealed to it) is kept.
    replica_files(&shared, &["lb", "sealrun.example.com"]);
    assert_ne!(first("server.pem"), cert, "no certificate for the new name");
    assert_eq!(first("ca.pem"), ca);
    assert_eq!(first("ca.key"), ca_key);
    assert_eq!(first("slack.key"), slack);
    assert_eq!(mode(&shared.join("server.key")), 0o600);
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn create_org_takes_the_database_from_the_server_s_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = require_postgres(&dir.path().join("pg")) else {
        return;
    };
    let data = dir.path().join("data");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ndatabase_url = {:?}\n",
            data.display().to_string(),
            db.url_text
        ),
    )
    .unwrap();
    let made = Command::new(sealrun_bin())
        .args(["server", "create-org", "--config"])
        .arg(&config)
        .arg("acme")
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(
        !data.join("sealrun.db").exists(),
        "the org went to a SQLite database in the data directory"
    );
    // The server started with that config serves the org (and, finding one,
    // makes no first org nor token of its own: the kit reads acme's).
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("admin.token"), &token).unwrap();
    let server = ServerProcess::start(&data, &["--config", config.to_str().unwrap()]).await;
    let whoami = server.client(&token).get("/v1/whoami").await;
    assert!(whoami.ok().text.contains("\"acme\""), "{}", whoami.text);
    drop(server);
    db.drop_database();
}
