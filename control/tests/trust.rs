//! `sealrun secret set` seals only to a target key an admin this machine
//! trusts certified: a control plane (or whoever edits its database) that
//! offers a key of its own, or a certificate of its own making, gets
//! nothing sealed. The edits are made with SQLite directly, on the running
//! server's database; the CLI is the real `sealrun` binary (run these with
//! the workspace, so that binary is current).
#![allow(clippy::unwrap_used)]

use rusqlite::{Connection, params};
use sealrun_testkit::{
    Cli, ControlPlane as _, FakeAgent, InProcessServer, quick_settings, text, trust_target,
    what_an_admin_checks,
};
use sealrun_vault::TargetKeypair;
use sealrun_wire::admin::{Role, TargetView};
use sealrun_wire::trust::{Signed, SignerKey, SigningKey, TargetCertificate};

/// A control plane with target `db` served (its key pinned) by a fake
/// agent, and an admin CLI.
async fn world() -> (InProcessServer, FakeAgent, Cli) {
    let server = InProcessServer::start_with(quick_settings()).await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let agent = FakeAgent::enroll(&server, &admin, "agent-1", &["db"]).await;
    let cli = server.cli(server.admin_token());
    (server, agent, cli)
}

fn set_secret(cli: &Cli, name: &str) -> std::process::Output {
    cli.output_with_stdin(
        &["secret", "set", "--target", "db", name],
        b"correct-horse-battery-staple\n",
    )
}

/// What the database says target `db`'s key and certificate are.
fn replace_key(server: &InProcessServer, key: &TargetKeypair, certificate: Option<String>) {
    let conn = Connection::open(server.db_path()).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.execute(
        "UPDATE targets SET public_key = ?1, key_id = ?2, certificate = COALESCE(?3, certificate) WHERE name = 'db'",
        params![key.public_key().to_base64(), key.key_id().0, certificate],
    )
    .unwrap();
}

#[tokio::test]
async fn secret_set_refuses_a_machine_that_trusts_no_admin_key() {
    let (_server, _agent, cli) = world().await;
    let out = set_secret(&cli, "PW");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no admin key is trusted on this machine"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn an_admin_certifies_the_pinned_key_from_the_cli_and_secret_set_then_seals() {
    let (server, _agent, cli) = world().await;
    let out = set_secret(&cli, "PW");
    assert!(!out.status.success(), "before any trust");
    let public = cli.ok(&["keys", "init", "--admin"]);
    assert!(public.starts_with("ed25519:"), "{public}");
    let listed = cli.ok(&["trust", "list"]);
    assert!(
        listed.contains(public.trim()),
        "its own key is trusted: {listed}"
    );
    let checked = what_an_admin_checks(&server, &server.admin(), "db").await;
    let key_id = checked.key_id.clone();
    let wrong = cli.output(&[
        "target",
        "trust",
        "db",
        "--key-id",
        "k1_00000000000000000000000000000000",
    ]);
    assert!(
        !wrong.status.success(),
        "a key id that is not the pinned one certifies nothing"
    );
    // Without a terminal, nothing is certified that was not checked: the
    // report key and the declaration too.
    let unseen = cli.output(&["target", "trust", "db", "--key-id", &key_id]);
    assert!(!unseen.status.success());
    assert!(
        text(&unseen.stderr).contains("--report-key"),
        "{}",
        text(&unseen.stderr)
    );
    cli.ok(&[
        "target",
        "trust",
        "db",
        "--key-id",
        &key_id,
        "--report-key",
        &checked.report_key,
        "-f",
        checked.file.to_str().unwrap(),
    ]);
    let out = set_secret(&cli, "PW");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("certified key"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_swapped_target_key_gets_nothing_sealed() {
    let (server, _agent, cli) = world().await;
    trust_target(&server, &server.admin(), "db").await;
    // Positive control: the certified key is sealed to.
    let out = set_secret(&cli, "PW");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The database now offers another key for the target.
    let swapped = TargetKeypair::generate();
    replace_key(&server, &swapped, None);
    let out = set_secret(&cli, "PW");
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!("offers key {}", swapped.key_id()))
            && said.contains("nothing was sealed"),
        "{said}"
    );
    let list = cli.json(&["secret", "list", "--target", "db"]);
    assert_eq!(list["secrets"][0]["version"], 1, "still version 1: {list}");
}

#[tokio::test]
async fn a_certificate_forged_by_a_key_this_machine_does_not_trust_gets_nothing_sealed() {
    let (server, _agent, cli) = world().await;
    trust_target(&server, &server.admin(), "db").await;
    let swapped = TargetKeypair::generate();
    let forger = SigningKey::generate();
    let view: TargetView = server.admin().get("/v1/targets/db").await.ok().parse();
    let cert = |signer: &SigningKey| {
        signer.sign(&TargetCertificate {
            org: "acme".into(),
            target: "db".into(),
            public_key: swapped.public_key().to_base64(),
            key_id: swapped.key_id().0,
            spec: view.spec.clone(),
            report_key: None,
            issued_at_ms: 0,
            expires_at_ms: i64::MAX,
        })
    };
    // Signed by the forger's own key.
    replace_key(
        &server,
        &swapped,
        Some(serde_json::to_string(&cert(&forger)).unwrap()),
    );
    let out = set_secret(&cli, "PW");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("which is not a trusted admin key here"),
        "{}",
        text(&out.stderr)
    );
    // Claiming the trusted admin as its signer.
    let admin_key = server.data_dir.join(sealrun_testkit::ADMIN_KEY_FILE);
    let trusted = cli.ok(&["keys", "show", "--key-file", admin_key.to_str().unwrap()]);
    let mut claimed = cert(&forger);
    claimed.signer = trusted.trim().to_owned();
    replace_key(
        &server,
        &swapped,
        Some(serde_json::to_string(&claimed).unwrap()),
    );
    let out = set_secret(&cli, "PW");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("signature does not verify"),
        "{}",
        text(&out.stderr)
    );
    let list = cli.json(&["secret", "list", "--target", "db"]);
    assert_eq!(
        list["secrets"].as_array().unwrap().len(),
        0,
        "nothing sealed: {list}"
    );
}

#[tokio::test]
async fn the_control_plane_stores_only_a_certificate_that_could_be_right() {
    let (server, agent, _cli) = world().await;
    let admin = server.admin();
    let key = SigningKey::generate();
    let pinned = &agent.keys[0].1;
    let view: TargetView = admin.get("/v1/targets/db").await.ok().parse();
    let cert = |target: &str, public: &TargetKeypair| TargetCertificate {
        org: "acme".into(),
        target: target.into(),
        public_key: public.public_key().to_base64(),
        key_id: public.key_id().0,
        spec: view.spec.clone(),
        report_key: None,
        issued_at_ms: 0,
        expires_at_ms: i64::MAX,
    };
    let put = |signed: Signed<TargetCertificate>| {
        let admin = admin.clone();
        async move {
            admin
                .put(
                    "/v1/targets/db/certificate",
                    serde_json::to_value(&signed).unwrap(),
                )
                .await
        }
    };
    // For a key the target is not pinned to: 409.
    let other = TargetKeypair::generate();
    assert_eq!(put(key.sign(&cert("db", &other))).await.status, 409);
    // For another target: 400.
    assert_eq!(put(key.sign(&cert("web", pinned))).await.status, 400);
    // For a declaration other than the target's now: 409.
    let mut stale = cert("db", pinned);
    stale.spec.timeout_secs += 1;
    assert_eq!(put(key.sign(&stale)).await.status, 409);
    // Whose signature does not verify: 400.
    let mut altered = key.sign(&cert("db", pinned));
    altered.payload = altered
        .payload
        .replace("\"expires_at_ms\":", "\"expires_at_ms\":1");
    assert_eq!(put(altered).await.status, 400);
    // By an operator: 403.
    let operator = admin
        .token("olive", sealrun_wire::admin::Role::Operator)
        .await;
    let refused = operator
        .put(
            "/v1/targets/db/certificate",
            serde_json::to_value(key.sign(&cert("db", pinned))).unwrap(),
        )
        .await;
    assert_eq!(refused.status, 403);
    // Positive control: the admin's certificate of the pinned key is stored.
    let stored: TargetView = put(key.sign(&cert("db", pinned))).await.ok().parse();
    let (certified, _) = stored.certificate.unwrap().open().unwrap();
    assert_eq!(certified.key_id, pinned.key_id().0);
}

/// An operator's CLI on their own machine (its own `HOME`: no trust file),
/// and the fingerprint of the admin key that certified target `db`.
async fn operator_machine(server: &InProcessServer, home: &std::path::Path) -> (Cli, String) {
    let admin = server.admin();
    trust_target(server, &admin, "db").await;
    let key = server.cli(server.admin_token()).ok(&[
        "keys",
        "show",
        "--key-file",
        server
            .data_dir()
            .join(sealrun_testkit::ADMIN_KEY_FILE)
            .to_str()
            .unwrap(),
    ]);
    let fingerprint = SignerKey::parse(key.trim()).unwrap().fingerprint();
    let olga = admin.token("olga", Role::Operator).await;
    let cli = Cli {
        home: home.to_owned(),
        ..server.cli(&olga.token)
    };
    (cli, fingerprint)
}

fn login(cli: &Cli, trust: &[&str]) -> std::process::Output {
    let ca = cli.ca_cert.to_str().unwrap().to_owned();
    let mut args = vec!["login", "--url", &cli.url, "--ca-cert", &ca];
    for t in trust {
        args.extend(["--trust-admin", t]);
    }
    cli.output(&args)
}

#[tokio::test]
async fn login_pins_the_admin_key_whose_fingerprint_was_checked_and_secret_set_then_seals() {
    let (server, _agent, _) = world().await;
    let home = tempfile::tempdir().unwrap();
    let (cli, fingerprint) = operator_machine(&server, home.path()).await;
    // Without the check, login pins nothing, says so, and nothing is sealed.
    let out = login(&cli, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("not pinned: admin key(s) {fingerprint}")),
        "{}",
        text(&out.stderr)
    );
    let refused = set_secret(&cli, "PW");
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("no admin key is trusted"));
    // With the fingerprint checked out of band: pinned, and secret set seals.
    let out = login(&cli, &[&fingerprint]);
    assert!(
        text(&out.stderr).contains(&format!("pinned admin key {fingerprint}")),
        "{}",
        text(&out.stderr)
    );
    let sealed = set_secret(&cli, "PW");
    assert!(sealed.status.success(), "{}", text(&sealed.stderr));
}

#[tokio::test]
async fn login_refuses_to_pin_a_fingerprint_no_certifier_of_the_org_has() {
    let (server, _agent, _) = world().await;
    let home = tempfile::tempdir().unwrap();
    let (cli, _) = operator_machine(&server, home.path()).await;
    let other = SigningKey::generate().public_key().fingerprint();
    let out = login(&cli, &[&other]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no admin key with this fingerprint"),
        "{}",
        text(&out.stderr)
    );
    assert!(!set_secret(&cli, "PW").status.success(), "nothing pinned");
}
