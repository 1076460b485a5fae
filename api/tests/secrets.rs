//! Write-only secrets: stored sealed, listed without ciphertext, handed out
//! only inside the assignment of a run that references them.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{ControlPlane as _, World, to_value};
use sealrun_vault::{TargetKeypair, open, seal};
use sealrun_wire::admin::{Role, SecretList, SecretView};
use sealrun_wire::run::RunStatus;
use serde_json::json;

#[tokio::test]
async fn no_answer_but_the_agents_assignment_contains_the_ciphertext() {
    let w = World::in_process().await;
    let a = &w.admin;
    let sealed = a
        .set_secret("db", "PGPASSWORD", b"correct horse battery")
        .await;
    let run = a.submit("db", &["psql"], &["PGPASSWORD"]).await;
    let op = a.token("ops", Role::Operator).await;
    let auditor = a.token("aud", Role::Auditor).await;
    let enrollment = a.enrollment_token("default").await;

    let gets = [
        "/health".to_owned(),
        "/metrics".to_owned(),
        "/v1/whoami".to_owned(),
        "/v1/tokens".to_owned(),
        "/v1/pools".to_owned(),
        "/v1/pools/default/enrollment-tokens".to_owned(),
        "/v1/agents".to_owned(),
        "/v1/targets".to_owned(),
        "/v1/targets/db".to_owned(),
        "/v1/targets/db/public-key".to_owned(),
        "/v1/targets/db/secrets".to_owned(),
        "/v1/runs".to_owned(),
        format!("/v1/runs/{run}"),
        format!("/v1/runs/{run}/logs"),
        "/v1/audit?limit=1000".to_owned(),
        "/v1/audit/verify".to_owned(),
    ];
    let mut seen = 0;
    for who in [
        a,
        &op,
        &auditor,
        &w.server.client(&enrollment),
        &w.agent.client,
    ] {
        for path in &gets {
            let ans = who.get(path).await;
            seen += usize::from(ans.status == StatusCode::OK);
            assert!(
                !ans.text.contains(&sealed.ciphertext),
                "GET {path} leaked the ciphertext"
            );
            // Nor a recognisable piece of it.
            assert!(!ans.text.contains(&sealed.ciphertext[10..40]), "GET {path}");
        }
    }
    assert!(seen > 30, "most endpoints answered ({seen})");
    // Writing it does not echo it either.
    let again = a
        .put("/v1/targets/db/secrets/PGPASSWORD", to_value(&sealed))
        .await;
    assert!(!again.text.contains(&sealed.ciphertext));

    let assignment = w.agent.next_run().await;
    assert_eq!(assignment.run_id, run);
    assert_eq!(assignment.secrets.len(), 1);
    assert_eq!(assignment.secrets[0].sealed, sealed);
    let keypair = &w.agent.keys[0].1;
    let opened = open(keypair, "PGPASSWORD", "db", &assignment.secrets[0].sealed).unwrap();
    assert_eq!(opened.expose(), b"correct horse battery");
}

#[tokio::test]
async fn a_secret_sealed_to_another_key_is_refused_naming_both_keys() {
    let w = World::in_process().await;
    let other = TargetKeypair::generate();
    let sealed = seal(&other.public_key(), "PGPASSWORD", "db", b"value-value").unwrap();
    let msg = w
        .admin
        .put("/v1/targets/db/secrets/PGPASSWORD", to_value(&sealed))
        .await
        .error(StatusCode::CONFLICT);
    assert!(msg.contains(&other.key_id().0), "{msg}");
    assert!(msg.contains(&w.agent.keys[0].1.key_id().0), "{msg}");
}

#[tokio::test]
async fn a_secret_for_a_target_no_agent_registered_is_refused() {
    let w = World::in_process().await;
    w.admin.declare_target("fresh").await;
    w.admin
        .get("/v1/targets/fresh/public-key")
        .await
        .error(StatusCode::NOT_FOUND);
    let kp = TargetKeypair::generate();
    let sealed = seal(&kp.public_key(), "X", "fresh", b"value-value").unwrap();
    let msg = w
        .admin
        .put("/v1/targets/fresh/secrets/X", to_value(&sealed))
        .await
        .error(StatusCode::CONFLICT);
    assert!(
        msg.contains("no agent has registered this target yet"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_secret_name_must_be_an_environment_variable_name() {
    let w = World::in_process().await;
    let kp = &w.agent.keys[0].1;
    for bad in ["1ABC", "A-B", "A%3DB"] {
        let sealed = seal(&kp.public_key(), bad, "db", b"value-value").unwrap();
        w.admin
            .put(&format!("/v1/targets/db/secrets/{bad}"), to_value(&sealed))
            .await
            .error(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn a_ciphertext_that_cannot_be_a_sealed_secret_is_refused() {
    let w = World::in_process().await;
    let key_id = w.agent.keys[0].1.key_id();
    for (ciphertext, version) in [("bm90IGEgc2VhbGVkIGJveA==", 1), ("!!!", 1), ("", 1)] {
        w.admin
            .put(
                "/v1/targets/db/secrets/X",
                json!({"version": version, "key_id": key_id, "ciphertext": ciphertext}),
            )
            .await
            .error(StatusCode::BAD_REQUEST);
    }
    let good = seal(&w.agent.keys[0].1.public_key(), "X", "db", b"value").unwrap();
    let mut future = to_value(&good);
    future["version"] = json!(9);
    w.admin
        .put("/v1/targets/db/secrets/X", future)
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rewriting_a_secret_bumps_its_version_and_the_audit_holds_only_metadata() {
    let w = World::in_process().await;
    w.admin.set_secret("db", "TOKEN", b"first-value").await;
    let second = w.admin.set_secret("db", "TOKEN", b"second-value").await;
    let list: SecretList = w.admin.get("/v1/targets/db/secrets").await.ok().parse();
    let view: &SecretView = &list.secrets[0];
    assert_eq!((view.name.as_str(), view.version), ("TOKEN", 2));
    assert_eq!(view.key_id, w.agent.keys[0].1.key_id());
    let audit = w.admin.get("/v1/audit?limit=1000").await.ok().json();
    let written: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.written")
        .collect();
    assert_eq!(written.len(), 2);
    let detail: serde_json::Value =
        serde_json::from_str(written[1]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        detail,
        json!({"name": "TOKEN", "version": 2, "key_id": view.key_id})
    );
    assert!(!audit.to_string().contains(&second.ciphertext));
}

#[tokio::test]
async fn a_deleted_secret_is_gone_and_a_run_still_referencing_it_errors() {
    let w = World::in_process().await;
    w.admin.set_secret("db", "TOKEN", b"some-value").await;
    let run = w.admin.submit("db", &["true"], &["TOKEN"]).await;
    assert_eq!(
        w.admin.delete("/v1/targets/db/secrets/TOKEN").await.status,
        StatusCode::NO_CONTENT
    );
    let list: SecretList = w.admin.get("/v1/targets/db/secrets").await.ok().parse();
    assert!(list.secrets.is_empty());
    w.admin
        .post(
            "/v1/runs",
            json!({"target": "db", "argv": ["true"], "secrets": ["TOKEN"]}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    // The queued run is not handed out without its secret.
    assert!(w.agent.poll().await.is_none());
    let view = w.admin.run(&run).await;
    assert_eq!(view.status, RunStatus::Error);
    assert!(view.error.unwrap().contains("TOKEN"));
}
