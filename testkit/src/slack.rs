//! Slack, as the tests play it: requests signed the way Slack signs them
//! ([`sign`]), and [`StandIn`], a plain-HTTP server on loopback that
//! stands in for Slack's Web API and `response_url`s and hands every
//! request it receives to the test.

use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// Unix seconds now, as Slack stamps requests.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `X-Slack-Signature` for `body` signed with `secret` at Unix seconds `ts`.
pub fn sign(secret: &str, ts: i64, body: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

/// A fresh `trigger_id`: Slack's are unique per request, so two identical
/// requests are one request sent twice.
pub fn trigger_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{n}.47445629121.803a0bc887a14d10d2c447fce8b6703c")
}

/// The form body of a `/sealrun` slash command: `text` typed by Slack
/// user `user` of workspace `team`, answered later at `response_url`.
pub fn command_form(team: &str, user: &str, text: &str, response_url: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("token", "legacy-unused")
        .append_pair("team_id", team)
        .append_pair("team_domain", "acme")
        .append_pair("channel_id", "C0123")
        .append_pair("user_id", user)
        .append_pair("user_name", "someone")
        .append_pair("command", "/sealrun")
        .append_pair("text", text)
        .append_pair("response_url", response_url)
        .append_pair("trigger_id", &trigger_id())
        .finish()
}

/// `sealrun slack link-workspace --team-id TEAM` through `admin`, the
/// signing secret on stdin, as an admin links a workspace.
pub fn link_workspace(admin: &crate::Cli, team: &str, signing_secret: &str) {
    let out = admin.output_with_stdin(
        &["slack", "link-workspace", "--team-id", team],
        format!("{signing_secret}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The form body of an interaction (a button click): `payload=<JSON>`.
pub fn interaction_form(payload: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// Sends [`command_form`] to `server` as Slack would, signed with the
/// workspace's `signing_secret` now: the HTTP status and the JSON answer.
pub async fn slash_command(
    server: &impl crate::ControlPlane,
    signing_secret: &str,
    (team, user): (&str, &str),
    text: &str,
    response_url: &str,
) -> (u16, Value) {
    let body = command_form(team, user, text, response_url);
    let ts = now_secs();
    let signature = sign(signing_secret, ts, &body);
    let answer = server
        .http()
        .post(format!("{}/v1/integrations/slack/commands", server.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .expect("the slash command reaches the server");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("a JSON answer"))
}

/// A request the stand-in received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its path (`/api/chat.postMessage`, `/actions/...`).
    pub path: String,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Its JSON body (`Null` if it had none or it was not JSON).
    pub body: Value,
}

/// Slack's Web API and `response_url`s on loopback. Web API methods answer
/// `{"ok": true, ...}` (a posted message gets a fresh `ts`); anything else
/// answers `ok`.
#[derive(Debug)]
pub struct StandIn {
    base: String,
    rx: mpsc::UnboundedReceiver<Received>,
    /// Received, skipped by [`StandIn::next_to`], not taken yet.
    held: Vec<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    /// Starts listening on a free loopback port.
    pub async fn start() -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut posted = 0u64;
            while let Ok((mut sock, _)) = listener.accept().await {
                posted += 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(received) = read_request(&mut sock).await {
                        let answer = if received.path.ends_with("/chat.postMessage") {
                            json!({"ok": true, "channel": received.body["channel"], "ts": format!("1700000000.{posted:06}")})
                        } else if received.path.starts_with("/api/") {
                            json!({"ok": true})
                        } else {
                            json!("ok")
                        };
                        let body = answer.to_string();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(body.as_bytes()).await;
                        // Handed to the test once answered, as Slack would
                        // have taken it by then.
                        let _ = tx.send(received);
                    }
                });
            }
        });
        StandIn {
            base: format!("http://127.0.0.1:{port}"),
            rx,
            held: Vec::new(),
            task,
        }
    }

    /// Its Web API URL (for `ServerConfig::slack_api_url`).
    pub fn api_url(&self) -> String {
        format!("{}/api/", self.base)
    }

    /// A `response_url` on it.
    pub fn response_url(&self) -> String {
        self.url("/actions/T0SEALRUN/1/xyz")
    }

    /// A URL on it with `path` (a `response_url`, say).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The next request it receives (within 30 s, or the test fails).
    pub async fn next(&mut self) -> Received {
        self.next_within(Duration::from_secs(30)).await
    }

    /// The next request it receives, within `wait` (or the test fails).
    pub async fn next_within(&mut self, wait: Duration) -> Received {
        if !self.held.is_empty() {
            return self.held.remove(0);
        }
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("Slack received nothing within {wait:?}"))
            .expect("the stand-in stopped")
    }

    /// The next request to `path` (a Web API method like
    /// `chat.postMessage`, or `actions` for a `response_url`), within 30 s.
    /// Requests to other paths received meanwhile are kept, in order, for
    /// later calls.
    pub async fn next_to(&mut self, path: &str) -> Received {
        let wanted = |r: &Received| {
            r.path.ends_with(&format!("/{path}")) || r.path.starts_with(&format!("/{path}/"))
        };
        if let Some(i) = self.held.iter().position(wanted) {
            return self.held.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = tokio::time::timeout(left, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("Slack received no {path} within 30 s"))
                .expect("the stand-in stopped");
            if wanted(&got) {
                return got;
            }
            self.held.push(got);
        }
    }

    /// Requests received so far and not yet taken.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = std::mem::take(&mut self.held);
        while let Ok(r) = self.rx.try_recv() {
            out.push(r);
        }
        out
    }
}

/// One HTTP/1.1 request off `sock`.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, len) = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let authorization = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    Some(Received {
        path,
        authorization,
        body,
    })
}
