//! Orgs are isolated: another org's objects answer 404 and nothing of them
//! leaks into any answer.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{FakeAgent, World};
use sealrun_wire::run::RunStatus;
use serde_json::json;

#[tokio::test]
async fn org_b_cannot_see_or_touch_org_a_objects() {
    let w = World::in_process().await;
    let a = &w.admin;
    let sealed = a
        .set_secret("db", "PGPASSWORD", b"correct horse battery")
        .await;
    let run = a
        .submit("db", &["psql", "-c", "select 1"], &["PGPASSWORD"])
        .await;
    let op_a = a
        .token("alice-in-a", sealrun_wire::admin::Role::Operator)
        .await;
    let op_a_id = op_a.token[4..20].to_owned();
    let enroll_a = a.enrollment_token("default").await;
    let enroll_a_id = enroll_a[4..20].to_owned();

    let b = w.server.create_org("umbrella");
    // B has the same kinds of objects, with the same names.
    b.declare_target("db").await;
    let agent_b = FakeAgent::enroll(&w.server, &b, "agent-b", &["db"]).await;

    // Each of A's objects answers B exactly like an object that does not
    // exist (only the id B itself sent is echoed).
    let fake_run = "run_0000000000000000";
    let fake_id = "0000000000000000";
    let fake_agent = "agt_0000000000000000";
    let probes = [
        ("GET", format!("/v1/runs/{run}"), run.clone(), fake_run),
        ("GET", format!("/v1/runs/{run}/logs"), run.clone(), fake_run),
        (
            "GET",
            format!("/v1/runs/{run}/logs?follow=true"),
            run.clone(),
            fake_run,
        ),
        (
            "POST",
            format!("/v1/runs/{run}/cancel"),
            run.clone(),
            fake_run,
        ),
        (
            "DELETE",
            format!("/v1/tokens/{op_a_id}"),
            op_a_id.clone(),
            fake_id,
        ),
        (
            "DELETE",
            format!("/v1/tokens/{enroll_a_id}"),
            enroll_a_id.clone(),
            fake_id,
        ),
        (
            "DELETE",
            format!("/v1/agents/{}", w.agent.id),
            w.agent.id.clone(),
            fake_agent,
        ),
    ];
    for (method, path, real, fake) in probes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let theirs = b.call(m.clone(), &path, Some(json!({}))).await;
        let none = b.call(m, &path.replace(&real, fake), Some(json!({}))).await;
        theirs.error(StatusCode::NOT_FOUND);
        assert_eq!(
            theirs.text.replace(&real, fake),
            none.text,
            "{method} {path}"
        );
    }
    // Lists show only B's own objects.
    let mut everything = String::new();
    for path in [
        "/v1/runs",
        "/v1/tokens",
        "/v1/agents",
        "/v1/targets",
        "/v1/pools",
        "/v1/audit?limit=1000",
        "/v1/targets/db/secrets",
        "/v1/pools/default/enrollment-tokens",
        "/v1/whoami",
    ] {
        everything.push_str(&b.get(path).await.ok().text);
    }
    for leaked in [
        run.as_str(),
        "PGPASSWORD",
        sealed.ciphertext.as_str(),
        "alice-in-a",
        op_a_id.as_str(),
        enroll_a_id.as_str(),
        w.agent.id.as_str(),
        "agent-1",
        "acme",
        "select 1",
    ] {
        assert!(!everything.contains(leaked), "org B saw {leaked:?}");
    }

    // B's agent cannot take, report on or renew A's run.
    assert!(agent_b.poll().await.is_none());
    agent_b
        .upload(&run, &[(0, b"x")])
        .await
        .error(StatusCode::NOT_FOUND);
    agent_b
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(agent_b.heartbeat(&[&run]).await.abandon, vec![run.clone()]);
    // And B's admin cannot change A's target of the same name: it changes B's.
    b.put("/v1/targets/db", json!({"name": "db", "image": "evil"}))
        .await
        .ok();
    let a_target = a.get("/v1/targets/db").await.ok().json();
    assert_eq!(a_target["image"], "sealrun/busybox:latest");
    assert_eq!(a.run(&run).await.status, RunStatus::Queued);
    // A's secret is untouched by B deleting "its" secret.
    b.delete("/v1/targets/db/secrets/PGPASSWORD")
        .await
        .error(StatusCode::NOT_FOUND);
    let secrets = a.get("/v1/targets/db/secrets").await.ok().json();
    assert_eq!(secrets["secrets"][0]["name"], "PGPASSWORD");
}

#[tokio::test]
async fn an_agent_cannot_serve_another_orgs_target() {
    let w = World::in_process().await;
    let b = w.server.create_org("umbrella");
    // B has no target "db"; A's is invisible to B's agent.
    let enrollment = b.enrollment_token("default").await;
    let mut agent_b = FakeAgent::register(&w.server, &enrollment, "agent-b").await;
    agent_b
        .keys
        .push(("db".into(), sealrun_vault::TargetKeypair::generate()));
    agent_b.connect().await.error(StatusCode::BAD_REQUEST);
    let run = w.admin.submit("db", &["true"], &[]).await;
    assert_eq!(w.agent.next_run().await.run_id, run);
}
