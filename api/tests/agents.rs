//! The agent protocol: enrollment, key pinning, long polls, heartbeats,
//! cancellation, finishing, deregistration.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_api::Settings;
use sealrun_testkit::{
    ControlPlane as _, FakeAgent, InProcessServer, World, quick_settings, to_value,
};
use sealrun_vault::TargetKeypair;
use sealrun_wire::admin::{AgentList, EnrollmentToken, TargetView};
use sealrun_wire::agent::{Challenges, FinishRequest};
use sealrun_wire::audit::AuditPage;
use sealrun_wire::report::RunReport;
use sealrun_wire::run::RunStatus;
use sealrun_wire::trust::SigningKey;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn registration_returns_an_agent_token_once_and_names_are_unique() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let enrollment: EnrollmentToken = admin
        .post(
            "/v1/pools/default/enrollment-tokens",
            json!({"max_agents": 3}),
        )
        .await
        .ok()
        .parse();
    let enrollment = enrollment.token;
    let agent = FakeAgent::register(&s, &enrollment, "edge-1").await;
    assert!(agent.client.token.starts_with("sra_"));
    assert!(agent.id.starts_with("agt_"));
    // The enrollment token enrolls three agents, but a live name is taken.
    s.client(&enrollment)
        .post("/v1/agent/register", json!({"name": "edge-1"}))
        .await
        .error(StatusCode::CONFLICT);
    FakeAgent::register(&s, &enrollment, "edge-2").await;
    s.client(&enrollment)
        .post("/v1/agent/register", json!({"name": "../etc"}))
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_first_connect_pins_each_targets_key() {
    let w = World::in_process().await;
    let t: TargetView = w.admin.get("/v1/targets/db").await.ok().parse();
    let pinned = t.public_key.unwrap();
    let kp = &w.agent.keys[0].1;
    assert_eq!(pinned.key_id, kp.key_id());
    assert_eq!(pinned.key, kp.public_key().to_base64());
    // The same key again is fine.
    w.agent.connect().await.ok();
}

#[tokio::test]
async fn a_different_key_is_refused_audited_and_the_pin_stays() {
    let w = World::in_process().await;
    let original = w.agent.keys[0].1.key_id();
    let mut intruder = FakeAgent::register(
        &w.server,
        &w.admin.enrollment_token("default").await,
        "intruder",
    )
    .await;
    let rogue = TargetKeypair::generate();
    let rogue_id = rogue.key_id();
    intruder.keys.push(("db".into(), rogue));
    let msg = intruder.connect().await.error(StatusCode::CONFLICT);
    assert!(
        msg.contains(&original.0) && msg.contains(&rogue_id.0),
        "{msg}"
    );
    let t: TargetView = w.admin.get("/v1/targets/db").await.ok().parse();
    assert_eq!(t.public_key.unwrap().key_id, original);
    let audit: AuditPage = w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    let mismatch = audit
        .entries
        .iter()
        .find(|e| e.action == "target.key_mismatch")
        .unwrap();
    assert_eq!(mismatch.subject, "db");
    assert!(mismatch.detail.contains(&rogue_id.0));
    // The refused agent serves nothing.
    intruder
        .client
        .post("/v1/agent/poll", json!({}))
        .await
        .error(StatusCode::CONFLICT);
}

#[tokio::test]
async fn connecting_for_an_undeclared_target_or_another_pools_target_is_refused() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    admin.post("/v1/pools", json!({"name": "eu"})).await.ok();
    admin.declare_target_in("eu-db", "eu").await;
    let enrollment = admin.enrollment_token("default").await;
    let mut agent = FakeAgent::register(&s, &enrollment, "a").await;
    agent.keys.push(("ghost".into(), TargetKeypair::generate()));
    let msg = agent.connect().await.error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("not declared"), "{msg}");
    agent.keys[0].0 = "eu-db".into();
    agent.connect().await.error(StatusCode::FORBIDDEN);
    agent.keys[0].1 = TargetKeypair::generate();
    agent.keys[0].0 = "eu-db".into();
    let bad_key = json!({"version": "t", "max_concurrency": 1,
        "targets": [{"name": "eu-db", "public_key": "AAAA"}]});
    agent
        .client
        .post("/v1/agent/connect", bad_key)
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_connected_agent_cap_is_enforced_per_org() {
    let s = InProcessServer::start_with(Settings {
        max_agents_per_org: 1,
        ..quick_settings()
    })
    .await;
    let admin = s.admin();
    admin.declare_target("db").await;
    let first = FakeAgent::enroll(&s, &admin, "one", &["db"]).await;
    let enrollment = admin.enrollment_token("default").await;
    let mut second = FakeAgent::register(&s, &enrollment, "two").await;
    second
        .keys
        .push(("db".into(), sealrun_testkit::same_key(&first.keys[0].1)));
    second.connect().await.error(StatusCode::TOO_MANY_REQUESTS);
    // Once the first goes away, the second may connect.
    assert_eq!(
        first
            .client
            .post("/v1/agent/deregister", json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    second.connect().await.ok();
}

#[tokio::test]
async fn an_idle_poll_is_held_then_answers_204() {
    let w = World::in_process().await;
    let started = std::time::Instant::now();
    assert!(w.agent.poll().await.is_none());
    // Held for the configured time (500 ms in tests), not answered at once.
    assert!(started.elapsed() >= Duration::from_millis(450));
}

/// When the control plane last heard from the org's (one) agent.
async fn last_seen(admin: &sealrun_testkit::Client) -> i64 {
    let agents: AgentList = admin.get("/v1/agents").await.ok().parse();
    agents.agents[0]
        .last_seen_ms
        .expect("heard from at its connect")
}

#[tokio::test]
async fn a_poll_within_half_a_heartbeat_of_the_agent_last_being_heard_writes_nothing() {
    // Heard from at its connect, well within half a minute-long heartbeat: an
    // idle poll is answered from a read (no claim, so no write).
    let w = World::in_process_with(Settings {
        heartbeat_interval: Duration::from_secs(60),
        lease_ttl: Duration::from_secs(120),
        poll_timeout: Duration::from_millis(100),
        ..quick_settings()
    })
    .await;
    let heard = last_seen(&w.admin).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(w.agent.poll().await.is_none());
    assert_eq!(last_seen(&w.admin).await, heard);
    // ... and a run queued since is still claimed from such a poll.
    let run = w.admin.submit("db", &["true"], &[]).await;
    assert_eq!(w.agent.poll().await.expect("the run").run_id, run);
}

#[tokio::test]
async fn a_poll_half_a_heartbeat_or_more_after_the_agent_was_last_heard_records_it() {
    let w = World::in_process_with(Settings {
        heartbeat_interval: Duration::from_millis(50),
        poll_timeout: Duration::from_millis(100),
        ..quick_settings()
    })
    .await;
    let heard = last_seen(&w.admin).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(w.agent.poll().await.is_none());
    assert!(last_seen(&w.admin).await >= heard + 60);
}

#[tokio::test]
async fn a_held_poll_is_woken_when_a_run_is_queued() {
    // With a 60 s hold, only a wake-up can answer the poll within the test.
    let w = World::in_process_with(Settings {
        poll_timeout: Duration::from_secs(60),
        ..quick_settings()
    })
    .await;
    let agent = w.agent;
    let poll = tokio::spawn(async move { agent.poll().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    let assignment = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .expect("the poll was woken")
        .unwrap()
        .expect("with a run");
    assert_eq!(assignment.run_id, run);
}

#[tokio::test]
async fn an_assignment_carries_the_command_and_the_targets_settings() {
    let w = World::in_process().await;
    w.admin
        .put(
            "/v1/targets/db",
            json!({"name": "db", "image": "postgres:16", "network": "db-net", "user": "1000:1000",
                   "limits": {"memory_mb": 256, "millicpus": 500, "pids": 64}, "timeout_secs": 900}),
        )
        .await
        .ok();
    let a = w
        .admin
        .post(
            "/v1/runs",
            json!({"target": "db", "argv": ["psql", "-c", "select 1"], "env": {"PGDATABASE": "app"},
                   "timeout_secs": 30}),
        )
        .await;
    let run = a.json()["id"].as_str().unwrap().to_owned();
    let got = w.agent.next_run().await;
    assert_eq!(got.run_id, run);
    assert_eq!(got.argv, ["psql", "-c", "select 1"]);
    assert_eq!(got.env["PGDATABASE"], "app");
    assert_eq!(got.image, "postgres:16");
    assert_eq!(got.network.as_deref(), Some("db-net"));
    assert_eq!(got.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        (got.limits.memory_mb, got.limits.millicpus, got.limits.pids),
        (256, 500, 64)
    );
    assert_eq!(got.timeout_secs, 30);
    let view = w.admin.run(&run).await;
    assert_eq!(view.status, RunStatus::Running);
    assert_eq!(view.agent.as_deref(), Some("agent-1"));
    assert!(view.started_at_ms.is_some());
}

#[tokio::test]
async fn runs_are_handed_out_oldest_first_and_each_only_once() {
    let w = World::in_process().await;
    w.admin.declare_target("other").await;
    // Serves another target: never gets db's runs.
    let second = FakeAgent::enroll(&w.server, &w.admin, "agent-2", &["other"]).await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(w.admin.submit("db", &["echo", &i.to_string()], &[]).await);
        }
        v
    };
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(w.agent.next_run().await.run_id);
    }
    assert_eq!(got, ids);
    assert!(w.agent.poll().await.is_none());
    assert!(second.poll().await.is_none());
}

#[tokio::test]
async fn an_agent_gets_no_more_runs_than_its_concurrency() {
    let w = World::in_process().await;
    let mut conn = w
        .agent
        .connect_request(w.agent.prove(&w.agent.challenges().await));
    conn["max_concurrency"] = json!(1);
    w.agent.client.post("/v1/agent/connect", conn).await.ok();
    w.admin.submit("db", &["a"], &[]).await;
    w.admin.submit("db", &["b"], &[]).await;
    let first = w.agent.next_run().await;
    assert!(w.agent.poll().await.is_none(), "its one slot is busy");
    w.agent
        .finish(&first.run_id, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    assert_eq!(w.agent.next_run().await.argv, ["b"]);
}

#[tokio::test]
async fn canceling_a_queued_run_ends_it_at_once_and_it_is_never_handed_out() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["sleep", "100"], &[]).await;
    let v = w
        .admin
        .post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await
        .ok()
        .json();
    assert_eq!(v["status"], "canceled");
    assert!(w.agent.poll().await.is_none());
    w.admin
        .post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await
        .error(StatusCode::CONFLICT);
}

#[tokio::test]
async fn canceling_a_running_run_reaches_the_agent_in_its_next_heartbeat() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["sleep", "100"], &[]).await;
    w.agent.next_run().await;
    assert!(w.agent.heartbeat(&[&run]).await.cancel.is_empty());
    let v = w
        .admin
        .post(&format!("/v1/runs/{run}/cancel"), json!({}))
        .await
        .ok()
        .json();
    assert_eq!(
        v["status"], "running",
        "still running until the agent stops it"
    );
    let ack = w.agent.heartbeat(&[&run]).await;
    assert_eq!(ack.cancel, vec![run.clone()]);
    assert!(w.agent.upload_ok(&run, &[(0, b"bye")]).await.cancel);
    w.agent
        .finish(&run, RunStatus::Canceled, Some(143), 1)
        .await
        .ok();
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Canceled);
}

#[tokio::test]
async fn a_finish_is_idempotent_and_a_conflicting_one_is_refused() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["false"], &[]).await;
    w.agent.next_run().await;
    assert_eq!(
        w.agent
            .finish(&run, RunStatus::Failed, Some(1), 0)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        w.agent
            .finish(&run, RunStatus::Failed, Some(1), 0)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .error(StatusCode::CONFLICT);
    let v = w.admin.run(&run).await;
    assert_eq!((v.status, v.exit_code), (RunStatus::Failed, Some(1)));
    assert!(v.finished_at_ms.is_some());
    w.agent
        .finish(&run, RunStatus::Running, None, 0)
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn only_the_agent_holding_a_run_may_report_on_it() {
    let w = World::in_process().await;
    w.admin.declare_target("other").await;
    let other = FakeAgent::enroll(&w.server, &w.admin, "agent-2", &["other"]).await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    w.agent.next_run().await;
    other
        .upload(&run, &[(0, b"x")])
        .await
        .error(StatusCode::NOT_FOUND);
    other
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(other.heartbeat(&[&run]).await.abandon, vec![run]);
}

#[tokio::test]
async fn a_finish_whose_signed_report_does_not_hold_is_refused_and_changes_nothing() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    w.agent.next_run().await;
    // Signed with a key the target's agent never presented.
    let report = SigningKey::generate().sign(&RunReport {
        target: w.target.clone(),
        run_id: run.clone(),
        status: "succeeded".into(),
        exit_code: Some(0),
        stdout_redactions: 0,
        stderr_redactions: 0,
        log_chunks: 0,
        secrets: vec![],
        nonce: None,
        finished_at_ms: 0,
    });
    let finish = FinishRequest {
        status: RunStatus::Succeeded,
        exit_code: Some(0),
        error: None,
        oom_killed: false,
        next_seq: 0,
        redactions: Default::default(),
        report: Some(report),
    };
    let refused = w
        .agent
        .client
        .post(&format!("/v1/agent/runs/{run}/finish"), to_value(&finish))
        .await;
    let message = refused.error(StatusCode::BAD_REQUEST);
    assert!(message.contains("report key"), "{message}");
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Running);
    // Positive control: the same finish without the report is taken.
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn reconnecting_marks_the_runs_the_agent_held_as_lost() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    w.agent.next_run().await;
    w.agent.connect().await.ok();
    let v = w.admin.run(&run).await;
    assert_eq!(v.status, RunStatus::Lost);
    assert!(v.error.unwrap().contains("reconnected"));
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 0)
        .await
        .error(StatusCode::CONFLICT);
}

#[tokio::test]
async fn deregistering_loses_held_runs_and_stops_polls_until_the_next_connect() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    w.agent.next_run().await;
    let a = w.agent.client.post("/v1/agent/deregister", json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(w.admin.run(&run).await.status, RunStatus::Lost);
    w.agent
        .client
        .post("/v1/agent/poll", json!({}))
        .await
        .error(StatusCode::CONFLICT);
    let agents: AgentList = w.admin.get("/v1/agents").await.ok().parse();
    assert!(!agents.agents[0].connected);
    w.agent.connect().await.ok();
    let agents: AgentList = w.admin.get("/v1/agents").await.ok().parse();
    assert!(agents.agents[0].connected);
    assert_eq!(agents.agents[0].targets, ["db"]);
    assert_eq!(agents.agents[0].version.as_deref(), Some("test"));
}

#[tokio::test]
async fn connect_answers_the_protocol_settings() {
    let w = World::in_process_with(Settings {
        lease_ttl: Duration::from_secs(42),
        max_log_bytes: 1000,
        ..quick_settings()
    })
    .await;
    let s = w.agent.settings().await;
    assert_eq!(s.agent_id, w.agent.id);
    assert_eq!(s.lease_ttl_ms, 42_000);
    assert_eq!(s.max_log_bytes, 1000);
    assert_eq!(s.poll_timeout_ms, 500);
}

/// The body of a connect serving `targets` with `proofs`.
fn connect_body(targets: &serde_json::Value, proofs: serde_json::Value) -> serde_json::Value {
    json!({"version": "t", "max_concurrency": 1, "targets": targets, "proofs": proofs})
}

#[tokio::test]
async fn an_agent_presenting_a_targets_public_key_without_its_private_key_is_refused_and_audited() {
    let w = World::in_process().await;
    // A target's key is public: anyone who can read the target has it.
    let t: TargetView = w.admin.get("/v1/targets/db").await.ok().parse();
    let targets = json!([{"name": "db", "public_key": t.public_key.unwrap().key}]);
    let intruder = FakeAgent::register(
        &w.server,
        &w.admin.enrollment_token("default").await,
        "intruder",
    )
    .await;
    let challenges: Challenges = intruder
        .client
        .post("/v1/agent/challenge", json!({ "targets": targets }))
        .await
        .ok()
        .parse();
    let guessed = json!([{"target": "db", "challenge_id": challenges.challenges[0].id, "nonce": "00".repeat(32)}]);
    for proofs in [json!([]), guessed] {
        let msg = intruder
            .client
            .post("/v1/agent/connect", connect_body(&targets, proofs))
            .await
            .error(StatusCode::FORBIDDEN);
        assert!(
            msg.contains("did not prove") && msg.contains("target db"),
            "{msg}"
        );
    }
    let audit: AuditPage = w.admin.get("/v1/audit?limit=1000").await.ok().parse();
    let failed: Vec<_> = audit
        .entries
        .iter()
        .filter(|e| e.action == "agent.proof_failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].subject, intruder.id);
    assert!(failed[0].detail.contains("db"), "{}", failed[0].detail);
    // It serves nothing: a queued run goes to the agent that proved the key.
    intruder
        .client
        .post("/v1/agent/poll", json!({}))
        .await
        .error(StatusCode::CONFLICT);
    let run = w.submit(&["echo", "hi"]).await;
    w.agent.connect().await.ok();
    assert_eq!(w.agent.next_run().await.run_id, run);
}

#[tokio::test]
async fn a_proof_counts_once_and_only_for_the_agent_it_was_issued_to() {
    let w = World::in_process().await;
    let targets = serde_json::to_value(w.agent.served()).unwrap();
    let proofs = serde_json::to_value(w.agent.prove(&w.agent.challenges().await)).unwrap();
    // Another agent of the pool replaying the real agent's proof is refused...
    let intruder = FakeAgent::register(
        &w.server,
        &w.admin.enrollment_token("default").await,
        "intruder",
    )
    .await;
    intruder
        .client
        .post("/v1/agent/connect", connect_body(&targets, proofs.clone()))
        .await
        .error(StatusCode::FORBIDDEN);
    // ...which leaves it to the agent it was issued to (positive control),
    w.agent
        .client
        .post("/v1/agent/connect", connect_body(&targets, proofs.clone()))
        .await
        .ok();
    // once.
    w.agent
        .client
        .post("/v1/agent/connect", connect_body(&targets, proofs))
        .await
        .error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_proof_for_another_key_does_not_prove_the_presented_one() {
    let w = World::in_process().await;
    // Challenges asked for a key the agent holds, answered, then presented
    // with the target's real (pinned) key instead.
    let decoy = FakeAgent {
        keys: vec![("db".into(), TargetKeypair::generate())],
        ..FakeAgent::register(
            &w.server,
            &w.admin.enrollment_token("default").await,
            "decoy",
        )
        .await
    };
    let proofs = serde_json::to_value(decoy.prove(&decoy.challenges().await)).unwrap();
    let real = serde_json::to_value(w.agent.served()).unwrap();
    let msg = decoy
        .client
        .post("/v1/agent/connect", connect_body(&real, proofs))
        .await
        .error(StatusCode::FORBIDDEN);
    assert!(msg.contains("did not prove"), "{msg}");
}
