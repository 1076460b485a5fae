//! Control planes for tests: [`InProcessServer`] (the `sealrun_api` library
//! serving on a runtime and thread of its own) and [`ServerProcess`] (a
//! `sealrun server` subprocess that can be killed and restarted in place).
//! Both are a [`ControlPlane`]: a URL, a CA, an org admin token, clients.

use crate::client::{Client, https_client, run_request, to_value};
use crate::postgres::TestDatabase;
use crate::process::{Cli, Daemon, free_port, sibling};
use sealrun_api::{Server, ServerConfig, Settings};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// What every control plane of the kit offers a test.
pub trait ControlPlane {
    /// `https://localhost:<port>`.
    fn url(&self) -> &str;
    /// The generated CA clients pin.
    fn ca_cert(&self) -> &Path;
    /// The first org's admin token.
    fn admin_token(&self) -> &str;
    /// The HTTPS client pinned to [`ControlPlane::ca_cert`].
    fn http(&self) -> &reqwest::Client;
    /// The server's data directory.
    fn data_dir(&self) -> &Path;

    /// A client holding `token` (none at all when empty).
    fn client(&self, token: &str) -> Client {
        Client::new(self.url(), self.http().clone(), token)
    }

    /// The first org's admin.
    fn admin(&self) -> Client {
        self.client(self.admin_token())
    }

    /// A client with no token at all.
    fn anonymous(&self) -> Client {
        self.client("")
    }

    /// The `sealrun` CLI of this control plane with `token` (its `HOME` is
    /// the data directory, which holds no profile).
    fn cli(&self, token: &str) -> Cli {
        Cli {
            url: self.url().to_owned(),
            token: token.to_owned(),
            ca_cert: self.ca_cert().to_owned(),
            home: self.data_dir().to_owned(),
            env: Vec::new(),
        }
    }
}

/// Settings that keep tests quick: a 500 ms long poll, a 100 ms lease sweep,
/// a 2 s shutdown grace.
pub fn quick_settings() -> Settings {
    Settings {
        poll_timeout: Duration::from_millis(500),
        lease_sweep_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(2),
        ..Settings::default()
    }
}

/// A server running in this process, in org `acme`, on a free loopback port.
///
/// It serves on a tokio runtime of its own, on a thread of its own, so that
/// dropping it can wait for the server to be gone: dropping it shuts the
/// server down gracefully and joins its thread (the database writer is
/// stopped and its files closed) before its temporary directory is removed,
/// so no test leaves a directory behind. [`InProcessServer::stop`] does the
/// same from async code and checks the server stopped without an error.
#[derive(Debug)]
pub struct InProcessServer {
    /// `https://localhost:<port>`.
    pub url: String,
    /// The HTTPS client pinned to the server's CA.
    pub http: reqwest::Client,
    /// The org's first admin token.
    pub admin_token: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The generated CA certificate.
    pub ca_cert: PathBuf,
    /// Its PostgreSQL database, when the suite tests that backend.
    pub database: Option<TestDatabase>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), sealrun_api::Error>>>,
    /// Declared last: dropped after the server's thread was joined.
    _dir: Option<tempfile::TempDir>,
}

impl InProcessServer {
    /// Starts following run `run`'s log (`?follow=true`) with `token` and
    /// collects the raw body in a task until the server ends the stream
    /// (the run ended, or the token stopped working): what a client holding
    /// a long request sees.
    pub async fn follow_log(&self, token: &str, run: &str) -> tokio::task::JoinHandle<String> {
        let mut resp = self
            .http
            .get(format!("{}/v1/runs/{run}/logs?follow=true", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("follow {run}: {e}"));
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "follow {run}");
        tokio::spawn(async move {
            let mut text = Vec::new();
            while let Ok(Some(piece)) = resp.chunk().await {
                text.extend_from_slice(&piece);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    }

    /// Submits `count` runs of `true` on `target` as the admin, from
    /// `concurrency` clients at once (what benchmarks fill a store with).
    pub async fn submit_many(&self, target: &str, count: usize, concurrency: usize) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let left = Arc::new(AtomicUsize::new(count));
        let body = Arc::new(to_value(&run_request(target, &["true"])));
        let tasks: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let (left, body) = (Arc::clone(&left), Arc::clone(&body));
                let (http, url, token) = (
                    self.http.clone(),
                    format!("{}/v1/runs", self.url),
                    self.admin_token.clone(),
                );
                tokio::spawn(async move {
                    while left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        let answer = http
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&*body)
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("submit: {e}"));
                        assert!(answer.status().is_success(), "submit: {}", answer.status());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await
                .unwrap_or_else(|e| panic!("a submitter failed: {e}"));
        }
    }

    /// A server with [`quick_settings`] in a temporary directory of its own.
    pub async fn start() -> InProcessServer {
        InProcessServer::start_with(quick_settings()).await
    }

    /// A server on a PostgreSQL database of its own, whatever the pass
    /// (for tests of PostgreSQL: replicas); `None` after a loud `SKIPPED`
    /// line without a cluster ([`crate::require_postgres`]).
    pub async fn start_on_postgres(settings: Settings) -> Option<InProcessServer> {
        InProcessServer::start_on_postgres_with(settings, |_| {}).await
    }

    /// [`start_on_postgres`](InProcessServer::start_on_postgres), its
    /// configuration changed by `configure` first (Slack's API URL, say).
    pub async fn start_on_postgres_with(
        settings: Settings,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Option<InProcessServer> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = crate::require_postgres(&dir.path().join("data"))?;
        let mut config = InProcessServer::config_in(dir.path(), settings);
        configure(&mut config);
        config.database = Some(database.url.clone());
        let mut server = InProcessServer::start_config(config).await;
        server.database = Some(database);
        server._dir = Some(dir);
        Some(server)
    }

    /// A server with `settings` in a temporary directory of its own.
    pub async fn start_with(settings: Settings) -> InProcessServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = InProcessServer::start_in(dir.path(), settings).await;
        server._dir = Some(dir);
        server
    }

    /// A server with `settings` keeping its data in `dir/data` (and its
    /// admin token in `dir/admin.token`); `dir` outlives the server.
    pub async fn start_in(dir: &Path, settings: Settings) -> InProcessServer {
        InProcessServer::start_config(InProcessServer::config_in(dir, settings)).await
    }

    /// The configuration [`start_in`](InProcessServer::start_in) uses.
    pub fn config_in(dir: &Path, settings: Settings) -> ServerConfig {
        ServerConfig {
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".parse().expect("an address"),
            org_name: "acme".into(),
            admin_token_file: Some(dir.join("admin.token")),
            settings,
            ..ServerConfig::default()
        }
    }

    /// A server with a full `config` (its `admin_token_file` must be set).
    /// Under `SEALRUN_TEST_DATABASE_URL` (and without a database of its
    /// own), it gets a PostgreSQL database named after its data directory.
    pub async fn start_config(mut config: ServerConfig) -> InProcessServer {
        let data_dir = config.data_dir.clone();
        let database = match config.database {
            Some(_) => None,
            None => TestDatabase::for_data_dir(&data_dir),
        };
        if let Some(db) = &database {
            config.database = Some(db.url.clone());
        }
        let token_file = config
            .admin_token_file
            .clone()
            .expect("the kit reads the admin token from admin_token_file");
        let (ready, bound) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sealrun-test-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the test server");
                runtime.block_on(async move {
                    let server = Server::bind(config)
                        .await
                        .unwrap_or_else(|e| panic!("the control plane did not start: {e}"));
                    let url = format!("https://localhost:{}", server.local_addr().port());
                    let ca_cert = server
                        .ca_cert_path()
                        .expect("a server with a generated CA")
                        .to_owned();
                    let _ = ready.send((url.clone(), ca_cert));
                    let served = server
                        .run(async {
                            let _ = stopped.await;
                        })
                        .await;
                    // Said at once: a server that stops on its own leaves its
                    // clients with refused connections, far from the cause.
                    if let Err(e) = &served {
                        eprintln!("the in-process control plane at {url} stopped: {e}");
                    }
                    served
                })
            })
            .expect("a thread for the test server");
        let (url, ca_cert) = bound
            .await
            .expect("the control plane did not start (see the panic above)");
        let http = https_client(&ca_cert);
        let admin_token = read_token(&token_file);
        InProcessServer {
            url,
            http,
            admin_token,
            data_dir,
            ca_cert,
            database,
            stop: Some(stop),
            thread: Some(thread),
            _dir: None,
        }
    }

    /// A second replica of this server, with `settings`: its own data
    /// directory (in `dir`), the same PostgreSQL database. `None` when the
    /// suite tests SQLite (one process per database).
    pub async fn start_replica(&self, dir: &Path, settings: Settings) -> Option<InProcessServer> {
        self.start_replica_with(dir, settings, |_| {}).await
    }

    /// [`start_replica`](InProcessServer::start_replica), its configuration
    /// changed by `configure` first. The replica shares what replicas must
    /// (README): the database, and the key Slack's secrets are sealed to.
    pub async fn start_replica_with(
        &self,
        dir: &Path,
        settings: Settings,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Option<InProcessServer> {
        let db = self.database.as_ref()?;
        let mut config = InProcessServer::config_in(dir, settings);
        configure(&mut config);
        config.database = Some(db.url.clone());
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&config.data_dir)
            .expect("the replica's data directory");
        std::fs::copy(
            self.data_dir.join("slack.key"),
            config.data_dir.join("slack.key"),
        )
        .expect("the first replica's Slack key");
        // The org exists: the replica creates no admin token, so the kit
        // reads the first one's.
        let token_file = config
            .admin_token_file
            .clone()
            .expect("config_in sets the token file");
        std::fs::create_dir_all(dir).expect("the replica's directory");
        std::fs::write(&token_file, &self.admin_token).expect("the admin token");
        Some(InProcessServer::start_config(config).await)
    }

    /// The SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("sealrun.db")
    }

    /// A second org (created offline, while the server runs); its admin.
    pub fn create_org(&self, name: &str) -> Client {
        let database = self.database.as_ref().map(|db| &db.url);
        let token = sealrun_api::create_org(&self.data_dir, database, name)
            .unwrap_or_else(|e| panic!("cannot create org {name}: {e}"));
        self.client(&token)
    }

    /// Shuts the server down gracefully; fails the test if it stopped with
    /// an error.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("joining the server's thread")
                .expect("the server's thread did not panic")
                .expect("the server stopped without an error");
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Blocking here is fine: the server runs on its own runtime, so it
        // shuts down (within its shutdown grace) without this thread.
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the test server's thread panicked");
            }
        }
        // A server that owns its directory takes its database with it; one
        // in a caller's directory may be restarted there.
        if let (Some(db), Some(_)) = (&self.database, &self._dir) {
            db.drop_database();
        }
    }
}

/// Implements [`ControlPlane`] for a server type with the public fields
/// `url`, `ca_cert`, `admin_token`, `data_dir` and `http: reqwest::Client`.
macro_rules! control_plane {
    ($server:ty) => {
        impl ControlPlane for $server {
            fn url(&self) -> &str {
                &self.url
            }
            fn ca_cert(&self) -> &Path {
                &self.ca_cert
            }
            fn admin_token(&self) -> &str {
                &self.admin_token
            }
            fn http(&self) -> &reqwest::Client {
                &self.http
            }
            fn data_dir(&self) -> &Path {
                &self.data_dir
            }
        }
    };
}

/// For the kit's other control planes (the replicas' [`crate::Balancer`]).
pub(crate) use control_plane;

control_plane!(InProcessServer);

fn read_token(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read the admin token {}: {e}", file.display()))
        .trim()
        .to_owned()
}

/// A `sealrun server` process on a fixed port, so it can be restarted in
/// place. Its log is `server-<port>.log` next to its data directory.
#[derive(Debug)]
pub struct ServerProcess {
    daemon: Daemon,
    /// The HTTPS client pinned to [`ServerProcess::ca_cert`].
    pub http: reqwest::Client,
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

impl ServerProcess {
    /// Starts a server on a free port with `data_dir` (created if needed) and
    /// waits until it answers `/health`.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> ServerProcess {
        ServerProcess::start_on(data_dir, free_port(), extra_args).await
    }

    /// Starts a server on `port`.
    pub async fn start_on(data_dir: &Path, port: u16, extra_args: &[&str]) -> ServerProcess {
        ServerProcess::start_under(data_dir, port, &[], extra_args).await
    }

    /// Starts a server on `port` through `launcher`, a program that sets
    /// something up and `exec`s the rest of its arguments (e.g.
    /// `["prlimit", "--nofile=256:256", "--"]`, for a lower open-file
    /// limit): the process the kit manages is then the server itself.
    pub async fn start_under(
        data_dir: &Path,
        port: u16,
        launcher: &[&str],
        extra_args: &[&str],
    ) -> ServerProcess {
        ServerProcess::start_with_env(data_dir, port, launcher, extra_args, vec![]).await
    }

    /// [`start_under`](ServerProcess::start_under) with environment
    /// variables (`SEALRUN_DATABASE_URL`, say: a URL holding a password is
    /// never a flag).
    pub async fn start_with_env(
        data_dir: &Path,
        port: u16,
        launcher: &[&str],
        extra_args: &[&str],
        envs: Vec<(String, PathBuf)>,
    ) -> ServerProcess {
        let ca_cert = data_dir.join("tls").join("ca.pem");
        ServerProcess::start_full(data_dir, port, launcher, extra_args, envs, ca_cert).await
    }

    /// [`start_with_env`](ServerProcess::start_with_env) for a server given
    /// its certificate (`--tls-cert`, `--tls-key` in `extra_args`), which
    /// clients trust through `ca_cert`.
    pub async fn start_pinned(
        data_dir: &Path,
        extra_args: &[&str],
        envs: Vec<(String, PathBuf)>,
        ca_cert: &Path,
    ) -> ServerProcess {
        let port = free_port();
        ServerProcess::start_full(data_dir, port, &[], extra_args, envs, ca_cert.to_owned()).await
    }

    async fn start_full(
        data_dir: &Path,
        port: u16,
        launcher: &[&str],
        extra_args: &[&str],
        envs: Vec<(String, PathBuf)>,
        ca_cert: PathBuf,
    ) -> ServerProcess {
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
        let log = sibling(data_dir, &format!("server-{port}.log"));
        let launcher = launcher.iter().map(|s| (*s).to_owned()).collect();
        let mut daemon = Daemon::spawn_under("sealrun server", launcher, args, envs, log);
        let url = format!("https://localhost:{port}");
        let http = ServerProcess::wait_ready(&mut daemon, &url, &ca_cert, &token_file).await;
        ServerProcess {
            daemon,
            http,
            data_dir: data_dir.to_owned(),
            port,
            url,
            ca_cert,
            admin_token: read_token(&token_file),
        }
    }

    /// Waits until the server has written its CA and admin token and answers
    /// `/health`; the HTTPS client pinned to its CA.
    async fn wait_ready(
        daemon: &mut Daemon,
        url: &str,
        ca_cert: &Path,
        token_file: &Path,
    ) -> reqwest::Client {
        daemon
            .wait_for("the server to answer /health", || async {
                if !(ca_cert.exists() && token_file.exists()) {
                    return None;
                }
                let http = https_client(ca_cert);
                Client::new(url, http.clone(), "")
                    .health()
                    .await
                    .then_some(http)
            })
            .await
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// SIGKILL: the control plane vanishes without a goodbye.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// SIGTERM, then waits (up to 30 s) for a graceful exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.daemon.terminate(Duration::from_secs(30))
    }

    /// Starts the stopped server again, same data directory, port and flags.
    pub async fn restart(&mut self) {
        self.daemon.respawn();
        let token_file = self.data_dir.join("admin.token");
        self.http =
            ServerProcess::wait_ready(&mut self.daemon, &self.url, &self.ca_cert, &token_file)
                .await;
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }
}

control_plane!(ServerProcess);
