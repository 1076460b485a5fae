//! A real control plane on loopback HTTPS, and clients speaking to it: users
//! with tokens, and fake agents speaking the wire protocol with reqwest.
#![allow(dead_code, clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use sealrun_api::{Server, ServerConfig, Settings};
use sealrun_vault::{SealedSecret, TargetKeypair};
use sealrun_wire::admin::{EnrollmentToken, Role, TargetSpec, TokenCreated};
use sealrun_wire::agent::{
    AgentSettings, Assignment, ConnectRequest, FinishRequest, HeartbeatAck, Registered,
    ServedTarget,
};
use sealrun_wire::log::{LogChunk, LogUploadAck, StreamKind};
use sealrun_wire::run::{RunCreated, RunRequest, RunStatus, RunView};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// A server running in this process.
pub struct TestServer {
    pub url: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    pub data_dir: PathBuf,
    pub ca_cert: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), sealrun_api::Error>>>,
}

/// Settings that keep tests quick.
pub fn quick_settings() -> Settings {
    Settings {
        poll_timeout: Duration::from_millis(500),
        lease_sweep_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(2),
        ..Settings::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(quick_settings()).await
    }

    pub async fn start_with(settings: Settings) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let token_file = dir.path().join("admin.token");
        let config = ServerConfig {
            data_dir: data_dir.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            org_name: "acme".into(),
            admin_token_file: Some(token_file.clone()),
            settings,
            ..ServerConfig::default()
        };
        let server = Server::bind(config).await.unwrap();
        let url = format!("https://localhost:{}", server.local_addr().port());
        let ca_cert = server.ca_cert_path().unwrap().to_owned();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_cert).unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let admin_token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        TestServer {
            url,
            http,
            admin_token,
            data_dir,
            ca_cert,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("sealrun.db")
    }

    /// The first org's admin.
    pub fn admin(&self) -> Client {
        self.client(&self.admin_token)
    }

    pub fn client(&self, token: &str) -> Client {
        Client {
            url: self.url.clone(),
            http: self.http.clone(),
            token: token.to_owned(),
        }
    }

    /// A client with no token at all.
    pub fn anonymous(&self) -> Client {
        self.client("")
    }

    /// A second org (created offline, while the server runs); its admin.
    pub fn create_org(&self, name: &str) -> Client {
        let token = sealrun_api::create_org(&self.data_dir, name).unwrap();
        self.client(&token)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub text: String,
    pub content_type: Option<String>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    pub fn parse<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("unexpected body ({e}): {} {}", self.status, self.text))
    }

    /// Asserts the status and that the body is `{"error": "..."}`; returns
    /// the message.
    pub fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        let v = self.json();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "error body has only `error`: {v}");
        let msg = obj["error"].as_str().unwrap().to_owned();
        assert!(!msg.is_empty());
        msg
    }

    pub fn ok(&self) -> &Self {
        assert!(self.status.is_success(), "{} {}", self.status, self.text);
        self
    }
}

/// A user (or agent) talking to the API with one token.
#[derive(Clone, Debug)]
pub struct Client {
    pub url: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Client {
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        Answer {
            status,
            text,
            content_type,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn token(&self, name: &str, role: Role) -> Client {
        let a = self
            .post("/v1/tokens", json!({"name": name, "role": role}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        let created: TokenCreated = a.parse();
        Client {
            token: created.token,
            ..self.clone()
        }
    }

    pub async fn declare_target(&self, name: &str) {
        self.declare_target_in(name, "default").await;
    }

    pub async fn declare_target_in(&self, name: &str, pool: &str) {
        let spec: TargetSpec = serde_json::from_value(json!({
            "name": name, "image": "sealrun/busybox:latest", "pool": pool, "timeout_secs": 600,
        }))
        .unwrap();
        let a = self
            .put(&format!("/v1/targets/{name}"), to_value(&spec))
            .await;
        assert!(a.status.is_success(), "{}", a.text);
    }

    pub async fn enrollment_token(&self, pool: &str) -> String {
        let a = self
            .post(&format!("/v1/pools/{pool}/enrollment-tokens"), json!({}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.parse::<EnrollmentToken>().token
    }

    pub async fn submit(&self, target: &str, argv: &[&str], secrets: &[&str]) -> String {
        let req = RunRequest {
            target: target.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: Default::default(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            timeout_secs: None,
            image: None,
            source: Default::default(),
        };
        let a = self.post("/v1/runs", to_value(&req)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.parse::<RunCreated>().id
    }

    pub async fn run(&self, id: &str) -> RunView {
        let a = self.get(&format!("/v1/runs/{id}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        a.parse()
    }

    /// Seals `value` for `target` with its published key and stores it.
    pub async fn set_secret(&self, target: &str, name: &str, value: &[u8]) -> SealedSecret {
        let key: sealrun_wire::admin::PublicKeyView = self
            .get(&format!("/v1/targets/{target}/public-key"))
            .await
            .ok()
            .parse();
        let pk = sealrun_vault::PublicKey::from_base64(&key.key).unwrap();
        let sealed = sealrun_vault::seal(&pk, name, target, value).unwrap();
        let a = self
            .put(
                &format!("/v1/targets/{target}/secrets/{name}"),
                to_value(&sealed),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text);
        sealed
    }

    /// Waits (bounded) until the run reaches `status`.
    pub async fn wait_for(&self, id: &str, status: RunStatus) -> RunView {
        for _ in 0..200 {
            let v = self.run(id).await;
            if v.status == status {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} never became {status}");
    }
}

pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// An agent simulated with reqwest, speaking the wire protocol.
pub struct FakeAgent {
    pub client: Client,
    pub id: String,
    pub keys: Vec<(String, TargetKeypair)>,
}

impl FakeAgent {
    /// Registers with an enrollment token.
    pub async fn register(server: &TestServer, enrollment: &str, name: &str) -> FakeAgent {
        let a = server
            .client(enrollment)
            .post("/v1/agent/register", json!({"name": name}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        let r: Registered = a.parse();
        FakeAgent {
            client: server.client(&r.agent_token),
            id: r.agent_id,
            keys: Vec::new(),
        }
    }

    /// Registers in the default pool and connects serving `targets` with
    /// fresh keys (only registers if there are none).
    pub async fn enroll(
        server: &TestServer,
        admin: &Client,
        name: &str,
        targets: &[&str],
    ) -> FakeAgent {
        let enrollment = admin.enrollment_token("default").await;
        let mut agent = FakeAgent::register(server, &enrollment, name).await;
        for t in targets {
            agent.keys.push((t.to_string(), TargetKeypair::generate()));
        }
        if !targets.is_empty() {
            agent.connect().await.ok();
        }
        agent
    }

    pub fn connect_request(&self) -> Value {
        to_value(&ConnectRequest {
            version: "test".into(),
            max_concurrency: 4,
            targets: self
                .keys
                .iter()
                .map(|(name, kp)| ServedTarget {
                    name: name.clone(),
                    public_key: kp.public_key().to_base64(),
                })
                .collect(),
        })
    }

    pub async fn connect(&self) -> Answer {
        self.client
            .post("/v1/agent/connect", self.connect_request())
            .await
    }

    pub async fn settings(&self) -> AgentSettings {
        self.connect().await.ok().parse()
    }

    /// One poll: `Some` assignment, or `None` on 204.
    pub async fn poll(&self) -> Option<Assignment> {
        let a = self.client.post("/v1/agent/poll", json!({})).await;
        match a.status {
            StatusCode::OK => Some(a.parse()),
            StatusCode::NO_CONTENT => None,
            s => panic!("poll answered {s}: {}", a.text),
        }
    }

    /// Polls until an assignment comes (bounded).
    pub async fn next_run(&self) -> Assignment {
        for _ in 0..40 {
            if let Some(a) = self.poll().await {
                return a;
            }
        }
        panic!("no run was assigned");
    }

    pub async fn heartbeat(&self, running: &[&str]) -> HeartbeatAck {
        self.client
            .post("/v1/agent/heartbeat", json!({"running": running}))
            .await
            .ok()
            .parse()
    }

    pub async fn upload(&self, run: &str, chunks: &[(u64, &[u8])]) -> Answer {
        let chunks: Vec<LogChunk> = chunks
            .iter()
            .map(|(seq, data)| LogChunk {
                seq: *seq,
                stream: StreamKind::Stdout,
                data: data.to_vec().into(),
            })
            .collect();
        self.client
            .post(
                &format!("/v1/agent/runs/{run}/logs"),
                json!({"chunks": to_value(&chunks)}),
            )
            .await
    }

    pub async fn upload_ok(&self, run: &str, chunks: &[(u64, &[u8])]) -> LogUploadAck {
        self.upload(run, chunks).await.ok().parse()
    }

    pub async fn finish(
        &self,
        run: &str,
        status: RunStatus,
        exit_code: Option<i64>,
        next_seq: u64,
    ) -> Answer {
        let req = FinishRequest {
            status,
            exit_code,
            error: None,
            oom_killed: false,
            next_seq,
        };
        self.client
            .post(&format!("/v1/agent/runs/{run}/finish"), to_value(&req))
            .await
    }
}

/// An org with a target `db` served by a connected agent, plus its admin.
pub struct World {
    pub server: TestServer,
    pub admin: Client,
    pub agent: FakeAgent,
}

impl World {
    pub async fn new() -> World {
        World::with(quick_settings()).await
    }

    pub async fn with(settings: Settings) -> World {
        let server = TestServer::start_with(settings).await;
        let admin = server.admin();
        admin.declare_target("db").await;
        let agent = FakeAgent::enroll(&server, &admin, "agent-1", &["db"]).await;
        World {
            server,
            admin,
            agent,
        }
    }
}
