//! Agents for tests: [`AgentProcess`] (a real `sealrun agent` subprocess
//! running commands in Docker) and [`FakeAgent`] (the agent protocol spoken
//! with reqwest, for control-plane tests that need no Docker).

use crate::client::{Answer, Client, to_value};
use crate::docker::{containers_of, containers_of_quietly, remove_container};
use crate::process::{Daemon, sibling};
use crate::server::{ControlPlane, InProcessServer};
use reqwest::StatusCode;
use sealrun_vault::TargetKeypair;
use sealrun_wire::admin::TargetView;
use sealrun_wire::agent::{
    AgentSettings, Assignment, ChallengeRequest, Challenges, ConnectRequest, FinishRequest,
    HeartbeatAck, Proof, Registered, ServedTarget,
};
use sealrun_wire::log::{LogChunk, LogUploadAck, StreamKind};
use sealrun_wire::run::RunStatus;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// A `sealrun agent` process, given the kit's static shim. Dropping it stops
/// the process as an operator would (SIGTERM: it removes its warm pool's
/// members), kills it if it has not exited within 10 s (a run still in
/// progress holds it for its grace period, 30 s), and removes every
/// container labeled with its agent id, so no container outlives a failed
/// test either. Its log is `agent-<name>.log`
/// next to its state directory.
#[derive(Debug)]
pub struct AgentProcess {
    daemon: Daemon,
    /// Its state directory (`agent.json`, `keys/`).
    pub state_dir: PathBuf,
    /// Its name.
    pub name: String,
    /// The id the control plane gave it at registration.
    pub id: String,
}

impl AgentProcess {
    /// Starts an agent of `server` (a [`crate::ServerProcess`] or an
    /// [`InProcessServer`]) serving `targets`, enrolling with
    /// `enrollment_token` if its state directory holds no identity yet, and
    /// waits until it has registered.
    pub async fn start(
        server: &impl ControlPlane,
        state_dir: &Path,
        name: &str,
        targets: &[&str],
        enrollment_token: Option<&str>,
        extra_args: &[&str],
    ) -> AgentProcess {
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--url".into(),
            server.url().to_owned(),
            "--ca-cert".into(),
            server.ca_cert().display().to_string(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--name".into(),
            name.into(),
            "--init-binary".into(),
            crate::init_binary().display().to_string(),
        ];
        for t in targets {
            args.push("--target".into());
            args.push((*t).into());
        }
        if let Some(token) = enrollment_token {
            args.push("--enrollment-token".into());
            args.push(token.into());
        }
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        let log = sibling(state_dir, &format!("agent-{name}.log"));
        let mut agent = AgentProcess {
            daemon: Daemon::spawn("sealrun agent", args, vec![], log),
            state_dir: state_dir.to_owned(),
            name: name.into(),
            id: String::new(),
        };
        agent.id = agent.wait_registered().await;
        agent
    }

    /// The agent id from its identity file, once it has registered.
    async fn wait_registered(&mut self) -> String {
        let path = self.state_dir.join("agent.json");
        self.daemon
            .wait_for("the agent to register", || async {
                let text = std::fs::read_to_string(&path).ok()?;
                let v = serde_json::from_str::<Value>(&text).ok()?;
                Some(
                    v["agent_id"]
                        .as_str()
                        .expect("agent.json holds agent_id")
                        .to_owned(),
                )
            })
            .await
    }

    /// Waits until the control plane lists this agent as connected and has
    /// pinned the key of every target in `targets`.
    pub async fn wait_connected(&mut self, api: &Client, targets: &[&str]) {
        let name = self.name.as_str();
        self.daemon
            .wait_for("the agent to connect", || async {
                let agents = api.get("/v1/agents").await.ok().json();
                let connected = agents["agents"]
                    .as_array()
                    .expect("an agent list")
                    .iter()
                    .any(|a| a["name"] == name && a["connected"] == true);
                let mut keyed = true;
                for t in targets {
                    let view: TargetView = api.get(&format!("/v1/targets/{t}")).await.ok().parse();
                    keyed &= view.public_key.is_some();
                }
                (connected && keyed).then_some(())
            })
            .await;
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
        self.daemon.log_text()
    }

    /// Ids of the containers of this agent that exist now.
    pub fn containers(&self) -> Vec<String> {
        containers_of(&self.id)
    }
}

/// How long a dropped [`AgentProcess`] is given to stop by itself.
const STOP_ON_DROP: Duration = Duration::from_secs(10);

/// How long after a kill the engine may still complete a container create
/// the killed agent sent: the engine finishes a create whose client is gone.
const LATE_CREATES: Duration = Duration::from_secs(2);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // A failed test may leave a run in flight: stop the agent, then remove
        // whatever of it is left.
        let killed = self.daemon.stop_or_kill(STOP_ON_DROP);
        if self.id.is_empty() {
            return;
        }
        for id in containers_of_quietly(&self.id) {
            remove_container(&id);
        }
        if killed {
            // A create sent just before the kill (a warm pool's refill, a
            // run's container) may appear after the list above.
            let until = std::time::Instant::now() + LATE_CREATES;
            while std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200));
                for id in containers_of_quietly(&self.id) {
                    remove_container(&id);
                }
            }
        }
    }
}

/// An agent simulated with reqwest, speaking the wire protocol.
#[derive(Debug)]
pub struct FakeAgent {
    /// The agent's client (its agent token).
    pub client: Client,
    /// Its agent id.
    pub id: String,
    /// The targets it serves, with their keypairs.
    pub keys: Vec<(String, TargetKeypair)>,
}

impl FakeAgent {
    /// Registers with an enrollment token.
    pub async fn register(server: &impl ControlPlane, enrollment: &str, name: &str) -> FakeAgent {
        FakeAgent::register_via(&server.anonymous(), enrollment, name).await
    }

    /// Registers with an enrollment token through `server`, a client of any
    /// control plane (its token is not used): for agents registered from
    /// tasks of their own.
    pub async fn register_via(server: &Client, enrollment: &str, name: &str) -> FakeAgent {
        let a = server
            .with_token(enrollment)
            .post("/v1/agent/register", json!({"name": name}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        let r: Registered = a.parse();
        FakeAgent {
            client: server.with_token(&r.agent_token),
            id: r.agent_id,
            keys: Vec::new(),
        }
    }

    /// Registers in the default pool and connects serving `targets` with
    /// fresh keys (only registers if there are none).
    pub async fn enroll(
        server: &InProcessServer,
        admin: &Client,
        name: &str,
        targets: &[&str],
    ) -> FakeAgent {
        let enrollment = admin.enrollment_token("default").await;
        let mut agent = FakeAgent::register(server, &enrollment, name).await;
        for t in targets {
            agent
                .keys
                .push(((*t).to_owned(), TargetKeypair::generate()));
        }
        if !targets.is_empty() {
            agent.connect().await.ok();
        }
        agent
    }

    /// Registers in the default pool and connects serving the targets
    /// `other` serves, with the same keys (as two agents of one target
    /// hold its one keypair); on `server`, which may be another replica.
    pub async fn enroll_beside(
        server: &InProcessServer,
        admin: &Client,
        name: &str,
        other: &FakeAgent,
    ) -> FakeAgent {
        let mut agent = FakeAgent::enroll(server, admin, name, &[]).await;
        agent.keys = other
            .keys
            .iter()
            .map(|(target, kp)| (target.clone(), same_key(kp)))
            .collect();
        agent.connect().await.ok();
        agent
    }

    /// The targets it serves, with its keys' public halves.
    pub fn served(&self) -> Vec<ServedTarget> {
        self.keys
            .iter()
            .map(|(name, kp)| ServedTarget {
                name: name.clone(),
                public_key: kp.public_key().to_base64(),
                // A bare protocol client: it signs no run reports.
                report_key: None,
            })
            .collect()
    }

    /// `POST /v1/agent/challenge` for the targets it serves.
    pub async fn challenges(&self) -> Challenges {
        let a = self
            .client
            .post(
                "/v1/agent/challenge",
                to_value(&ChallengeRequest {
                    targets: self.served(),
                }),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "challenge: {}", a.text);
        a.parse()
    }

    /// Proofs answering `challenges` with its keys (as the real agent does).
    pub fn prove(&self, challenges: &Challenges) -> Vec<Proof> {
        challenges
            .challenges
            .iter()
            .filter_map(|c| {
                let (_, kp) = self.keys.iter().find(|(name, _)| *name == c.target)?;
                c.answer(kp).ok()
            })
            .collect()
    }

    /// The body of `POST /v1/agent/connect` serving [`FakeAgent::keys`],
    /// with `proofs`.
    pub fn connect_request(&self, proofs: Vec<Proof>) -> Value {
        to_value(&ConnectRequest {
            version: "test".into(),
            max_concurrency: 4,
            targets: self.served(),
            proofs,
        })
    }

    /// `POST /v1/agent/connect`, proving possession of its keys first.
    pub async fn connect(&self) -> Answer {
        let proofs = self.prove(&self.challenges().await);
        self.client
            .post("/v1/agent/connect", self.connect_request(proofs))
            .await
    }

    /// Connects, expecting success; the settings the control plane sends.
    pub async fn settings(&self) -> AgentSettings {
        self.connect().await.ok().parse()
    }

    /// One poll, with a poll id of its own as the real agent sends:
    /// `Some` assignment, or `None` on 204.
    pub async fn poll(&self) -> Option<Assignment> {
        static POLLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = POLLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let a = self.poll_with_id(&format!("kit-{id}")).await;
        match a.status {
            StatusCode::OK => Some(a.parse()),
            StatusCode::NO_CONTENT => None,
            s => panic!("poll answered {s}: {}", a.text),
        }
    }

    /// One poll under `poll_id` (asked again after a lost answer, it gets
    /// the run handed out in it): the answer as it came.
    pub async fn poll_with_id(&self, poll_id: &str) -> Answer {
        self.client
            .post("/v1/agent/poll", json!({ "poll_id": poll_id }))
            .await
    }

    /// Polls until an assignment comes (at most 40 polls).
    pub async fn next_run(&self) -> Assignment {
        for _ in 0..40 {
            if let Some(a) = self.poll().await {
                return a;
            }
        }
        panic!("no run was assigned");
    }

    /// A heartbeat listing the `running` runs, expecting success.
    pub async fn heartbeat(&self, running: &[&str]) -> HeartbeatAck {
        self.client
            .post("/v1/agent/heartbeat", json!({"running": running}))
            .await
            .ok()
            .parse()
    }

    /// This agent with its requests sent to `server` (another replica of
    /// its control plane), without its targets' keys: for what needs none
    /// (reading a run's input, reporting its end).
    pub fn through(&self, server: &impl ControlPlane) -> FakeAgent {
        FakeAgent {
            client: server.client(&self.client.token),
            id: self.id.clone(),
            keys: Vec::new(),
        }
    }

    /// `GET /v1/agent/runs/{run}/stdin`, its body not read yet.
    pub async fn open_stdin(&self, run: &str) -> reqwest::Response {
        self.client
            .http
            .get(format!("{}/v1/agent/runs/{run}/stdin", self.client.url))
            .bearer_auth(&self.client.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("read the input of {run}: {e}"))
    }

    /// `GET /v1/agent/runs/{run}/stdin`: the status, and the body read to
    /// its end (`Err` if it was cut off: the input broke).
    pub async fn read_stdin(&self, run: &str) -> (StatusCode, Result<Vec<u8>, String>) {
        let mut resp = self.open_stdin(run).await;
        let status = resp.status();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                Ok(None) => return (status, Ok(body)),
                Err(e) => return (status, Err(e.to_string())),
            }
        }
    }

    /// Uploads stdout chunks `(seq, data)` of `run`.
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

    /// [`FakeAgent::upload`], expecting success.
    pub async fn upload_ok(&self, run: &str, chunks: &[(u64, &[u8])]) -> LogUploadAck {
        self.upload(run, chunks).await.ok().parse()
    }

    /// Reports the end of `run`.
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
            redactions: Default::default(),
            report: None,
        };
        self.client
            .post(&format!("/v1/agent/runs/{run}/finish"), to_value(&req))
            .await
    }
}

/// A copy of `kp` (keypairs are not `Clone`: a copy is made on purpose,
/// through the files an agent keeps them in).
pub fn same_key(kp: &TargetKeypair) -> TargetKeypair {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("k");
    kp.save(&path).expect("the key saved");
    TargetKeypair::load(&path).expect("the key loaded")
}
