//! The one typed client of the control plane's HTTP API for tests: HTTPS
//! pinned to the server's generated CA, a bearer token, typed `sealrun_wire`
//! requests and responses for the common calls, and raw [`Answer`]s (status,
//! body, content type) for tests that assert on them.

use crate::wait::{WAIT, wait_for, wait_for_within};
use reqwest::{Method, StatusCode};
use sealrun_vault::SealedSecret;
use sealrun_wire::admin::{EnrollmentToken, PublicKeyView, Role, TargetSpec, TokenCreated};
use sealrun_wire::audit::{AuditEntry, AuditPage};
use sealrun_wire::log::{LogChunk, LogEvent, LogPage, RunEnd, StreamKind};
use sealrun_wire::run::{RunCreated, RunRequest, RunStatus, RunView};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// An HTTPS client trusting only the CA certificate at `ca_cert` (PEM), with
/// a [`WAIT`] timeout on every request.
pub fn https_client(ca_cert: &Path) -> reqwest::Client {
    https_client_with(ca_cert, reqwest::redirect::Policy::default())
}

/// [`https_client`] with the redirect policy `redirects`.
pub(crate) fn https_client_with(
    ca_cert: &Path,
    redirects: reqwest::redirect::Policy,
) -> reqwest::Client {
    let pem = std::fs::read(ca_cert)
        .unwrap_or_else(|e| panic!("cannot read the CA certificate {}: {e}", ca_cert.display()));
    let ca = reqwest::Certificate::from_pem(&pem)
        .unwrap_or_else(|e| panic!("{} is not a PEM certificate: {e}", ca_cert.display()));
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(redirects)
        .timeout(WAIT)
        .build()
        .expect("an HTTPS client")
}

/// `serde_json::to_value`, for request bodies.
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("the value serializes to JSON")
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, as text.
    pub text: String,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
}

impl Answer {
    /// The body as JSON; panics (with the body) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// The body as `T`; panics (with the body) if it does not parse.
    pub fn parse<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("unexpected body ({e}): {} {}", self.status, self.text))
    }

    /// Asserts the status and that the body is `{"error": "..."}`; returns
    /// the message.
    pub fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        let v = self.json();
        let obj = v.as_object().expect("an error body is a JSON object");
        assert_eq!(obj.len(), 1, "error body has only `error`: {v}");
        let msg = obj["error"]
            .as_str()
            .expect("`error` is a string")
            .to_owned();
        assert!(!msg.is_empty());
        msg
    }

    /// Asserts a 2xx status (the body is in the message otherwise).
    pub fn ok(&self) -> &Self {
        assert!(self.status.is_success(), "{} {}", self.status, self.text);
        self
    }
}

/// What feeds a body chunk by chunk ([`Client::put_fed`]): an `Err` breaks it
/// off, dropping it ends it.
pub type Feed = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;

/// A user (or agent) talking to the API with one token; no token at all when
/// the token is empty.
#[derive(Clone, Debug)]
pub struct Client {
    /// `https://localhost:<port>`.
    pub url: String,
    /// The HTTPS client, pinned to the server's CA.
    pub http: reqwest::Client,
    /// The bearer token (empty: none is sent).
    pub token: String,
}

impl Client {
    /// A client of `url` with `http` (see [`https_client`]) and `token`.
    pub fn new(url: &str, http: reqwest::Client, token: &str) -> Client {
        Client {
            url: url.to_owned(),
            http,
            token: token.to_owned(),
        }
    }

    /// The same client with another token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// Any request, with an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[]).await
    }

    /// Any request, with an optional JSON body and extra `headers`.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.url, path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("an ASCII content-type").to_owned());
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        Answer {
            status,
            text,
            content_type,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// `PUT path` with a streamed octet body (a run's input).
    pub async fn put_body(&self, path: &str, body: reqwest::Body) -> Answer {
        self.try_put_body(path, body)
            .await
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"))
    }

    /// Starts `PUT path` in a task with a streamed octet body fed from the
    /// sender returned, chunk by chunk as a test sends them; an `Err` sent
    /// breaks the body off, dropping the sender ends it. The task gives the
    /// answer, or `None` if the request failed (as one broken off may).
    pub fn put_fed(&self, path: &str) -> (Feed, tokio::task::JoinHandle<Option<Answer>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let (client, path) = (self.clone(), path.to_owned());
        let answer = tokio::spawn(async move { client.try_put_body(&path, body).await.ok() });
        (tx, answer)
    }

    async fn try_put_body(&self, path: &str, body: reqwest::Body) -> reqwest::Result<Answer> {
        let mut req = self
            .http
            .put(format!("{}{}", self.url, path))
            .header("content-type", "application/octet-stream")
            .body(body);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("an ASCII content-type").to_owned());
        let text = resp.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            text,
            content_type,
        })
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// Whether `GET /health` answers 200 (false when nothing answers).
    pub async fn health(&self) -> bool {
        matches!(self.http.get(format!("{}/health", self.url)).send().await, Ok(r) if r.status().is_success())
    }

    /// A new token with `role` (named `name`), as a client.
    pub async fn token(&self, name: &str, role: Role) -> Client {
        let a = self
            .post("/v1/tokens", json!({"name": name, "role": role}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        let created: TokenCreated = a.parse();
        self.with_token(&created.token)
    }

    /// Declares (or replaces) a target from its full spec.
    pub async fn put_target(&self, spec: &TargetSpec) {
        let a = self
            .put(&format!("/v1/targets/{}", spec.name), to_value(spec))
            .await;
        assert!(a.status.is_success(), "{}", a.text);
    }

    /// Declares target `name` in the default pool, running [`crate::IMAGE`].
    pub async fn declare_target(&self, name: &str) {
        self.declare_target_in(name, "default").await;
    }

    /// Declares target `name` in `pool`, running [`crate::IMAGE`] with a
    /// 600 s timeout.
    pub async fn declare_target_in(&self, name: &str, pool: &str) {
        let spec: TargetSpec = serde_json::from_value(json!({
            "name": name, "image": crate::IMAGE, "pool": pool, "timeout_secs": 600,
        }))
        .expect("a valid target spec");
        self.put_target(&spec).await;
    }

    /// A fresh enrollment token for `pool`: it enrolls one agent (the
    /// default), so each agent a test registers takes its own.
    pub async fn enrollment_token(&self, pool: &str) -> String {
        let a = self
            .post(&format!("/v1/pools/{pool}/enrollment-tokens"), json!({}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.parse::<EnrollmentToken>().token
    }

    /// Submits a run; returns its id.
    pub async fn submit_request(&self, request: &RunRequest) -> String {
        let a = self.post("/v1/runs", to_value(request)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.parse::<RunCreated>().id
    }

    /// Submits `argv` on `target` with `secrets`; returns the run's id.
    pub async fn submit(&self, target: &str, argv: &[&str], secrets: &[&str]) -> String {
        let mut request = run_request(target, argv);
        request.secrets = secrets.iter().map(|s| (*s).to_owned()).collect();
        self.submit_request(&request).await
    }

    /// The entries of the org's audit trail (its latest 1,000) that record
    /// `action` on `subject`, oldest first.
    pub async fn audit_of(&self, action: &str, subject: &str) -> Vec<AuditEntry> {
        let audit: AuditPage = self.get("/v1/audit?limit=1000").await.ok().parse();
        audit
            .entries
            .into_iter()
            .filter(|e| e.action == action && e.subject == subject)
            .collect()
    }

    /// How many entries of the org's audit trail (its latest 1,000) record
    /// `action` on `subject`.
    pub async fn audited(&self, action: &str, subject: &str) -> usize {
        self.audit_of(action, subject).await.len()
    }

    /// `GET /metrics` (the client holding the metrics token), expecting
    /// success.
    pub async fn metrics(&self) -> Metrics {
        let answer = self.get("/metrics").await;
        answer.ok();
        Metrics(answer.text)
    }

    /// `GET /v1/runs/{id}`.
    pub async fn run(&self, id: &str) -> RunView {
        let a = self.get(&format!("/v1/runs/{id}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        a.parse()
    }

    /// Every run submitted since `since_ms` (Unix ms), newest first, paging
    /// back through `GET /v1/runs`.
    pub async fn runs_since(&self, since_ms: i64) -> Vec<RunView> {
        let mut all: Vec<RunView> = Vec::new();
        loop {
            let before = all
                .last()
                .map(|r| format!("&before={}", r.id))
                .unwrap_or_default();
            let a = self
                .get(&format!("/v1/runs?since_ms={since_ms}&limit=100{before}"))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text);
            let page: sealrun_wire::run::RunList = a.parse();
            if page.runs.is_empty() {
                return all;
            }
            all.extend(page.runs);
        }
    }

    /// `POST /v1/runs/{id}/cancel`, expecting success.
    pub async fn cancel(&self, id: &str) {
        self.post(&format!("/v1/runs/{id}/cancel"), json!({}))
            .await
            .ok();
    }

    /// Seals `value` for `target` with its published key, as the CLI does,
    /// and stores it; returns what was stored.
    pub async fn set_secret(&self, target: &str, name: &str, value: &[u8]) -> SealedSecret {
        let key: PublicKeyView = self
            .get(&format!("/v1/targets/{target}/public-key"))
            .await
            .ok()
            .parse();
        let pk = sealrun_vault::PublicKey::from_base64(&key.key).expect("a valid public key");
        let sealed = sealrun_vault::seal(&pk, name, target, value).expect("sealing succeeds");
        let a = self
            .put(
                &format!("/v1/targets/{target}/secrets/{name}"),
                to_value(&sealed),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text);
        sealed
    }

    /// Waits until the run has status `status`.
    pub async fn wait_status(&self, id: &str, status: RunStatus) -> RunView {
        wait_for(&format!("run {id} to be {status}"), || async {
            let run = self.run(id).await;
            (run.status == status).then_some(run)
        })
        .await
    }

    /// Waits until the run reaches a terminal status.
    pub async fn wait_terminal(&self, id: &str) -> RunView {
        self.wait_terminal_within(id, WAIT).await
    }

    /// [`Client::wait_terminal`], for up to `within`.
    pub async fn wait_terminal_within(&self, id: &str, within: Duration) -> RunView {
        wait_for_within(within, &format!("run {id} to end"), || async {
            let run = self.run(id).await;
            run.status.is_terminal().then_some(run)
        })
        .await
    }

    /// Every stored chunk of the run, in order (all pages).
    pub async fn logs(&self, id: &str) -> Vec<LogChunk> {
        let mut chunks = Vec::new();
        loop {
            let page: LogPage = self
                .get(&format!("/v1/runs/{id}/logs?after={}", chunks.len()))
                .await
                .ok()
                .parse();
            if page.chunks.is_empty() {
                return chunks;
            }
            chunks.extend(page.chunks);
        }
    }

    /// The stored bytes of one stream of the run.
    pub async fn output(&self, id: &str, stream: StreamKind) -> Vec<u8> {
        self.logs(id)
            .await
            .into_iter()
            .filter(|c| c.stream == stream)
            .flat_map(|c| c.data.0)
            .collect()
    }

    /// The stored stdout of the run, as text.
    pub async fn stdout(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.output(id, StreamKind::Stdout).await).into_owned()
    }

    /// The stored stderr of the run, as text.
    pub async fn stderr(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.output(id, StreamKind::Stderr).await).into_owned()
    }

    /// Polls the run's stored stdout until it contains `needle`.
    pub async fn wait_output(&self, id: &str, needle: &str) {
        wait_for(&format!("run {id} to print {needle:?}"), || async {
            self.stdout(id).await.contains(needle).then_some(())
        })
        .await;
    }

    /// Follows the run's log (`?follow=true`, NDJSON) until the run ends and
    /// returns how it ended: the fastest way to learn that a run is over.
    pub async fn follow(&self, id: &str) -> RunEnd {
        let mut resp = self
            .http
            .get(format!("{}/v1/runs/{id}/logs?follow=true", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("follow {id}: {e}"));
        assert!(resp.status().is_success(), "follow {id}: {}", resp.status());
        let mut buf: Vec<u8> = Vec::new();
        loop {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.len() > 1 {
                    let event: LogEvent =
                        serde_json::from_slice(&line).expect("a log event per line");
                    if let LogEvent::End(end) = event {
                        return end;
                    }
                }
            }
            match resp
                .chunk()
                .await
                .unwrap_or_else(|e| panic!("follow {id}: {e}"))
            {
                Some(bytes) => buf.extend_from_slice(&bytes),
                None => panic!("the log of {id} ended without an end event"),
            }
        }
    }
}

/// A run request for `argv` on `target`, everything else default.
pub fn run_request(target: &str, argv: &[&str]) -> RunRequest {
    RunRequest {
        target: target.to_owned(),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: Default::default(),
        secrets: vec![],
        timeout_secs: None,
        image: None,
        require_agent: false,
        stdin: false,
        break_glass: None,
        runbook: None,
        signed: None,
    }
}

/// A `/metrics` exposition ([`Client::metrics`]).
#[derive(Clone, Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of `series` (a name with its labels, as the exposition
    /// writes it: `sealrun_connections_max{listener="api"}`), failing the
    /// test if it is not there.
    pub fn value(&self, series: &str) -> u64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{self}"))
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
