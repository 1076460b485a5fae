//! A run's input: relayed from its submitter to the agent holding the run,
//! in order, with its end, never stored; a broken feed is told apart from a
//! finished one; only the submitter feeds, once, and the agent reads once.
#![allow(clippy::unwrap_used)]

use axum::body::Bytes;
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use sealrun_testkit::{InProcessWorld, World};
use sealrun_wire::admin::Role;
use sealrun_wire::run::{RunStatus, StdinSent};

/// Submits `argv` with input as the admin; the run id.
async fn submit_with_input(w: &InProcessWorld) -> String {
    let mut req = w.request(&["cat"]);
    req.stdin = true;
    w.admin.submit_request(&req).await
}

fn stdin_path(id: &str) -> String {
    format!("/v1/runs/{id}/stdin")
}

fn body_of(chunks: Vec<Result<Bytes, std::io::Error>>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn the_input_reaches_the_agent_in_order_with_its_end_and_its_size_is_recorded() {
    let w = World::in_process().await;
    let id = submit_with_input(&w).await;
    // The submitter sends before any agent takes the run: the feed waits.
    let feeder = {
        let admin = w.admin.clone();
        let path = stdin_path(&id);
        tokio::spawn(async move {
            let chunks = vec![
                Ok(Bytes::from("select 1;\n")),
                Ok(Bytes::from("select 2;\n")),
            ];
            admin.put_body(&path, body_of(chunks)).await
        })
    };
    let assignment = w.agent.next_run().await;
    assert_eq!(assignment.run_id, id);
    assert!(assignment.stdin, "the assignment says input follows");
    let (status, body) = w.agent.read_stdin(&id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap(), b"select 1;\nselect 2;\n");
    let answer = feeder.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let sent: StdinSent = answer.parse();
    assert_eq!(
        sent,
        StdinSent {
            bytes: 20,
            complete: true
        }
    );
    w.agent
        .finish(&id, RunStatus::Succeeded, Some(0), 0)
        .await
        .ok();
    let run = w.admin.run(&id).await;
    assert!(run.stdin);
    assert_eq!(run.stdin_bytes, Some(20));
}

#[tokio::test]
async fn input_that_fits_the_relay_is_answered_complete_before_any_agent_reads_it() {
    let w = World::in_process().await;
    let id = submit_with_input(&w).await;
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        w.admin.put_body(
            &stdin_path(&id),
            body_of(vec![Ok(Bytes::from("select 1;\n"))]),
        ),
    )
    .await
    .expect("answered without an agent");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.parse::<StdinSent>().complete);
    // Positive control: the input is still there for the agent.
    assert_eq!(w.agent.next_run().await.run_id, id);
    assert_eq!(w.agent.read_stdin(&id).await.1.unwrap(), b"select 1;\n");
}

#[tokio::test]
async fn a_feed_that_breaks_off_cuts_the_agents_stream_instead_of_ending_it() {
    let w = World::in_process().await;
    let id = submit_with_input(&w).await;
    w.agent.next_run().await;
    let (tx, feeder) = w.admin.put_fed(&stdin_path(&id));
    tx.send(Ok(b"part of a migration".to_vec())).await.unwrap();
    let resp = w.agent.open_stdin(&id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream();
    // Positive control: what was sent arrives.
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, "part of a migration");
    // The submitter dies mid-way.
    tx.send(Err(std::io::Error::other("the submitter died")))
        .await
        .unwrap();
    let rest = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the cut reaches the agent at once");
    assert!(
        matches!(rest, Some(Err(_))),
        "a cut-off feed must not read as a complete one: {rest:?}"
    );
    feeder.await.unwrap();
}

#[tokio::test]
async fn only_the_runs_submitter_may_send_its_input() {
    let w = World::in_process().await;
    let id = submit_with_input(&w).await;
    let other = w.admin.token("other-operator", Role::Operator).await;
    let answer = other
        .put_body(&stdin_path(&id), body_of(vec![Ok(Bytes::from("x"))]))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(
        answer
            .error(StatusCode::FORBIDDEN)
            .contains("only the submitter")
    );
    // Positive control: the submitter may.
    w.agent.next_run().await;
    let feeder = {
        let admin = w.admin.clone();
        let path = stdin_path(&id);
        tokio::spawn(async move {
            admin
                .put_body(&path, body_of(vec![Ok(Bytes::from("x"))]))
                .await
        })
    };
    assert_eq!(w.agent.read_stdin(&id).await.1.unwrap(), b"x");
    assert_eq!(feeder.await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn a_run_submitted_without_input_refuses_input() {
    let w = World::in_process().await;
    let id = w.submit(&["cat"]).await;
    let answer = w
        .admin
        .put_body(&stdin_path(&id), body_of(vec![Ok(Bytes::from("x"))]))
        .await;
    assert!(answer.error(StatusCode::CONFLICT).contains("without input"));
    let assignment = w.agent.next_run().await;
    assert!(!assignment.stdin);
    let (status, _) = w.agent.read_stdin(&id).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn input_is_sent_once_and_read_once() {
    let w = World::in_process().await;
    let id = submit_with_input(&w).await;
    let first = {
        let admin = w.admin.clone();
        let path = stdin_path(&id);
        tokio::spawn(async move {
            admin
                .put_body(&path, body_of(vec![Ok(Bytes::from("once"))]))
                .await
        })
    };
    w.agent.next_run().await;
    assert_eq!(w.agent.read_stdin(&id).await.1.unwrap(), b"once");
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    let again = w
        .admin
        .put_body(&stdin_path(&id), body_of(vec![Ok(Bytes::from("twice"))]))
        .await;
    assert!(
        again.error(StatusCode::CONFLICT).contains("once"),
        "{}",
        again.text
    );
    let (status, _) = w.agent.read_stdin(&id).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_feed_waiting_for_an_agent_ends_when_the_run_is_canceled() {
    let w = World::in_process().await;
    w.admin.declare_target("idle").await;
    let mut req = w.request(&["cat"]);
    req.target = "idle".into();
    req.stdin = true;
    let id = w.admin.submit_request(&req).await;
    // More than the relay holds, so the feed blocks until the run ends.
    let feeder = {
        let admin = w.admin.clone();
        let path = stdin_path(&id);
        tokio::spawn(async move {
            let chunks = (0..64)
                .map(|_| Ok(Bytes::from(vec![b'x'; 64 * 1024])))
                .collect();
            admin.put_body(&path, body_of(chunks)).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!feeder.is_finished(), "the feed waits for an agent");
    w.admin.cancel(&id).await;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), feeder)
        .await
        .expect("the feed ends once the run is canceled")
        .unwrap();
    let sent: StdinSent = answer.parse();
    assert!(!sent.complete);
}
