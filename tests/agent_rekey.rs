//! Moving a target to a new agent key (`sealrun target rekey`), through the
//! real binaries: the README's rotation recipe end to end (an old agent
//! serves the target; a new agent with its own state directory is refused
//! with the command to run; an admin re-keys; the new agent serves the
//! target and the old one gets none of its runs), and, against an
//! in-process control plane driven by the CLI, what a re-key allows,
//! refuses and deletes.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{
    AgentProcess, ControlPlane, FakeAgent, InProcessServer, World, code, output_within,
    require_docker, sealrun_bin, text, trust_target,
};
use sealrun_vault::TargetKeypair;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `sealrun agent --print-key-ids` for `target` with `state_dir`: the key id
/// it prints (creating the key if missing).
fn print_key_id(state_dir: &Path, target: &str) -> String {
    let out = Command::new(sealrun_bin())
        .args(["agent", "--state-dir"])
        .arg(state_dir)
        .args(["--target", target, "--print-key-ids"])
        .env_remove("SEALRUN_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{target} ")))
        .unwrap_or_else(|| panic!("no row for {target}: {stdout}"));
    row.split_whitespace().nth(1).unwrap().to_owned()
}

/// The audit entries with `action`, oldest first, details as JSON.
fn audit_entries(cli: &sealrun_testkit::Cli, action: &str) -> Vec<Value> {
    let page = cli.json(&["audit", "list", "--limit", "1000"]);
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// Who ran run `id` (its agent's name or id), once it ended.
fn ran_by(cli: &sealrun_testkit::Cli, id: &str) -> String {
    let run = cli.wait_status(id, "succeeded");
    run["agent"].as_str().unwrap().to_owned()
}

/// `sealrun run --detach` of `argv` on `target`: the run's id.
fn submit(cli: &sealrun_testkit::Cli, target: &str, argv: &[&str]) -> String {
    let mut args = vec!["run", "--detach", "--target", target, "--"];
    args.extend_from_slice(argv);
    cli.ok(&args).trim().to_owned()
}

/// The key id of the key file of `target` in `state_dir`, read directly
/// (a running agent locks its state directory, so `--print-key-ids` would
/// be refused there).
fn key_id_in(state_dir: &Path, target: &str) -> String {
    let path = state_dir.join("keys").join(format!("{target}.key"));
    TargetKeypair::load(&path).unwrap().key_id().0
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rotation_recipe_moves_a_target_to_a_new_agents_key() {
    if !require_docker() {
        return;
    }
    let mut world = World::spawned().await;
    let target = world.target.clone();
    let target = target.as_str();
    let cli = world.server.cli(&world.server.admin_token);
    // Before: the old agent serves the target.
    let id = submit(&cli, target, &["echo", "old"]);
    let by = ran_by(&cli, &id);
    assert!(
        by == world.agent.name || by == world.agent.id,
        "ran by {by}"
    );

    // A new agent with its own state directory has a new key: printed on its
    // host before it ever starts...
    let new_dir = world.dir.path().join("new-agent");
    let new_key = print_key_id(&new_dir, target);
    let old_key = key_id_in(&world.agent.state_dir, target);
    assert_ne!(new_key, old_key);
    // ...and refused when it starts, with the command that would accept it.
    let enrollment = world.admin.enrollment_token("default").await;
    let shim = sealrun_testkit::init_binary().display().to_string();
    let mut start = Command::new(sealrun_bin());
    start
        .args(["agent", "--url", &world.server.url, "--ca-cert"])
        .arg(&world.server.ca_cert)
        .arg("--state-dir")
        .arg(&new_dir)
        .args(["--name", "new-agent", "--target", target])
        .args(["--enrollment-token", &enrollment, "--init-binary", &shim]);
    let refused = output_within("the refused agent", &mut start, Duration::from_secs(30));
    let stderr = text(&refused.stderr);
    assert_ne!(code(&refused), 0, "{stderr}");
    assert!(
        stderr.contains(&format!("this agent presented key {new_key}"))
            && stderr.contains(&format!(
                "`sealrun target rekey {target} --key-id {new_key}`"
            )),
        "{stderr}"
    );
    let mismatch = audit_entries(&cli, "target.key_mismatch");
    assert_eq!(
        mismatch.last().unwrap()["detail"]["presented_key_id"],
        new_key.as_str()
    );

    // The admin runs the command the refusal named.
    let out = cli.output(&["target", "rekey", target, "--key-id", &new_key]);
    let said = text(&out.stderr);
    assert_eq!(code(&out), 0, "{said}");
    assert!(said.contains(&world.agent.id), "{said}");

    // The refusal came before enrollment: nothing of the single-use
    // enrollment token was used, and the agent is not listed.
    let listed = cli.json(&["agents", "list"]);
    assert!(
        !listed.to_string().contains("new-agent"),
        "a refused agent is not enrolled: {listed}"
    );
    // The new agent starts again with the same token and pins its key.
    let mut new_agent = AgentProcess::start(
        &world.server,
        &new_dir,
        "new-agent",
        &[target],
        Some(&enrollment),
        &[],
    )
    .await;
    new_agent.wait_connected(&world.admin, &[target]).await;
    let shown = cli.json(&["target", "show", target]);
    assert_eq!(shown["public_key"]["key_id"], new_key.as_str(), "{shown}");

    // Every run of the target now goes to the new agent, although the old
    // one is still connected and polling.
    for i in 0..3 {
        let id = submit(&cli, target, &["echo", &format!("new-{i}")]);
        let by = ran_by(&cli, &id);
        assert!(
            by == "new-agent" || by == new_agent.id,
            "run {i} ran by {by}"
        );
        let logs = cli.ok(&["runs", "logs", &id]);
        assert_eq!(logs, format!("new-{i}\n"));
    }
    world.agent.assert_alive();
    let agents = cli.json(&["agents", "list"]);
    let old = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == world.agent.id.as_str())
        .unwrap();
    assert_eq!(old["targets"], serde_json::json!([]), "{agents}");

    let rekeyed = audit_entries(&cli, "target.rekeyed");
    assert_eq!(rekeyed.len(), 1, "{rekeyed:?}");
    let detail = &rekeyed[0]["detail"];
    assert_eq!(rekeyed[0]["subject"], target);
    assert_eq!(detail["new_key_id"], new_key.as_str());
    assert_eq!(detail["old_key_id"], old_key.as_str());
    drop(new_agent);
    world.assert_no_containers();
}

/// A control plane with target `db` served by agent `old` (its key pinned),
/// and the admin's CLI.
async fn served_db() -> (InProcessServer, FakeAgent, sealrun_testkit::Cli) {
    let server = InProcessServer::start().await;
    let admin = server.admin();
    admin.declare_target("db").await;
    let old = FakeAgent::enroll(&server, &admin, "old", &["db"]).await;
    // The admin trusts its own key and certified db's: `secret set` seals.
    trust_target(&server, &admin, "db").await;
    let cli = server.cli(server.admin_token());
    (server, old, cli)
}

/// The target's pinned key id, if any, and the key id it awaits, if any.
fn keys_of(cli: &sealrun_testkit::Cli, target: &str) -> (Value, Value) {
    let view = cli.json(&["target", "show", target]);
    (
        view["public_key"]["key_id"].clone(),
        view["awaiting_key_id"].clone(),
    )
}

#[tokio::test]
async fn an_operator_cannot_rekey_a_target() {
    let (_server, old, cli) = served_db().await;
    let pinned = old.keys[0].1.key_id().0;
    let new_key = TargetKeypair::generate().key_id().0;
    let operator = cli.with_token(&cli.create_token("operator"));
    let out = operator.output(&["target", "rekey", "db", "--key-id", &new_key]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("a token with role operator cannot re-key and certify targets"),
        "{err}"
    );
    assert_eq!(keys_of(&cli, "db"), (Value::from(pinned), Value::Null));
    // Control: the same command as an admin does re-key.
    cli.ok(&["target", "rekey", "db", "--key-id", &new_key]);
    assert_eq!(keys_of(&cli, "db"), (Value::Null, Value::from(new_key)));
}

#[tokio::test]
async fn after_a_rekey_only_the_named_key_may_serve_the_target() {
    let (server, _old, cli) = served_db().await;
    let admin = server.admin();
    let named = TargetKeypair::generate();
    let named_id = named.key_id().0;
    cli.ok(&["target", "rekey", "db", "--key-id", &named_id]);
    // Another new agent of the pool, first to connect, is refused: its
    // message names the key it presented and the command that would take it.
    let enrollment = admin.enrollment_token("default").await;
    let mut other = FakeAgent::register(&server, &enrollment, "other").await;
    let other_key = TargetKeypair::generate();
    let other_id = other_key.key_id().0;
    other.keys.push(("db".into(), other_key));
    let msg = other.connect().await.error(reqwest::StatusCode::CONFLICT);
    assert!(
        msg.contains(&format!("this agent presented key {other_id}"))
            && msg.contains(&format!("`sealrun target rekey db --key-id {other_id}`")),
        "{msg}"
    );
    assert_eq!(
        keys_of(&cli, "db"),
        (Value::Null, Value::from(named_id.clone()))
    );
    // The agent holding the named key connects and pins it (enrolled with a
    // token of its own: enrollment tokens are single-use by default).
    let enrollment = admin.enrollment_token("default").await;
    let mut new = FakeAgent::register(&server, &enrollment, "new").await;
    new.keys.push(("db".into(), named));
    new.connect().await.ok();
    assert_eq!(keys_of(&cli, "db"), (Value::from(named_id), Value::Null));
    let pinned = audit_entries(&cli, "target.key_pinned");
    assert_eq!(pinned.last().unwrap()["detail"]["agent"], "new");
}

#[tokio::test]
async fn agents_with_the_old_key_get_no_more_runs_of_the_target() {
    let (server, old, cli) = served_db().await;
    let admin = server.admin();
    // Control: before the re-key, the old agent gets the target's runs.
    let before = admin.submit("db", &["true"], &[]).await;
    assert_eq!(old.next_run().await.run_id, before);
    let named = TargetKeypair::generate();
    let out = cli.output(&["target", "rekey", "db", "--key-id", &named.key_id().0]);
    let said = text(&out.stderr);
    assert_eq!(code(&out), 0, "{said}");
    assert!(
        said.contains(&format!(
            "agent old ({}) gets no more runs of db; once it is retired: sealrun agents revoke {}",
            old.id, old.id
        )),
        "{said}"
    );
    let after = admin.submit("db", &["true"], &[]).await;
    assert!(old.poll().await.is_none(), "the old agent got a run");
    let enrollment = admin.enrollment_token("default").await;
    let mut new = FakeAgent::register(&server, &enrollment, "new").await;
    new.keys.push(("db".into(), named));
    new.connect().await.ok();
    assert_eq!(new.next_run().await.run_id, after);
}

/// Sets secrets `A_PASSWORD` and `B_TOKEN` of target `db`.
fn set_two_secrets(cli: &sealrun_testkit::Cli) {
    cli.set_secret("db", "A_PASSWORD", "correct-horse-battery");
    cli.set_secret("db", "B_TOKEN", "another-long-secret-value");
}

#[tokio::test]
async fn a_target_with_secrets_is_not_rekeyed_and_the_refusal_names_them() {
    let (_server, old, cli) = served_db().await;
    set_two_secrets(&cli);
    let new_key = TargetKeypair::generate().key_id().0;
    let out = cli.output(&["target", "rekey", "db", "--key-id", &new_key]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("(A_PASSWORD, B_TOKEN)")
            && err.contains(&format!(
                "`sealrun target rekey db --key-id {new_key} --drop-secrets`"
            )),
        "{err}"
    );
    assert_eq!(
        keys_of(&cli, "db"),
        (Value::from(old.keys[0].1.key_id().0), Value::Null)
    );
    let secrets = cli.json(&["secret", "list", "--target", "db"]);
    assert_eq!(secrets["secrets"].as_array().unwrap().len(), 2, "{secrets}");
}

#[tokio::test]
async fn drop_secrets_deletes_them_and_says_which() {
    let (_server, _old, cli) = served_db().await;
    set_two_secrets(&cli);
    let new_key = TargetKeypair::generate().key_id().0;
    let out = cli.output(&[
        "target",
        "rekey",
        "db",
        "--key-id",
        &new_key,
        "--drop-secrets",
    ]);
    let said = text(&out.stderr);
    assert_eq!(code(&out), 0, "{said}");
    assert!(
        said.contains("deleted the secrets sealed to the old key: A_PASSWORD, B_TOKEN"),
        "{said}"
    );
    let secrets = cli.json(&["secret", "list", "--target", "db"]);
    assert_eq!(secrets["secrets"], serde_json::json!([]), "{secrets}");
    let rekeyed = audit_entries(&cli, "target.rekeyed");
    assert_eq!(
        rekeyed[0]["detail"]["secrets_deleted"],
        serde_json::json!(["A_PASSWORD", "B_TOKEN"])
    );
}

#[test]
fn print_key_ids_prints_the_key_the_agent_will_present() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent");
    let printed = print_key_id(&state, "db");
    // The key it created is the one the agent loads, and stays.
    assert_eq!(printed, key_id_in(&state, "db"));
    assert_eq!(print_key_id(&state, "db"), printed);
}
