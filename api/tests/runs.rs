//! Submitting, listing and inspecting runs; targets and pools as admins
//! manage them.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{ControlPlane as _, InProcessServer, World};
use sealrun_wire::admin::{PoolList, Role, TargetList, TargetView};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::run::{RunList, RunSource, RunStatus};
use serde_json::json;

#[tokio::test]
async fn a_submitted_run_records_who_from_where_and_what() {
    let w = World::in_process().await;
    let op = w.admin.token("deploy-bot", Role::Operator).await;
    let a = op
        .post(
            "/v1/runs",
            json!({"target": "db", "argv": ["psql", "-c", "select 1"], "timeout_secs": 60}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["status"], "queued");
    let id = a.json()["id"].as_str().unwrap().to_owned();
    let v = op.run(&id).await;
    assert_eq!(v.submitter, "deploy-bot");
    assert_eq!(v.source, RunSource::Api, "from the route, not the body");
    assert_eq!(v.argv, ["psql", "-c", "select 1"]);
    assert_eq!(v.image, "sealrun/busybox:latest");
    assert_eq!(v.timeout_secs, 60);
    assert_eq!(v.status, RunStatus::Queued);
    assert!(v.agent.is_none() && v.started_at_ms.is_none());
}

#[tokio::test]
async fn an_api_token_cannot_set_a_runs_source() {
    let w = World::in_process().await;
    let op = w.admin.token("deploy-bot", Role::Operator).await;
    for source in ["slack", "cli", "api"] {
        let msg = op
            .post(
                "/v1/runs",
                json!({"target": "db", "argv": ["true"], "source": source}),
            )
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains("source"), "{source}: {msg}");
    }
    let list: RunList = op.get("/v1/runs").await.ok().parse();
    assert!(list.runs.is_empty(), "nothing was queued");
    // Positive control: the same request without it is queued, as `api`.
    let id = op.submit("db", &["true"], &[]).await;
    assert_eq!(op.run(&id).await.source, RunSource::Api);
}

#[tokio::test]
async fn a_run_submitted_by_the_sealrun_cli_is_recorded_as_cli() {
    let w = World::in_process().await;
    let submit = |agent: &'static str| {
        w.server
            .http
            .post(format!("{}/v1/runs", w.server.url))
            .bearer_auth(&w.server.admin_token)
            .header("user-agent", agent)
            .json(&json!({"target": "db", "argv": ["true"]}))
            .send()
    };
    let mut sources = Vec::new();
    for agent in ["sealrun-cli/0.1.0", "curl/8.5.0", "sealrun-cli-fork/1"] {
        let created: serde_json::Value = submit(agent).await.unwrap().json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        sources.push(w.admin.run(id).await.source);
    }
    assert_eq!(sources, [RunSource::Cli, RunSource::Api, RunSource::Api]);
}

#[tokio::test]
async fn invalid_runs_are_refused_with_the_reason() {
    let w = World::in_process().await;
    let a = &w.admin;
    let cases = [
        (
            json!({"target": "nope", "argv": ["x"]}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            json!({"target": "db", "argv": []}),
            StatusCode::BAD_REQUEST,
            "argv",
        ),
        (
            json!({"target": "db", "argv": [""]}),
            StatusCode::BAD_REQUEST,
            "argv",
        ),
        (
            json!({"target": "db", "argv": ["a\u{0}b"]}),
            StatusCode::BAD_REQUEST,
            "NUL",
        ),
        (
            json!({"target": "db", "argv": ["x"], "secrets": ["MISSING"]}),
            StatusCode::BAD_REQUEST,
            "MISSING",
        ),
        (
            json!({"target": "db", "argv": ["x"], "env": {"BAD-NAME": "1"}}),
            StatusCode::BAD_REQUEST,
            "BAD-NAME",
        ),
        (
            json!({"target": "db", "argv": ["x"], "timeout_secs": 601}),
            StatusCode::BAD_REQUEST,
            "600",
        ),
        (
            json!({"target": "db", "argv": ["x"], "timeout_secs": 0}),
            StatusCode::BAD_REQUEST,
            "timeout",
        ),
        (
            json!({"target": "db", "argv": ["x"], "source": "email"}),
            StatusCode::BAD_REQUEST,
            "source",
        ),
    ];
    for (body, status, needle) in cases {
        let msg = a.post("/v1/runs", body.clone()).await.error(status);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let list: RunList = a.get("/v1/runs").await.ok().parse();
    assert!(list.runs.is_empty(), "nothing was queued");
}

// The whole run reaches the container's shim in one bundle: what it could
// not take is refused at submit, not by the agent after the run was queued.
#[tokio::test]
async fn a_run_larger_than_the_shim_takes_is_refused_at_submit_and_one_at_the_limits_is_queued() {
    use sealrun_wire::names::{MAX_ARGS, MAX_ENV_VALUE_LEN, MAX_ENV_VARS};
    let w = World::in_process().await;
    let a = &w.admin;
    let env = |n: usize| -> serde_json::Map<String, serde_json::Value> {
        (0..n).map(|i| (format!("V{i}"), json!("1"))).collect()
    };
    let cases = [
        (
            json!({"target": "db", "argv": vec!["x"; MAX_ARGS + 1]}),
            "arguments",
        ),
        (
            json!({"target": "db", "argv": ["x"], "env": env(MAX_ENV_VARS + 1)}),
            "variables",
        ),
        (
            json!({"target": "db", "argv": ["x"], "env": {"BIG": "v".repeat(MAX_ENV_VALUE_LEN + 1)}}),
            "BIG",
        ),
    ];
    for (body, needle) in cases {
        let msg = a
            .post("/v1/runs", body)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(msg.contains(needle), "{msg}");
    }
    // Positive control: exactly at each limit, the run is queued.
    for body in [
        json!({"target": "db", "argv": vec!["x"; MAX_ARGS]}),
        json!({"target": "db", "argv": ["x"], "env": env(MAX_ENV_VARS)}),
        json!({"target": "db", "argv": ["x"], "env": {"BIG": "v".repeat(MAX_ENV_VALUE_LEN)}}),
    ] {
        assert_eq!(a.post("/v1/runs", body).await.status, StatusCode::CREATED);
    }
}

#[tokio::test]
async fn a_secret_cannot_also_be_a_plain_env_var() {
    let w = World::in_process().await;
    w.admin
        .set_secret("db", "PGPASSWORD", b"secret-value")
        .await;
    w.admin
        .post(
            "/v1/runs",
            json!({"target": "db", "argv": ["x"], "secrets": ["PGPASSWORD"], "env": {"PGPASSWORD": "plain"}}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn runs_are_listed_newest_first_and_filtered_by_status_and_target() {
    let w = World::in_process().await;
    w.admin.declare_target("cache").await;
    let r1 = w.admin.submit("db", &["1"], &[]).await;
    let r2 = w.admin.submit("cache", &["2"], &[]).await;
    let r3 = w.admin.submit("db", &["3"], &[]).await;
    w.agent.next_run().await; // r1 starts
    let ids = |l: RunList| l.runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all: RunList = w.admin.get("/v1/runs").await.ok().parse();
    assert_eq!(ids(all), [r3.clone(), r2.clone(), r1.clone()]);
    let db: RunList = w.admin.get("/v1/runs?target=db").await.ok().parse();
    assert_eq!(ids(db), [r3.clone(), r1.clone()]);
    let running: RunList = w.admin.get("/v1/runs?status=running").await.ok().parse();
    assert_eq!(ids(running), vec![r1.clone()]);
    let limited: RunList = w.admin.get("/v1/runs?limit=1").await.ok().parse();
    assert_eq!(ids(limited), vec![r3.clone()]);
    let older: RunList = w
        .admin
        .get(&format!("/v1/runs?before={r3}"))
        .await
        .ok()
        .parse();
    assert_eq!(ids(older), [r2, r1]);
}

#[tokio::test]
async fn a_target_is_created_then_replaced_keeping_its_key_and_the_audit_names_the_changes() {
    let w = World::in_process().await;
    let before: TargetView = w.admin.get("/v1/targets/db").await.ok().parse();
    let a = w
        .admin
        .put(
            "/v1/targets/db",
            json!({"name": "db", "image": "postgres:16", "timeout_secs": 60}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let after: TargetView = a.parse();
    assert_eq!(after.spec.image, "postgres:16");
    assert_eq!(after.public_key, before.public_key);
    let audit: AuditPage = w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    let last = audit
        .entries
        .iter()
        .rev()
        .find(|e| e.action == "target.changed")
        .unwrap();
    assert_eq!(
        last.detail,
        r#"{"changed":["image","timeout_secs"],"created":false}"#
    );
    let created = w
        .admin
        .put("/v1/targets/new", json!({"name": "new", "image": "alpine"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let list: TargetList = w.admin.get("/v1/targets").await.ok().parse();
    assert_eq!(list.targets.len(), 2);
}

#[tokio::test]
async fn invalid_targets_are_refused() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    for (path, body) in [
        ("/v1/targets/a", json!({"name": "b", "image": "x"})),
        ("/v1/targets/a", json!({"name": "a", "image": ""})),
        (
            "/v1/targets/a",
            json!({"name": "a", "image": "x", "network": "host"}),
        ),
        (
            "/v1/targets/a",
            json!({"name": "a", "image": "x", "pool": "missing"}),
        ),
        (
            "/v1/targets/a",
            json!({"name": "a", "image": "x", "timeout_secs": 0}),
        ),
        (
            "/v1/targets/a",
            json!({"name": "a", "image": "x", "limits": {"memory_mb": 1}}),
        ),
        ("/v1/targets/-x", json!({"name": "-x", "image": "x"})),
    ] {
        admin
            .put(path, body.clone())
            .await
            .error(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn a_target_with_live_runs_cannot_be_deleted() {
    let w = World::in_process().await;
    w.admin.set_secret("db", "S", b"value-value").await;
    let run = w.admin.submit("db", &["x"], &[]).await;
    w.admin
        .delete("/v1/targets/db")
        .await
        .error(StatusCode::CONFLICT);
    w.admin
        .post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await
        .ok();
    assert_eq!(
        w.admin.delete("/v1/targets/db").await.status,
        StatusCode::NO_CONTENT
    );
    w.admin
        .get("/v1/targets/db")
        .await
        .error(StatusCode::NOT_FOUND);
    // A re-declared target starts without a key or secrets.
    w.admin.declare_target("db").await;
    let t: TargetView = w.admin.get("/v1/targets/db").await.ok().parse();
    assert!(t.public_key.is_none());
    assert!(
        w.admin.get("/v1/targets/db/secrets").await.ok().json()["secrets"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn pools_are_created_once_and_listed() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    assert_eq!(
        admin.post("/v1/pools", json!({"name": "eu"})).await.status,
        StatusCode::CREATED
    );
    admin
        .post("/v1/pools", json!({"name": "eu"}))
        .await
        .error(StatusCode::CONFLICT);
    admin
        .post("/v1/pools", json!({"name": "bad name"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    let pools: PoolList = admin.get("/v1/pools").await.ok().parse();
    let names: Vec<_> = pools.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["default", "eu"]);
    admin
        .post("/v1/pools/missing/enrollment-tokens", json!({}))
        .await
        .error(StatusCode::NOT_FOUND);
}
