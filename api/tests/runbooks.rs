//! Runbooks and target policy over HTTP, against an in-process control
//! plane and a fake agent: what a runbook renders is exactly what the agent
//! is handed, and every refusal is a JSON error naming its rule (400 for a
//! bad declaration or parameter, 403 for a policy or a role, 404 for an
//! unknown runbook or version).
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{Client, IMAGE, World, to_value};
use sealrun_wire::admin::Role;
use sealrun_wire::run::{RunRequest, RunView, RunbookCall};
use serde_json::{Value, json};

/// `restart` on target `db`: `printf '[%s]\n' svc={service} n={n} dry={dry} {{x}}`.
fn restart() -> Value {
    json!({
        "name": "restart",
        "description": "Restart one service",
        "targets": ["db"],
        "argv": ["printf", "[%s]\\n", "svc={service}", "n={n}", "dry={dry}", "{{x}}"],
        "params": {
            "service": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,30}$"},
            "n": {"type": "integer", "min": 1, "max": 9, "default": 3},
            "dry": {"type": "boolean", "default": true},
        },
        "secrets": [],
    })
}

async fn apply(admin: &Client, runbooks: Value) -> Value {
    admin
        .put("/v1/runbooks", json!({ "runbooks": runbooks }))
        .await
        .ok()
        .json()
}

/// A request that calls runbook `name` with `params` (and no target).
fn call(name: &str, params: &[(&str, &str)]) -> RunRequest {
    let mut req = sealrun_testkit::run_request("", &[]);
    req.runbook = Some(RunbookCall {
        name: name.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    req
}

async fn submit_error(admin: &Client, req: &RunRequest, status: StatusCode) -> String {
    admin.post("/v1/runs", to_value(req)).await.error(status)
}

#[tokio::test]
async fn a_runbook_run_hands_the_agent_exactly_the_rendered_argv_and_records_the_version() {
    let w = World::in_process().await;
    let applied = apply(&w.admin, json!([restart()])).await;
    assert_eq!(
        applied,
        json!({"runbooks": [{"name": "restart", "version": 1, "outcome": "created"}]})
    );
    let id = w
        .admin
        .submit_request(&call("restart", &[("service", "web"), ("dry", "false")]))
        .await;
    let assignment = w.agent.next_run().await;
    assert_eq!(assignment.run_id, id);
    assert_eq!(
        assignment.argv,
        ["printf", "[%s]\\n", "svc=web", "n=3", "dry=false", "{x}"]
    );
    assert_eq!(assignment.target, "db");
    let run: RunView = w.admin.get(&format!("/v1/runs/{id}")).await.ok().parse();
    assert_eq!(run.runbook.as_deref(), Some("restart"));
    assert_eq!(run.runbook_version, Some(1));
    // An ad-hoc run records none (the control).
    let adhoc = w.submit(&["true"]).await;
    let run: RunView = w.admin.get(&format!("/v1/runs/{adhoc}")).await.ok().parse();
    assert_eq!((run.runbook, run.runbook_version), (None, None));
}

#[tokio::test]
async fn the_run_submitted_audit_entry_names_the_runbook_its_version_and_params() {
    let w = World::in_process().await;
    apply(&w.admin, json!([restart()])).await;
    let id = w
        .admin
        .submit_request(&call("restart", &[("service", "api")]))
        .await;
    let trail = w.admin.get("/v1/audit?limit=1000").await.ok().json();
    let entry = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run.submitted" && e["subject"] == id.as_str())
        .unwrap();
    // The entry's detail is JSON text (what the hash chain covers).
    let detail: Value = serde_json::from_str(entry["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["runbook"], "restart", "{detail}");
    assert_eq!(detail["runbook_version"], 1, "{detail}");
    assert_eq!(detail["params"], json!({"service": "api"}), "{detail}");
    assert_eq!(
        detail["argv"],
        json!(["printf", "[%s]\\n", "svc=api", "n=3", "dry=true", "{x}"])
    );
}

#[tokio::test]
async fn a_parameter_its_rule_refuses_is_400_naming_the_parameter_and_the_rule() {
    let w = World::in_process().await;
    apply(&w.admin, json!([restart()])).await;
    for (params, expected) in [
        (
            vec![("service", "web;rm")],
            "param service: 'web;rm' does not match ^[a-z][a-z0-9-]{0,30}$",
        ),
        (
            vec![("service", "web\nrm -rf /")],
            "param service: 'web\\nrm -rf /' does not match ^[a-z][a-z0-9-]{0,30}$",
        ),
        (
            vec![("service", "web"), ("n", "+7")],
            "param n: '+7' is not an integer in canonical form (digits, an optional leading '-', no '+', no leading zeros)",
        ),
        (
            vec![("service", "web"), ("n", "10")],
            "param n: '10' is not between 1 and 9",
        ),
        (
            vec![("service", "web"), ("dry", "yes")],
            "param dry: 'yes' is not a boolean (true or false)",
        ),
        (
            vec![],
            "param service is required (runbook restart gives it no default)",
        ),
        (
            vec![("service", "web"), ("force", "1")],
            "runbook restart has no param force (its params: dry, n, service)",
        ),
    ] {
        let message =
            submit_error(&w.admin, &call("restart", &params), StatusCode::BAD_REQUEST).await;
        assert_eq!(message, expected);
    }
    // Nothing was queued by any of them.
    let runs = w.admin.get("/v1/runs").await.ok().json();
    assert_eq!(runs["runs"], json!([]));
}

#[tokio::test]
async fn an_unknown_runbook_or_version_is_404() {
    let w = World::in_process().await;
    let message = submit_error(&w.admin, &call("nope", &[]), StatusCode::NOT_FOUND).await;
    assert_eq!(message, "no runbook named \"nope\"");
    apply(&w.admin, json!([restart()])).await;
    let message = w
        .admin
        .get("/v1/runbooks/restart?version=2")
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(message, "runbook \"restart\" has no version 2");
    w.admin.get("/v1/runbooks/restart?version=1").await.ok();
}

#[tokio::test]
async fn a_runbook_request_that_also_gives_argv_secrets_or_input_is_400() {
    let w = World::in_process().await;
    apply(&w.admin, json!([restart()])).await;
    let base = call("restart", &[("service", "web")]);
    let mut with_argv = base.clone();
    with_argv.argv = vec!["sh".into()];
    let mut with_secret = base.clone();
    with_secret.secrets = vec!["PGPASSWORD".into()];
    let mut with_stdin = base.clone();
    with_stdin.stdin = true;
    for (req, field) in [
        (with_argv, "argv"),
        (with_secret, "secrets"),
        (with_stdin, "stdin"),
    ] {
        let message = submit_error(&w.admin, &req, StatusCode::BAD_REQUEST).await;
        assert!(
            message.ends_with(&format!("the request cannot give {field}")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_runbook_runs_only_on_its_targets_and_needs_one_named_when_it_has_several() {
    let w = World::in_process().await;
    w.admin.declare_target("db2").await;
    let mut two = restart();
    two["name"] = json!("two");
    two["targets"] = json!(["db", "db2"]);
    apply(&w.admin, json!([restart(), two])).await;
    let mut elsewhere = call("restart", &[("service", "web")]);
    elsewhere.target = "db2".into();
    let message = submit_error(&w.admin, &elsewhere, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        message,
        "runbook restart does not run on target db2 (it runs on db)"
    );
    let message = submit_error(
        &w.admin,
        &call("two", &[("service", "web")]),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        message,
        "runbook two runs on several targets (db, db2): name one"
    );
    let mut named = call("two", &[("service", "web")]);
    named.target = "db2".into();
    w.admin.submit_request(&named).await;
}

#[tokio::test]
async fn a_declaration_mistake_is_400_naming_the_runbook_and_nothing_is_applied() {
    let w = World::in_process().await;
    let cases = [
        (
            json!({"argv": ["printf", "{svc}"]}),
            "runbook \"restart\": argv uses {svc}, but no parameter svc is declared",
        ),
        (
            json!({"targets": ["nowhere"]}),
            "runbook \"restart\": target nowhere does not exist",
        ),
        (
            json!({"image": "postgres:16"}),
            "runbook \"restart\": image postgres:16 is not allowed on target db: it allows sealrun/busybox:latest",
        ),
        (
            json!({"timeout_secs": 999999}),
            "runbook \"restart\": timeout_secs 999999 exceeds target db's maximum of 600",
        ),
    ];
    for (change, expected) in cases {
        let mut bad = restart();
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let mut good = restart();
        good["name"] = json!("good");
        let message = w
            .admin
            .put("/v1/runbooks", json!({"runbooks": [good, bad]}))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert_eq!(message, expected);
    }
    // All or nothing: `good`, listed first each time, was never stored.
    let list = w.admin.get("/v1/runbooks").await.ok().json();
    assert_eq!(list["runbooks"], json!([]));
}

#[tokio::test]
async fn a_changed_spec_is_a_new_version_and_the_old_one_stays_readable() {
    let w = World::in_process().await;
    apply(&w.admin, json!([restart()])).await;
    let again = apply(&w.admin, json!([restart()])).await;
    assert_eq!(again["runbooks"][0]["outcome"], "unchanged");
    assert_eq!(again["runbooks"][0]["version"], 1);
    let mut changed = restart();
    changed["argv"] = json!(["echo", "{service}", "{n}", "{dry}"]);
    let updated = apply(&w.admin, json!([changed])).await;
    assert_eq!(
        updated["runbooks"][0],
        json!({"name": "restart", "version": 2, "outcome": "updated"})
    );
    let latest = w.admin.get("/v1/runbooks/restart").await.ok().json();
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["argv"][0], "echo");
    let old = w
        .admin
        .get("/v1/runbooks/restart?version=1")
        .await
        .ok()
        .json();
    assert_eq!(old["argv"][0], "printf");
    let list = w.admin.get("/v1/runbooks").await.ok().json();
    assert_eq!(list["runbooks"].as_array().unwrap().len(), 1);
    assert_eq!(list["runbooks"][0]["version"], 2);
    // A run renders the latest version.
    let id = w
        .admin
        .submit_request(&call("restart", &[("service", "web")]))
        .await;
    let run: RunView = w.admin.get(&format!("/v1/runs/{id}")).await.ok().parse();
    assert_eq!(run.argv, ["echo", "web", "3", "true"]);
    assert_eq!(run.runbook_version, Some(2));
}

#[tokio::test]
async fn operators_and_auditors_read_runbooks_but_only_admins_apply_them() {
    let w = World::in_process().await;
    apply(&w.admin, json!([restart()])).await;
    let op = w.admin.token("op", Role::Operator).await;
    let auditor = w.admin.token("aud", Role::Auditor).await;
    op.get("/v1/runbooks").await.ok();
    op.get("/v1/runbooks/restart").await.ok();
    let message = op
        .put("/v1/runbooks", json!({"runbooks": [restart()]}))
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(message, "a token with role operator cannot manage runbooks");
    auditor.get("/v1/runbooks").await.ok();
    let message = auditor
        .put("/v1/runbooks", json!({"runbooks": [restart()]}))
        .await
        .error(StatusCode::FORBIDDEN);
    assert_eq!(message, "a token with role auditor cannot manage runbooks");
    // Operators run them.
    op.submit_request(&call("restart", &[("service", "web")]))
        .await;
}

/// Target `db` again, with `policy`.
async fn with_policy(admin: &Client, policy: Value) {
    admin
        .put(
            "/v1/targets/db",
            json!({"name": "db", "image": IMAGE, "policy": policy}),
        )
        .await
        .ok();
}

#[tokio::test]
async fn an_ad_hoc_run_naming_a_runbook_only_secret_is_403_and_a_runbook_may_inject_it() {
    let w = World::in_process().await;
    with_policy(
        &w.admin,
        json!({"runbook_only_secrets": ["DB_ADMIN_PASSWORD"]}),
    )
    .await;
    w.admin
        .set_secret("db", "DB_ADMIN_PASSWORD", b"root-pw")
        .await;
    w.admin.set_secret("db", "PGPASSWORD", b"ro-pw").await;
    let mut adhoc = w.request(&["env"]);
    adhoc.secrets = vec!["PGPASSWORD".into(), "DB_ADMIN_PASSWORD".into()];
    let message = submit_error(&w.admin, &adhoc, StatusCode::FORBIDDEN).await;
    assert_eq!(
        message,
        "secret DB_ADMIN_PASSWORD of target db may only be used by runbooks (policy.runbook_only_secrets)"
    );
    // The control: another secret of the target, ad hoc, is fine.
    adhoc.secrets = vec!["PGPASSWORD".into()];
    w.admin.submit_request(&adhoc).await;
    // And a runbook that lists it injects it.
    let mut migrate = restart();
    migrate["name"] = json!("migrate");
    migrate["secrets"] = json!(["DB_ADMIN_PASSWORD"]);
    apply(&w.admin, json!([migrate])).await;
    w.admin
        .submit_request(&call("migrate", &[("service", "web")]))
        .await;
}

#[tokio::test]
async fn a_target_with_ad_hoc_false_refuses_ad_hoc_runs_with_403_and_runs_runbooks() {
    let w = World::in_process().await;
    with_policy(&w.admin, json!({"ad_hoc": false})).await;
    let message = submit_error(&w.admin, &w.request(&["true"]), StatusCode::FORBIDDEN).await;
    assert_eq!(
        message,
        "target db allows only runbooks (policy.ad_hoc = false); `sealrun runbook list` shows them"
    );
    apply(&w.admin, json!([restart()])).await;
    w.admin
        .submit_request(&call("restart", &[("service", "web")]))
        .await;
}

#[tokio::test]
async fn a_policy_naming_an_invalid_secret_is_refused_when_the_target_is_declared() {
    let w = World::in_process().await;
    let message = w
        .admin
        .put(
            "/v1/targets/db",
            json!({"name": "db", "image": IMAGE, "policy": {"runbook_only_secrets": ["NOT-A-NAME"]}}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(
        message.starts_with("policy.runbook_only_secrets: "),
        "{message}"
    );
    // A target declared without a policy shows none (the default is left out).
    let target = w.admin.get("/v1/targets/db").await.ok().json();
    assert!(target.get("policy").is_none(), "{target}");
}

#[tokio::test]
async fn an_ad_hoc_run_still_needs_a_target_and_a_command() {
    let w = World::in_process().await;
    let message = submit_error(
        &w.admin,
        &sealrun_testkit::run_request("", &["true"]),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(message, "name a target (a run without a runbook needs one)");
    let message = submit_error(&w.admin, &w.request(&[]), StatusCode::BAD_REQUEST).await;
    assert_eq!(message, "argv must name a command (or call a runbook)");
    // The control: with both, it is queued.
    w.admin.submit_request(&w.request(&["true"])).await;
}
