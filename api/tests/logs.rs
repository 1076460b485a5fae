//! Run output: idempotent sequenced uploads, gaps, the size cap, pages and
//! followed streams.
#![allow(clippy::unwrap_used)]

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use sealrun_api::Settings;
use sealrun_testkit::{InProcessWorld, World, quick_settings};
use sealrun_wire::log::{LogEvent, LogPage, StreamKind};
use sealrun_wire::run::RunStatus;
use std::time::Duration;

async fn running(w: &InProcessWorld) -> String {
    let run = w.admin.submit("db", &["cat"], &[]).await;
    assert_eq!(w.agent.next_run().await.run_id, run);
    run
}

async fn page(w: &InProcessWorld, run: &str, after: u64) -> LogPage {
    w.admin
        .get(&format!("/v1/runs/{run}/logs?after={after}"))
        .await
        .ok()
        .parse()
}

fn text(p: &LogPage) -> String {
    p.chunks
        .iter()
        .map(|c| String::from_utf8_lossy(&c.data.0).into_owned())
        .collect()
}

#[tokio::test]
async fn a_retried_log_chunk_is_stored_once() {
    let w = World::in_process().await;
    let run = running(&w).await;
    let ack = w
        .agent
        .upload_ok(&run, &[(0, b"one\n"), (1, b"two\n")])
        .await;
    assert_eq!(ack.next_seq, 2);
    // The same batch again (its answer was lost), then overlapping.
    w.agent
        .upload_ok(&run, &[(0, b"one\n"), (1, b"two\n")])
        .await;
    let ack = w
        .agent
        .upload_ok(&run, &[(1, b"two\n"), (2, b"three\n")])
        .await;
    assert_eq!(ack.next_seq, 3);
    let p = page(&w, &run, 0).await;
    assert_eq!(text(&p), "one\ntwo\nthree\n");
    assert_eq!(
        p.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(w.admin.run(&run).await.log_bytes, 14);
}

#[tokio::test]
async fn a_chunk_resent_with_other_bytes_keeps_the_first() {
    let w = World::in_process().await;
    let run = running(&w).await;
    w.agent.upload_ok(&run, &[(0, b"original")]).await;
    w.agent.upload_ok(&run, &[(0, b"replaced")]).await;
    assert_eq!(text(&page(&w, &run, 0).await), "original");
}

#[tokio::test]
async fn next_seq_points_at_the_first_gap_and_readers_stop_before_it() {
    let w = World::in_process().await;
    let run = running(&w).await;
    let ack = w.agent.upload_ok(&run, &[(0, b"a"), (2, b"c")]).await;
    assert_eq!(ack.next_seq, 1);
    let p = page(&w, &run, 0).await;
    assert_eq!(text(&p), "a", "a live run is served only up to the gap");
    assert_eq!(p.next_seq, 1);
    let ack = w.agent.upload_ok(&run, &[(1, b"b")]).await;
    assert_eq!(ack.next_seq, 3);
    let p = page(&w, &run, 1).await;
    assert_eq!(text(&p), "bc");
    assert_eq!(p.next_seq, 3);
    assert_eq!(p.status, RunStatus::Running);
}

#[tokio::test]
async fn output_past_the_cap_ends_in_an_explicit_truncation_marker() {
    let w = World::in_process_with(Settings {
        max_log_bytes: 10,
        ..quick_settings()
    })
    .await;
    let run = running(&w).await;
    let ack = w
        .agent
        .upload_ok(
            &run,
            &[(0, b"12345"), (1, b"6789"), (2, b"abcdef"), (3, b"g")],
        )
        .await;
    assert!(ack.truncated);
    assert_eq!(
        ack.next_seq, 4,
        "dropped chunks count as taken, so the agent stops resending"
    );
    let ack = w.agent.upload_ok(&run, &[(4, b"more")]).await;
    assert!(ack.truncated);
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 5)
        .await
        .ok();
    let p = page(&w, &run, 0).await;
    assert_eq!(p.chunks.len(), 3);
    let marker = &p.chunks[2];
    assert_eq!(marker.stream, StreamKind::System);
    assert!(
        String::from_utf8_lossy(&marker.data.0)
            .contains("log exceeded limit of 10 bytes; further output dropped")
    );
    let v = w.admin.run(&run).await;
    assert!(v.log_truncated);
    assert_eq!(v.log_bytes, 9);
}

#[tokio::test]
async fn a_chunk_larger_than_the_chunk_limit_is_a_413() {
    let w = World::in_process_with(Settings {
        max_chunk_bytes: 8,
        ..quick_settings()
    })
    .await;
    let run = running(&w).await;
    w.agent
        .upload(&run, &[(0, b"123456789")])
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_followed_log_streams_chunks_as_they_come_and_ends_with_the_run() {
    let w = World::in_process().await;
    let run = running(&w).await;
    w.agent.upload_ok(&run, &[(0, b"first\n")]).await;
    let resp = w
        .server
        .http
        .get(format!("{}/v1/runs/{run}/logs?follow=true", w.server.url))
        .bearer_auth(&w.server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let reader = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(piece) = body.next().await {
            buf.extend_from_slice(&piece.unwrap());
        }
        buf
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.agent.upload_ok(&run, &[(1, b"second\n")]).await;
    w.agent.upload_ok(&run, &[(2, b"third\n")]).await;
    w.agent
        .finish(&run, RunStatus::Failed, Some(3), 3)
        .await
        .ok();
    let body = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ends when the run does")
        .unwrap();
    let events: Vec<LogEvent> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let mut out = String::new();
    for e in &events[..events.len() - 1] {
        let LogEvent::Chunk(c) = e else {
            panic!("{e:?}")
        };
        out.push_str(&String::from_utf8_lossy(&c.data.0));
    }
    assert_eq!(out, "first\nsecond\nthird\n");
    let LogEvent::End(end) = events.last().unwrap() else {
        panic!()
    };
    assert_eq!((end.status, end.exit_code), (RunStatus::Failed, Some(3)));
}

#[tokio::test]
async fn following_a_finished_run_sends_everything_then_the_end() {
    let w = World::in_process().await;
    let run = running(&w).await;
    w.agent.upload_ok(&run, &[(0, b"a"), (1, b"b")]).await;
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 2)
        .await
        .ok();
    let a = w
        .admin
        .get(&format!("/v1/runs/{run}/logs?follow=true&after=1"))
        .await;
    let lines: Vec<LogEvent> = a
        .text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(matches!(&lines[0], LogEvent::Chunk(c) if c.seq == 1));
    assert!(matches!(&lines[1], LogEvent::End(e) if e.status == RunStatus::Succeeded));
}

#[tokio::test]
async fn a_follow_of_a_canceled_queued_run_ends_at_once() {
    let w = World::in_process().await;
    let run = w.admin.submit("db", &["true"], &[]).await;
    let client = w.admin.clone();
    let path = format!("/v1/runs/{run}/logs?follow=true");
    let follower = tokio::spawn(async move { client.get(&path).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.admin
        .post(&format!("/v1/runs/{run}/cancel"), serde_json::json!({}))
        .await
        .ok();
    let a = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .unwrap()
        .unwrap();
    assert!(a.text.contains("\"end\""), "{}", a.text);
    assert!(a.text.contains("canceled"));
}

#[tokio::test]
async fn uploads_after_the_run_ended_are_refused_unless_they_fill_a_gap() {
    let w = World::in_process().await;
    let run = running(&w).await;
    w.agent.upload_ok(&run, &[(0, b"a")]).await;
    w.agent
        .finish(&run, RunStatus::Succeeded, Some(0), 2)
        .await
        .ok();
    // Chunk 1 was announced by finish (next_seq 2) but arrives late: taken.
    let ack = w.agent.upload_ok(&run, &[(1, b"b")]).await;
    assert_eq!(ack.next_seq, 2);
    w.agent
        .upload(&run, &[(2, b"c")])
        .await
        .error(StatusCode::CONFLICT);
    assert_eq!(text(&page(&w, &run, 0).await), "ab");
}
