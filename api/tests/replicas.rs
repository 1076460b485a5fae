//! Several control-plane replicas on one PostgreSQL database: what one
//! replica does reaches clients and agents connected to another at once
//! (the replicas' hints over LISTEN/NOTIFY), not at the next timeout.
//!
//! These tests need PostgreSQL: they run in `scripts/test.sh`'s PostgreSQL
//! pass (`SEALRUN_TEST_DATABASE_URL`) and skip loudly in the SQLite one.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::slack::StandIn;
use sealrun_testkit::{
    Client, ControlPlane as _, FakeAgent, InProcessServer, quick_settings, run_request, to_value,
};
use sealrun_wire::admin::{TargetSpec, TokenCreated};
use sealrun_wire::run::{RunCreated, RunStatus, RunView, StdinSent};
use serde_json::json;
use std::time::Duration;

/// A long poll that a missed wake-up would leave waiting for its whole
/// timeout, far longer than the tests wait.
const LONG_POLL: Duration = Duration::from_secs(60);
/// How long a test waits for what a hint should bring at once.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Two replicas on one PostgreSQL database, the second with long polls;
/// `None` (after a SKIPPED line) without a PostgreSQL cluster.
async fn replicas() -> Option<(InProcessServer, InProcessServer, tempfile::TempDir)> {
    let first = InProcessServer::start_on_postgres(quick_settings()).await?;
    let dir = tempfile::tempdir().unwrap();
    let settings = sealrun_api::Settings {
        poll_timeout: LONG_POLL,
        ..quick_settings()
    };
    let second = first
        .start_replica(dir.path(), settings)
        .await
        .expect("the first replica is on PostgreSQL");
    Some((first, second, dir))
}

/// Another replica of `a`'s database, and its directory.
async fn another_replica(a: &InProcessServer) -> (InProcessServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let replica = a
        .start_replica(dir.path(), quick_settings())
        .await
        .expect("a replica on PostgreSQL");
    (replica, dir)
}

/// Target `db` declared through `a`, served by an agent connected to `b`;
/// `a`'s admin and the agent.
async fn target_on_a_agent_on_b(a: &InProcessServer, b: &InProcessServer) -> (Client, FakeAgent) {
    let admin_a = a.admin();
    admin_a.declare_target("db").await;
    let agent = FakeAgent::enroll(b, &b.admin(), "agent-b", &["db"]).await;
    (admin_a, agent)
}

#[tokio::test]
async fn a_run_submitted_on_one_replica_wakes_an_agent_long_polling_another() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    // Positive control: with nothing queued, the poll on B is still waiting
    // after a while (it does not just return every few milliseconds).
    let poll = tokio::spawn(async move {
        let run = agent.poll().await;
        (agent, run)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !poll.is_finished(),
        "the long poll returned with nothing queued"
    );
    let created: RunCreated = admin_a
        .post("/v1/runs", to_value(&run_request("db", &["true"])))
        .await
        .ok()
        .parse();
    let (_agent, assigned) = tokio::time::timeout(PROMPTLY, poll)
        .await
        .expect("the agent on the other replica was not woken")
        .unwrap();
    assert_eq!(assigned.expect("an assignment").run_id, created.id);
}

#[tokio::test]
async fn a_log_followed_on_one_replica_shows_output_uploaded_to_another_at_once() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let created: RunCreated = admin_a
        .post("/v1/runs", to_value(&run_request("db", &["echo"])))
        .await
        .ok()
        .parse();
    let run = agent.next_run().await;
    assert_eq!(run.run_id, created.id);
    let mut follow = a
        .http
        .get(format!("{}/v1/runs/{}/logs?follow=true", a.url, created.id))
        .bearer_auth(&a.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), StatusCode::OK);
    agent
        .upload_ok(&created.id, &[(0, b"hello from replica b\n")])
        .await;
    // The chunk's event (its data is base64): `"seq":0`.
    let seen = tokio::time::timeout(PROMPTLY, async {
        let mut text = String::new();
        while !text.contains("\"seq\":0") {
            match follow.chunk().await {
                Ok(Some(piece)) => text.push_str(&String::from_utf8_lossy(&piece)),
                _ => break,
            }
        }
        text
    })
    .await
    .expect("the follower on the other replica saw nothing (a follow re-reads every 15 s)");
    assert!(seen.contains("\"seq\":0"), "{seen}");
}

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_another() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let admin_a = a.admin();
    let created: TokenCreated = admin_a
        .post("/v1/tokens", json!({"name": "ops", "role": "operator"}))
        .await
        .ok()
        .parse();
    let on_b = b.client(&created.token);
    // Positive control: B accepts it (and caches it).
    assert_eq!(on_b.get("/v1/runs").await.status, StatusCode::OK);
    assert_eq!(on_b.get("/v1/runs").await.status, StatusCode::OK);
    let revoked = admin_a
        .delete(&format!("/v1/tokens/{}", created.view.id))
        .await;
    assert!(revoked.status.is_success(), "{}", revoked.text);
    let refused = tokio::time::timeout(PROMPTLY, async {
        loop {
            let status = on_b.get("/v1/runs").await.status;
            if status == StatusCode::UNAUTHORIZED {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Without the hint, B would trust its cached entry for 30 s.
    assert!(refused.is_ok(), "B still accepts the revoked token");
}

#[tokio::test]
async fn a_run_is_readable_from_every_replica() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let admin_a = a.admin();
    admin_a.declare_target("db").await;
    let created: RunCreated = admin_a
        .post("/v1/runs", to_value(&run_request("db", &["true"])))
        .await
        .ok()
        .parse();
    let seen: RunView = b
        .admin()
        .get(&format!("/v1/runs/{}", created.id))
        .await
        .ok()
        .parse();
    assert_eq!(seen.id, created.id);
}

#[tokio::test]
async fn an_approval_request_is_posted_to_slack_once_though_every_replica_drains_the_outbox() {
    const TEAM: &str = "T0SEALRUN";
    let mut slack = StandIn::start().await;
    let api = slack.api_url();
    let Some(a) = InProcessServer::start_on_postgres_with(quick_settings(), |c| {
        c.slack_api_url = api.clone();
    })
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let b = a
        .start_replica_with(dir.path(), quick_settings(), |c| c.slack_api_url = api)
        .await
        .unwrap();
    let admin = a.admin();
    let spec: TargetSpec = serde_json::from_value(json!({
        "name": "db", "image": sealrun_testkit::IMAGE, "timeout_secs": 600,
        "policy": {"approval": {"require": "ad_hoc", "approvals": 1}},
    }))
    .unwrap();
    admin.put("/v1/targets/db", to_value(&spec)).await.ok();
    admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}"),
            json!({"signing_secret": "0123456789abcdef0123456789abcdef"}),
        )
        .await
        .ok();
    admin
        .put(
            &format!("/v1/integrations/slack/workspaces/{TEAM}/approvals"),
            json!({"channel": "C0APPROVE", "bot_token": "xoxb-1234567890-abcdefghijklmnop"}),
        )
        .await
        .ok();

    // Submitted on B; both replicas drain the outbox (each wakes on the
    // hint, and looks every 5 s).
    let created: RunCreated = b
        .admin()
        .post("/v1/runs", to_value(&run_request("db", &["true"])))
        .await
        .ok()
        .parse();
    let first = slack.next_to("chat.postMessage").await;
    assert_eq!(first.body["channel"], "C0APPROVE");
    assert!(first.body.to_string().contains(&created.id));
    // Two more looks by each replica: still one message.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let again: Vec<_> = slack
        .drain()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat.postMessage"))
        .collect();
    assert!(again.is_empty(), "posted again: {again:?}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_submission_sent_to_two_replicas_at_once_with_one_key_queues_one_run() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, admin_b) = (a.admin(), b.admin());
    admin_a.declare_target("db").await;
    let req = to_value(&run_request("db", &["true"]));
    let submit = |client: &Client, key: String| {
        let (client, req) = (client.clone(), req.clone());
        async move {
            client
                .call_with(
                    reqwest::Method::POST,
                    "/v1/runs",
                    Some(req),
                    &[("Idempotency-Key", &key)],
                )
                .await
        }
    };
    // Each pair races: the replicas run submissions side by side, so
    // without the key's lock the second would insert a run of its own and
    // fail on the key (a 500) instead of replaying the first.
    for i in 0..8 {
        let key = format!("race-{i}");
        let (one, two) = tokio::join!(submit(&admin_a, key.clone()), submit(&admin_b, key));
        let one: RunCreated = one.ok().parse();
        let two: RunCreated = two.ok().parse();
        assert_eq!(one.id, two.id, "pair {i} queued two runs");
    }
    let list: sealrun_wire::run::RunList = admin_a.get("/v1/runs").await.ok().parse();
    assert_eq!(list.runs.len(), 8);
}

#[tokio::test]
async fn a_burst_queued_where_one_agent_waits_reaches_the_agents_waiting_on_another_replica() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let admin_a = a.admin();
    admin_a.declare_target("db").await;
    let here = FakeAgent::enroll(&a, &admin_a, "agent-a", &["db"]).await;
    let mut there = Vec::new();
    for i in 0..5 {
        let name = format!("agent-b{i}");
        there.push(FakeAgent::enroll_beside(&b, &b.admin(), &name, &here).await);
    }
    let polls: Vec<_> = there
        .into_iter()
        .map(|agent| tokio::spawn(async move { agent.poll().await }))
        .collect();
    // A's agent waits too: A wakes it for the burst and tells B so, for
    // each run (`p:`); B must still wake one of its own per run left.
    let poll_here = tokio::spawn(async move { here.poll().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let submissions: Vec<_> = (0..6)
        .map(|_| {
            let admin = admin_a.clone();
            async move {
                let created: RunCreated = admin
                    .post("/v1/runs", to_value(&run_request("db", &["true"])))
                    .await
                    .ok()
                    .parse();
                created.id
            }
        })
        .collect();
    let queued = futures_util::future::join_all(submissions).await;
    let mut assigned = Vec::new();
    for poll in polls {
        let run = tokio::time::timeout(PROMPTLY, poll)
            .await
            .expect("an agent on the other replica was left waiting with runs queued")
            .unwrap()
            .expect("an assignment");
        assigned.push(run.run_id);
    }
    assigned.extend(poll_here.await.unwrap().map(|run| run.run_id));
    assert!(assigned.iter().all(|id| queued.contains(id)));
    let mut distinct = assigned.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), assigned.len(), "a run was handed out twice");
}

/// Submits `cat` on target `db` with input, through `admin`; the run id.
async fn submit_with_input(admin: &Client) -> String {
    let mut req = run_request("db", &["cat"]);
    req.stdin = true;
    admin.submit_request(&req).await
}

/// A request body sending `chunks`, then its end.
fn body_of(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

/// 48 chunks of 64 KiB (six times what the relay holds between its two
/// sides), each holding its own number, so that a chunk lost, repeated or
/// out of order shows.
fn numbered_input() -> Vec<Vec<u8>> {
    (0..48u32)
        .map(|i| {
            format!("chunk {i:04} ")
                .into_bytes()
                .into_iter()
                .cycle()
                .take(64 * 1024)
                .collect()
        })
        .collect()
}

/// Sends `chunks` as run `id`'s input through `submitter`, in a task.
fn feed(submitter: &Client, id: &str, chunks: Vec<Vec<u8>>) -> tokio::task::JoinHandle<StdinSent> {
    let (submitter, path) = (submitter.clone(), format!("/v1/runs/{id}/stdin"));
    tokio::spawn(async move {
        submitter
            .put_body(&path, body_of(chunks))
            .await
            .ok()
            .parse()
    })
}

#[tokio::test]
async fn input_sent_to_one_replica_reaches_the_agent_reading_from_another_whole_and_in_order() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    let input = numbered_input();
    let fed = feed(&admin_a, &id, input.clone());
    assert_eq!(agent.next_run().await.run_id, id);
    let (status, read) = tokio::time::timeout(PROMPTLY, agent.read_stdin(&id))
        .await
        .expect("the input arrived");
    assert_eq!(status, StatusCode::OK);
    let read = read.expect("the input ended, not broke off");
    assert!(read == input.concat(), "the input arrived changed");
    let sent = fed.await.unwrap();
    assert_eq!(
        sent,
        StdinSent {
            bytes: 48 * 64 * 1024,
            complete: true
        }
    );
    agent
        .finish(&id, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    let run = admin_a.run(&id).await;
    assert_eq!(run.stdin_bytes, Some(48 * 64 * 1024));
}

#[tokio::test]
async fn an_agent_reading_before_the_input_is_sent_to_another_replica_gets_it() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    assert_eq!(agent.next_run().await.run_id, id);
    let reading = {
        let id = id.clone();
        tokio::spawn(async move { agent.read_stdin(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!reading.is_finished(), "the read ended before any input");
    let fed = feed(&admin_a, &id, vec![b"select 1;\n".to_vec()]);
    let (status, read) = tokio::time::timeout(PROMPTLY, reading)
        .await
        .expect("the input arrived")
        .unwrap();
    assert_eq!(
        (status, read.unwrap()),
        (StatusCode::OK, b"select 1;\n".to_vec())
    );
    assert!(fed.await.unwrap().complete);
}

#[tokio::test]
async fn input_that_breaks_off_on_one_replica_cuts_the_agents_read_on_another() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    assert_eq!(agent.next_run().await.run_id, id);
    let (tx, feeding) = admin_a.put_fed(&format!("/v1/runs/{id}/stdin"));
    tx.send(Ok(b"part of a migration".to_vec())).await.unwrap();
    let reading = {
        let id = id.clone();
        tokio::spawn(async move { agent.read_stdin(&id).await })
    };
    // Positive control: while the submitter is still sending, the read
    // goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !reading.is_finished(),
        "the read ended while input was coming"
    );
    tx.send(Err(std::io::Error::other("the submitter's pipe broke")))
        .await
        .unwrap();
    drop(tx);
    let (status, read) = tokio::time::timeout(PROMPTLY, reading)
        .await
        .expect("the read ended")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(read.is_err(), "a broken input read as complete: {read:?}");
    feeding.abort();
}

#[tokio::test]
async fn a_runs_input_is_sent_once_and_read_once_across_replicas() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    let first = feed(&admin_a, &id, vec![b"once".to_vec()]);
    // The first feed has attached once this read sees it taken.
    assert_eq!(agent.next_run().await.run_id, id);
    let (status, read) = agent.read_stdin(&id).await;
    assert_eq!((status, read.unwrap()), (StatusCode::OK, b"once".to_vec()));
    assert!(first.await.unwrap().complete);
    let again = b
        .admin()
        .put_body(
            &format!("/v1/runs/{id}/stdin"),
            body_of(vec![b"twice".to_vec()]),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("can be sent once"), "{}", again.text);
    // Read again, on B and on A.
    let (status, _) = agent.read_stdin(&id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let through_a = agent.through(&a);
    let (status, _) = through_a.read_stdin(&id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // And on a replica that holds nothing of it in memory: only the
    // database's record says it was read.
    let (c, _c_dir) = another_replica(&a).await;
    let through_c = agent.through(&c);
    let (status, read) = through_c.read_stdin(&id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{read:?}");
}

#[tokio::test]
async fn an_agent_that_stops_reading_on_one_replica_ends_the_feed_on_another_as_incomplete() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    // A pipe held open: the feed ends only if the control plane ends it.
    let (tx, feeding) = admin_a.put_fed(&format!("/v1/runs/{id}/stdin"));
    tx.send(Ok(b"select 1;\n".to_vec())).await.unwrap();
    assert_eq!(agent.next_run().await.run_id, id);
    let mut reading = agent.open_stdin(&id).await;
    assert_eq!(
        reading.chunk().await.unwrap().as_deref(),
        Some(&b"select 1;\n"[..])
    );
    // Positive control: while the agent reads, the feed goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!feeding.is_finished(), "the feed ended while read");
    // The command closed its stdin: the agent drops the stream.
    drop(reading);
    let answer = tokio::time::timeout(PROMPTLY, feeding)
        .await
        .expect("the feed was ended")
        .unwrap()
        .expect("an answer");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let sent: StdinSent = answer.parse();
    assert!(!sent.complete, "{sent:?}");
    drop(tx);
}

/// A connection to `server`'s database, for a test to look at what is
/// stored; and its task.
async fn database(
    server: &InProcessServer,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let url = &server.database.as_ref().unwrap().url_text;
    let (pg, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    (pg, tokio::spawn(connection))
}

/// Rows of run `id`'s relay between replicas: its record, and its chunks.
async fn relay_rows(pg: &tokio_postgres::Client, id: &str) -> (i64, i64) {
    let row = pg
        .query_one(
            "SELECT (SELECT COUNT(*) FROM input_relays WHERE run_id = $1),
                    (SELECT COUNT(*) FROM input_chunks WHERE run_id = $1)",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_run_canceled_mid_input_between_replicas_leaves_nothing_of_it_in_the_database() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (pg, connection) = database(&a).await;
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    // More than the relay holds, sent while nobody reads.
    let (tx, feeding) = admin_a.put_fed(&format!("/v1/runs/{id}/stdin"));
    for _ in 0..40 {
        tx.send(Ok(vec![b'x'; 64 * 1024])).await.unwrap();
    }
    assert_eq!(agent.next_run().await.run_id, id);
    // The agent asks for the input and does not read it.
    let unread = agent.open_stdin(&id).await;
    // Positive control: chunks wait in the database.
    tokio::time::timeout(PROMPTLY, async {
        while relay_rows(&pg, &id).await.1 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("chunks were passed on through the database");
    let canceled = admin_a
        .post(&format!("/v1/runs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.text);
    agent.finish(&id, RunStatus::Canceled, None, 0).await;
    drop(tx);
    let left = tokio::time::timeout(PROMPTLY, async {
        loop {
            let rows = relay_rows(&pg, &id).await;
            if rows == (0, 0) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        left.is_ok(),
        "left in the database: {:?}",
        relay_rows(&pg, &id).await
    );
    // Nothing comes back after the relay is gone (the feeder's replica
    // wakes and tries to go on).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(relay_rows(&pg, &id).await, (0, 0));
    drop(unread);
    feeding.abort();
    drop(pg);
    connection.await.unwrap().unwrap();
}

#[tokio::test]
async fn input_passed_between_replicas_is_in_the_database_only_sealed_and_only_until_read() {
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    // Every chunk PostgreSQL is given is copied aside as it is inserted.
    let (pg, connection) = database(&a).await;
    pg.batch_execute(
        "CREATE TABLE seen_chunks (sealed BYTEA);
         CREATE FUNCTION copy_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO seen_chunks VALUES (NEW.sealed); RETURN NEW; END $$;
         CREATE TRIGGER copy_chunk AFTER INSERT ON input_chunks
             FOR EACH ROW EXECUTE FUNCTION copy_chunk();",
    )
    .await
    .unwrap();
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    let input = numbered_input();
    let fed = feed(&admin_a, &id, input.clone());
    assert_eq!(agent.next_run().await.run_id, id);
    let (_, read) = agent.read_stdin(&id).await;
    assert!(read.unwrap() == input.concat());
    assert!(fed.await.unwrap().complete);

    let seen: Vec<Vec<u8>> = pg
        .query("SELECT sealed FROM seen_chunks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Positive control: the input did go through the database.
    assert!(
        seen.len() > 48,
        "{} chunks passed through PostgreSQL",
        seen.len()
    );
    let marker = b"chunk 0007 chunk";
    assert!(input.concat().windows(marker.len()).any(|w| w == marker));
    for sealed in &seen {
        assert!(
            !sealed.windows(marker.len()).any(|w| w == marker),
            "a chunk was stored in the clear"
        );
    }
    let left: i64 = pg
        .query_one("SELECT COUNT(*) FROM input_chunks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "chunks read were left in the database");
    drop(pg);
    connection.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_size_of_a_runs_input_is_recorded_though_its_agent_reports_the_end_to_a_third_replica()
{
    let Some((a, b, _dir)) = replicas().await else {
        return;
    };
    let (admin_a, agent) = target_on_a_agent_on_b(&a, &b).await;
    let id = submit_with_input(&admin_a).await;
    let fed = feed(&admin_a, &id, vec![b"select 1;\n".to_vec(); 3]);
    assert_eq!(agent.next_run().await.run_id, id);
    let (_, read) = agent.read_stdin(&id).await;
    assert_eq!(read.unwrap().len(), 30);
    assert!(fed.await.unwrap().complete);
    // The same agent, its end reported through a third replica, which
    // relayed nothing (A passed the input on, and counted it too).
    let (c, _c_dir) = another_replica(&a).await;
    let through_c = agent.through(&c);
    through_c
        .finish(&id, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    let recorded = tokio::time::timeout(PROMPTLY, async {
        loop {
            let run = admin_a.run(&id).await;
            if run.stdin_bytes.is_some() {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the input's size was recorded");
    assert_eq!(recorded.status, RunStatus::Succeeded);
    assert_eq!(recorded.stdin_bytes, Some(30));
}
