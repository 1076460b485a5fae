//! End to end through the real `sealrun server` and `sealrun agent` processes
//! and Docker: an admin links a Slack workspace and an operator with the CLI,
//! a signed `/sealrun run` arrives over HTTPS, the agent runs it with a
//! secret the command prints, and the result reaches a local HTTP server
//! standing in for Slack's `response_url`: exit code 3, the secret masked.
#![allow(clippy::unwrap_used)]

use hmac::{Hmac, Mac as _};
use sealrun_testkit::{ControlPlane as _, World, require_docker};
use serde_json::Value;
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TEAM: &str = "T0E2E";
const USER: &str = "U0OPERATOR";
const SIGNING_SECRET: &str = "e2e0signing0secret0123456789abcd";
const SECRET_NAME: &str = "API_TOKEN";
const SECRET_VALUE: &str = "slack-e2e-Secret-Value-77";

/// `application/x-www-form-urlencoded` encoding of one value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Accepts one POST on loopback and returns its URL and its JSON body.
async fn response_url() -> (String, tokio::task::JoinHandle<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/commands/{TEAM}/1/abc",
        listener.local_addr().unwrap().port()
    );
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
            let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            assert!(head.starts_with("post "), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap();
            if buf.len() >= i + 4 + len {
                sock.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                )
                .await
                .unwrap();
                return serde_json::from_slice(&buf[i + 4..i + 4 + len]).unwrap();
            }
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_slash_command_runs_in_docker_and_its_masked_result_is_posted_back() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let cli = world.server.cli(&world.server.admin_token);

    let out = cli.output_with_stdin(
        &["slack", "link-workspace", "--team-id", TEAM],
        format!("{SIGNING_SECRET}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli.output(&[
        "slack",
        "link-user",
        "--team-id",
        TEAM,
        "--user",
        USER,
        "--name",
        "olivia",
        "--role",
        "operator",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli.output(&["slack", "users", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("olivia"));
    world
        .admin
        .set_secret(&world.target, SECRET_NAME, SECRET_VALUE.as_bytes())
        .await;

    let (url, posted) = response_url().await;
    let text = format!(
        "run {} --secret {SECRET_NAME} -- sh -c 'echo ${SECRET_NAME}; exit 3'",
        world.target
    );
    let body = [
        ("token", "unused"),
        ("team_id", TEAM),
        ("team_domain", "e2e"),
        ("channel_id", "C0E2E"),
        ("user_id", USER),
        ("user_name", "olivia"),
        ("command", "/sealrun"),
        ("text", &text),
        ("response_url", &url),
        ("trigger_id", "1.2.3"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));

    let ack = world
        .server
        .http()
        .post(format!(
            "{}/v1/integrations/slack/commands",
            world.server.url
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), 200);
    let ack: Value = ack.json().await.unwrap();
    let ack_text = ack["text"].as_str().unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(ack_text.starts_with("Queued run `run_"), "{ack_text}");
    let run_id = ack_text.split('`').nth(1).unwrap().to_owned();

    let message = tokio::time::timeout(Duration::from_secs(120), posted)
        .await
        .expect("the result reaches response_url")
        .unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains(&run_id) && text.contains("*failed*") && text.contains("exit code 3"),
        "{text}"
    );
    assert!(text.contains("***"), "the printed secret is masked: {text}");
    assert!(
        !text.contains(SECRET_VALUE),
        "the secret never reaches Slack: {text}"
    );

    let run = world.admin.run(&run_id).await;
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.submitter, format!("slack:{TEAM}/{USER} (olivia)"));
    world.assert_no_containers();
}
