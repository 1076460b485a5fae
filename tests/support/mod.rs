//! The end-to-end harness: real `sealrun server` and `sealrun agent` processes
//! (the binary Cargo built for this package), a typed admin client over HTTPS
//! pinned to the server's generated CA, wait helpers, and Docker checks.
//!
//! ```ignore
//! mod support;
//! use support::{World, require_docker};
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn hello() {
//!     if !require_docker() { return; }
//!     let world = World::start().await;              // server + target + connected agent
//!     let id = world.submit(&["echo", "hi"]).await;  // POST /v1/runs on the world's target
//!     let run = world.admin.wait_terminal(&id).await;
//!     assert_eq!(world.admin.stdout(&id).await, "hi\n");
//! }
//! ```
//!
//! [`cli`] runs any client subcommand against a [`Server`] with a given token.
//!
//! Every process writes its output to a log file in the world's temporary
//! directory; when a test panics, dropping the processes prints the tail of each
//! log to stderr. Dropping a [`Server`] or [`Agent`] kills its process (SIGKILL)
//! and reaps it, so no process outlives its test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use sealrun_wire::admin::{EnrollmentToken, PublicKeyView, TargetSpec, TargetView};
use sealrun_wire::log::{LogChunk, LogEvent, LogPage, RunEnd, StreamKind};
use sealrun_wire::run::{RunCreated, RunRequest, RunSource, RunStatus, RunView};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fs::OpenOptions;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The local image every test runs (built `FROM scratch`, never pulled).
pub const IMAGE: &str = "sealrun/busybox:latest";
/// How long any wait of the harness lasts before it fails the test.
pub const WAIT: Duration = Duration::from_secs(60);

/// The `sealrun` binary under test.
pub fn sealrun_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sealrun")
}

/// The static `sealrun-init` shim every agent of the harness is given
/// (`--init-binary`), built by `scripts/build-init.sh` on first use (a no-op
/// when it is up to date, as after `scripts/test.sh`'s build step).
pub fn init_binary() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-init.sh");
        let out = Command::new(script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(out.status.success(), "{script} failed: {:?}", out.status);
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Whether Docker-backed tests can run. Without a Docker engine this prints a
/// loud `SKIPPED` line and returns false, unless `SEALRUN_REQUIRE_DOCKER` is set
/// (CI), in which case it fails the test. Builds the busybox image if missing.
pub fn require_docker() -> bool {
    let answered = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !answered {
        if std::env::var_os("SEALRUN_REQUIRE_DOCKER").is_some() {
            panic!("SEALRUN_REQUIRE_DOCKER is set but no Docker engine answers `docker version`");
        }
        eprintln!("\n\n*** SKIPPED: no Docker engine ***\n");
        return false;
    }
    static IMAGE_BUILT: std::sync::Once = std::sync::Once::new();
    IMAGE_BUILT.call_once(|| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/build-busybox-image.sh"
        );
        let ok = Command::new(script)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{IMAGE} is missing and {script} could not build it");
    });
    true
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it returns `Some`, failing the test after
/// [`WAIT`] with `what` in the message.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ids of the containers (running or not) labeled as created by `agent_id`.
pub fn containers_of(agent_id: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=sealrun.agent={agent_id}"),
        ])
        .output()
        .expect("docker ps");
    assert!(
        out.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until no container labeled with `agent_id` exists.
pub async fn wait_no_containers(agent_id: &str) {
    wait_for(
        &format!("the containers of agent {agent_id} to be removed"),
        || async { containers_of(agent_id).is_empty().then_some(()) },
    )
    .await;
}

/// Sends SIGTERM to `pid` (through kill(1): the tests stay free of unsafe code).
pub fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -TERM {pid} failed");
}

/// A daemon child process with its log file.
struct Daemon {
    what: &'static str,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn spawn(what: &'static str, args: Vec<String>, log: PathBuf) -> Daemon {
        let mut d = Daemon {
            what,
            args,
            log,
            child: None,
        };
        d.respawn();
        d
    }

    fn respawn(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.what);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(sealrun_bin())
            .args(&self.args)
            .env_remove("SEALRUN_CONFIG")
            .env_remove("SEALRUN_AGENT_CONFIG")
            .env_remove("SEALRUN_URL")
            .env_remove("SEALRUN_TOKEN")
            .env_remove("SEALRUN_CA_CERT")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", self.what, sealrun_bin()));
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("process not running").id()
    }

    /// Fails the test (with the log) if the process has exited.
    fn assert_alive(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited early ({status}); its log:\n{}",
                    self.what,
                    self.tail(80)
                );
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("process not running");
        sigterm(child.id());
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {within:?} of SIGTERM; its log:\n{}",
                    self.what,
                    self.tail(80)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("process not running");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {within:?}; its log:\n{}",
                    self.what,
                    self.tail(80)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}\n-----",
                self.what,
                self.log.display(),
                self.tail(60)
            );
        }
    }
}

/// A `sealrun server` process on a fixed port, so it can be restarted in place.
pub struct Server {
    daemon: Daemon,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// `127.0.0.1` port it listens on.
    pub port: u16,
    /// `https://localhost:<port>`.
    pub url: String,
    /// The generated CA clients pin (`data_dir/tls/ca.pem`).
    pub ca_cert: PathBuf,
    /// The org's first admin token.
    pub admin_token: String,
}

impl Server {
    /// Starts a server on a free port with `data_dir` (created if needed) and
    /// waits until it answers `/health`.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> Server {
        Server::start_on(data_dir, free_port(), extra_args).await
    }

    /// Starts a server on `port`.
    pub async fn start_on(data_dir: &Path, port: u16, extra_args: &[&str]) -> Server {
        let token_file = data_dir.join("admin.token");
        let mut args: Vec<String> = vec![
            "server".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--admin-token-file".into(),
            token_file.display().to_string(),
        ];
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        let log = data_dir
            .parent()
            .unwrap_or(data_dir)
            .join(format!("server-{port}.log"));
        let mut server = Server {
            daemon: Daemon::spawn("sealrun server", args, log),
            data_dir: data_dir.to_owned(),
            port,
            url: format!("https://localhost:{port}"),
            ca_cert: data_dir.join("tls").join("ca.pem"),
            admin_token: String::new(),
        };
        server.wait_ready().await;
        server.admin_token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.daemon.assert_alive();
            if self.ca_cert.exists() && self.data_dir.join("admin.token").exists() {
                let api = Api::new(&self.url, &self.ca_cert, "");
                if api.health().await {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not answer /health:\n{}",
                self.daemon.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client holding the admin token.
    pub fn admin(&self) -> Api {
        Api::new(&self.url, &self.ca_cert, &self.admin_token)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// SIGKILL: the control plane vanishes without a goodbye.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.daemon.terminate(Duration::from_secs(30))
    }

    /// Starts the stopped server again, same data directory, port and flags.
    pub async fn restart(&mut self) {
        self.daemon.respawn();
        self.wait_ready().await;
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }
}

/// Runs `sealrun <args>` as a client of `server` authenticated by `token`
/// (through `SEALRUN_URL`, `SEALRUN_TOKEN`, `SEALRUN_CA_CERT`, with a profile
/// path that does not exist, so nothing from the user's machine leaks in),
/// feeding `stdin`, and returns its exit status and output.
pub fn cli(server: &Server, token: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(sealrun_bin())
        .args(args)
        .env("SEALRUN_URL", &server.url)
        .env("SEALRUN_TOKEN", token)
        .env("SEALRUN_CA_CERT", &server.ca_cert)
        .env(
            "SEALRUN_PROFILE",
            server.data_dir.join("no-such-profile.toml"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// A `sealrun agent` process.
pub struct Agent {
    daemon: Daemon,
    /// Its state directory (`agent.json`, `keys/`).
    pub state_dir: PathBuf,
    /// Its name.
    pub name: String,
}

impl Agent {
    /// Starts an agent of `server` serving `targets`, enrolling with
    /// `enrollment_token` if its state directory holds no identity yet.
    pub fn start(
        server: &Server,
        state_dir: &Path,
        name: &str,
        targets: &[&str],
        enrollment_token: Option<&str>,
        extra_args: &[&str],
    ) -> Agent {
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--url".into(),
            server.url.clone(),
            "--ca-cert".into(),
            server.ca_cert.display().to_string(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--name".into(),
            name.into(),
            "--init-binary".into(),
            init_binary().display().to_string(),
        ];
        for t in targets {
            args.extend(["--target".into(), (*t).to_owned()]);
        }
        if let Some(token) = enrollment_token {
            args.extend(["--enrollment-token".into(), token.to_owned()]);
        }
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        let log = state_dir
            .parent()
            .unwrap_or(state_dir)
            .join(format!("agent-{name}.log"));
        Agent {
            daemon: Daemon::spawn("sealrun agent", args, log),
            state_dir: state_dir.to_owned(),
            name: name.into(),
        }
    }

    /// The agent id from its identity file, once it has registered.
    pub async fn agent_id(&mut self) -> String {
        let path = self.state_dir.join("agent.json");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.daemon.assert_alive();
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    return v["agent_id"].as_str().unwrap().to_owned();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not register:\n{}",
                self.daemon.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the control plane lists this agent as connected and has
    /// pinned the key of every target in `targets`.
    pub async fn wait_connected(&mut self, api: &Api, targets: &[&str]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.daemon.assert_alive();
            let agents: Value = api.get("/v1/agents").await;
            let connected = agents["agents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == self.name.as_str() && a["connected"] == true);
            let mut keyed = true;
            for t in targets {
                let view: TargetView = api.get(&format!("/v1/targets/{t}")).await;
                keyed &= view.public_key.is_some();
            }
            if connected && keyed {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not connect:\n{}",
                self.daemon.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Fails the test if the process has exited.
    pub fn assert_alive(&mut self) {
        self.daemon.assert_alive();
    }

    /// SIGKILL: the agent dies mid-whatever.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// SIGTERM, then waits (up to `within`) for it to drain and exit.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.daemon.terminate(within)
    }

    /// Waits (up to `within`) for the agent to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.daemon.wait_exit(within)
    }

    /// Starts the stopped agent again with the same flags.
    pub fn restart(&mut self) {
        self.daemon.respawn();
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }
}

/// A typed client of the control plane's HTTP API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    /// A client of `url` pinning `ca_cert`, authenticating with `token`.
    pub fn new(url: &str, ca_cert: &Path, token: &str) -> Api {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(60));
        if let Ok(pem) = std::fs::read(ca_cert) {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        Api {
            http: builder.build().unwrap(),
            url: url.to_owned(),
            token: token.to_owned(),
        }
    }

    /// The same client with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// Whether `GET /health` answers 200.
    pub async fn health(&self) -> bool {
        matches!(self.http.get(format!("{}/health", self.url)).send().await, Ok(r) if r.status().is_success())
    }

    /// Any request; the status and the JSON body (`Null` when empty).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> T {
        let (status, value) = self.request(method.clone(), path, body).await;
        assert!(
            status.is_success(),
            "{method} {path} answered {status}: {value}"
        );
        serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("{method} {path}: unexpected body: {e}"))
    }

    /// `GET`, expecting success.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        self.expect(Method::GET, path, None).await
    }

    /// `POST`, expecting success.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> T {
        self.expect(
            Method::POST,
            path,
            Some(&serde_json::to_value(body).unwrap()),
        )
        .await
    }

    /// `PUT`, expecting success.
    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> T {
        self.expect(
            Method::PUT,
            path,
            Some(&serde_json::to_value(body).unwrap()),
        )
        .await
    }

    /// Declares (or replaces) a target.
    pub async fn declare_target(&self, spec: &TargetSpec) {
        let _: Value = self.put(&format!("/v1/targets/{}", spec.name), spec).await;
    }

    /// A fresh enrollment token for `pool`.
    pub async fn enrollment_token(&self, pool: &str) -> String {
        let t: EnrollmentToken = self
            .post(
                &format!("/v1/pools/{pool}/enrollment-tokens"),
                &serde_json::json!({}),
            )
            .await;
        t.token
    }

    /// Seals `value` to the target's pinned key, as the CLI does, and stores it.
    pub async fn set_secret(&self, target: &str, name: &str, value: &[u8]) {
        let key: PublicKeyView = self.get(&format!("/v1/targets/{target}/public-key")).await;
        let public_key = sealrun_vault::PublicKey::from_base64(&key.key).unwrap();
        let sealed = sealrun_vault::seal(&public_key, name, target, value).unwrap();
        let _: Value = self
            .put(&format!("/v1/targets/{target}/secrets/{name}"), &sealed)
            .await;
    }

    /// Submits a run; returns its id.
    pub async fn submit(&self, request: &RunRequest) -> String {
        let created: RunCreated = self.post("/v1/runs", request).await;
        created.id
    }

    /// `GET /v1/runs/{id}`.
    pub async fn run(&self, id: &str) -> RunView {
        self.get(&format!("/v1/runs/{id}")).await
    }

    /// `POST /v1/runs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) {
        let _: Value = self
            .post(&format!("/v1/runs/{id}/cancel"), &serde_json::json!({}))
            .await;
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
        wait_for(&format!("run {id} to end"), || async {
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
                .await;
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

    /// Follows the run's log (`?follow=true`, NDJSON) until the run ends and
    /// returns how it ended: the fastest way to learn that a run is over.
    pub async fn follow(&self, id: &str) -> RunEnd {
        let mut resp = self
            .http
            .get(format!("{}/v1/runs/{id}/logs?follow=true", self.url))
            .bearer_auth(&self.token)
            .timeout(WAIT)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "follow {id}: {}", resp.status());
        let mut buf: Vec<u8> = Vec::new();
        loop {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.len() > 1 {
                    if let LogEvent::End(end) = serde_json::from_slice(&line).unwrap() {
                        return end;
                    }
                }
            }
            match resp.chunk().await.unwrap() {
                Some(bytes) => buf.extend_from_slice(&bytes),
                None => panic!("the log of {id} ended without an end event"),
            }
        }
    }

    /// Polls the run's stored stdout until it contains `needle`.
    pub async fn wait_output(&self, id: &str, needle: &str) {
        wait_for(&format!("run {id} to print {needle:?}"), || async {
            self.stdout(id).await.contains(needle).then_some(())
        })
        .await;
    }
}

/// How a [`World`] is set up.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// Extra `sealrun server` flags.
    pub server_args: Vec<String>,
    /// Extra `sealrun agent` flags.
    pub agent_args: Vec<String>,
    /// The target's run timeout.
    pub target_timeout_secs: u64,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            server_args: vec![],
            agent_args: vec![],
            target_timeout_secs: 300,
        }
    }
}

/// A control plane with one target (`e2e`, image [`IMAGE`]) and one connected
/// agent serving it, all in a temporary directory.
pub struct World {
    // Dropped last (fields drop in order): the processes go before their files.
    pub agent: Agent,
    pub server: Server,
    pub admin: Api,
    pub target: String,
    pub agent_id: String,
    pub dir: tempfile::TempDir,
}

impl World {
    /// The standard world.
    pub async fn start() -> World {
        World::start_with(WorldOptions::default()).await
    }

    /// A world with custom flags.
    pub async fn start_with(options: WorldOptions) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server_args: Vec<&str> = options.server_args.iter().map(String::as_str).collect();
        let server = Server::start(&dir.path().join("server"), &server_args).await;
        let admin = server.admin();
        let target = "e2e".to_owned();
        admin
            .declare_target(&TargetSpec {
                name: target.clone(),
                private_network: "test".into(),
                pool: TargetSpec::default_pool(),
                image: IMAGE.into(),
                network: None,
                limits: Default::default(),
                timeout_secs: options.target_timeout_secs,
                user: None,
            })
            .await;
        let enrollment = admin.enrollment_token("default").await;
        let agent_args: Vec<&str> = options.agent_args.iter().map(String::as_str).collect();
        let mut agent = Agent::start(
            &server,
            &dir.path().join("agent"),
            "e2e-agent",
            &[&target],
            Some(&enrollment),
            &agent_args,
        );
        agent.wait_connected(&admin, &[&target]).await;
        let agent_id = agent.agent_id().await;
        World {
            agent,
            server,
            admin,
            target,
            agent_id,
            dir,
        }
    }

    /// A run request for `argv` on the world's target.
    pub fn request(&self, argv: &[&str]) -> RunRequest {
        RunRequest {
            target: self.target.clone(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: Default::default(),
            secrets: vec![],
            timeout_secs: None,
            image: None,
            source: RunSource::Api,
        }
    }

    /// Submits `argv` on the world's target.
    pub async fn submit(&self, argv: &[&str]) -> String {
        self.admin.submit(&self.request(argv)).await
    }

    /// Asserts that no container of the world's agent exists.
    pub fn assert_no_containers(&self) {
        let left = containers_of(&self.agent_id);
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A failed test may leave a run in flight: kill the agent, then remove what
        // it was running, so no container outlives the test either.
        self.agent.kill();
        for id in containers_of(&self.agent_id) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &id])
                .stdout(Stdio::null())
                .status();
        }
    }
}
