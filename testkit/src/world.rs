//! [`World`]: a control plane, an agent serving one target, and the org's
//! admin, cleaned up on drop (agent first, then the server, then the
//! temporary directory: no container, process or file is left behind).

use crate::agent::{AgentProcess, FakeAgent};
use crate::client::{Client, run_request};
use crate::docker::{IMAGE, containers_of};
use crate::process::Cli;
use crate::server::{ControlPlane, InProcessServer, ServerProcess, quick_settings};
use sealrun_api::{ServerConfig, Settings};
use sealrun_wire::admin::{TargetSpec, TargetView};
use sealrun_wire::run::RunRequest;
use std::path::{Path, PathBuf};

/// A control plane `S` with an agent `A` serving [`World::target`], and the
/// first org's admin. Two kinds exist, for what the suites need:
///
/// - [`World::in_process`]: the `sealrun_api` library serving in this
///   process ([`InProcessServer`]) and a [`FakeAgent`] speaking the protocol
///   with reqwest, serving target `db` (no Docker);
/// - [`World::spawned`]: `sealrun server` and `sealrun agent` subprocesses
///   ([`ServerProcess`], [`AgentProcess`]) running commands in Docker,
///   serving target `e2e`.
#[derive(Debug)]
pub struct World<S: ControlPlane, A> {
    // Fields drop in order: the agent before the server, both before their files.
    /// The agent.
    pub agent: A,
    /// The control plane.
    pub server: S,
    /// A client holding the first org's admin token.
    pub admin: Client,
    /// The target the agent serves.
    pub target: String,
    /// The world's temporary directory (`server/`, `agent/`, the logs).
    pub dir: tempfile::TempDir,
}

/// A [`World::in_process`] world.
pub type InProcessWorld = World<InProcessServer, FakeAgent>;
/// A [`World::spawned`] world.
pub type SpawnedWorld = World<ServerProcess, AgentProcess>;

impl<S: ControlPlane, A> World<S, A> {
    /// A run request for `argv` on the world's target.
    pub fn request(&self, argv: &[&str]) -> RunRequest {
        run_request(&self.target, argv)
    }

    /// Submits `argv` on the world's target as the admin; the run's id.
    pub async fn submit(&self, argv: &[&str]) -> String {
        self.admin.submit_request(&self.request(argv)).await
    }
}

impl World<InProcessServer, FakeAgent> {
    /// An in-process world with [`quick_settings`].
    pub async fn in_process() -> Self {
        World::in_process_with(quick_settings()).await
    }

    /// An in-process world with `settings`: org `acme`, target `db`, fake
    /// agent `agent-1` connected with a fresh key.
    pub async fn in_process_with(settings: Settings) -> Self {
        World::in_process_configured(|_| {}, settings).await
    }

    /// [`World::in_process_with`], the server's configuration changed by
    /// `configure` first (to point it at a Slack stand-in, say).
    pub async fn in_process_configured(
        configure: impl FnOnce(&mut ServerConfig),
        settings: Settings,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = InProcessServer::config_in(dir.path(), settings);
        configure(&mut config);
        let server = InProcessServer::start_config(config).await;
        let admin = server.admin();
        let target = "db".to_owned();
        admin.declare_target(&target).await;
        let agent = FakeAgent::enroll(&server, &admin, "agent-1", &[&target]).await;
        World {
            agent,
            server,
            admin,
            target,
            dir,
        }
    }
}

/// How a [`World::spawned_with`] is set up.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// Extra `sealrun server` flags.
    pub server_args: Vec<String>,
    /// Extra `sealrun agent` flags.
    pub agent_args: Vec<String>,
    /// The target's run timeout.
    pub target_timeout_secs: u64,
    /// Signed runs: the agent trusts the admin key of [`trust_target`] (its
    /// trust file), and the admin user's key is certified, so runs the
    /// admin submits with [`World::signing_cli`] are signed.
    pub signed: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            server_args: vec![],
            agent_args: vec![],
            target_timeout_secs: 300,
            signed: false,
        }
    }
}

impl World<ServerProcess, AgentProcess> {
    /// A world of `sealrun` subprocesses with default options. Needs Docker
    /// (check [`crate::require_docker`] first).
    pub async fn spawned() -> Self {
        World::spawned_with(WorldOptions::default()).await
    }

    /// A world of `sealrun` subprocesses: target `e2e` (image [`IMAGE`]) and
    /// agent `e2e-agent` connected and serving it.
    pub async fn spawned_with(options: WorldOptions) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server_args: Vec<&str> = options.server_args.iter().map(String::as_str).collect();
        let server = ServerProcess::start(&dir.path().join("server"), &server_args).await;
        let admin = server.admin();
        let target = "e2e".to_owned();
        admin
            .put_target(&spawned_target(&target, options.target_timeout_secs))
            .await;
        let enrollment = admin.enrollment_token("default").await;
        let mut agent_args = options.agent_args.clone();
        if options.signed {
            let cli = server.cli(&admin.token);
            let key_file = server.data_dir().join(ADMIN_KEY_FILE);
            cli.ok(&["keys", "init", "--admin", "--key-file", path_str(&key_file)]);
            let trust_file = server.data_dir().join(".config/sealrun/trust.toml");
            agent_args.push("--trust-file".into());
            agent_args.push(path_str(&trust_file).to_owned());
        }
        let agent_args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
        let mut agent = AgentProcess::start(
            &server,
            &dir.path().join("agent"),
            "e2e-agent",
            &[&target],
            Some(&enrollment),
            &agent_args,
        )
        .await;
        agent.wait_connected(&admin, &[&target]).await;
        trust_target(&server, &admin, &target).await;
        if options.signed {
            let me: sealrun_wire::admin::Whoami = admin.get("/v1/whoami").await.ok().parse();
            let user = me.user.expect("the admin is a user");
            let key_file = server.data_dir().join(ADMIN_KEY_FILE);
            certify_user(&server, &admin, &user, &key_file);
        }
        World {
            agent,
            server,
            admin,
            target,
            dir,
        }
    }

    /// The admin's CLI, signing with the admin's key (certified for the
    /// admin user in a [`WorldOptions::signed`] world).
    pub fn signing_cli(&self) -> Cli {
        signing_cli(
            &self.server,
            &self.admin.token,
            &self.server.data_dir().join(ADMIN_KEY_FILE),
        )
    }

    /// Asserts that no container of the world's agent exists.
    pub fn assert_no_containers(&self) {
        let left = containers_of(&self.agent.id);
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

/// The declaration of a [`World::spawned`] world's target `name`: image
/// [`IMAGE`] in the default pool, default limits and policy, and runs of at
/// most `timeout_secs`.
pub fn spawned_target(name: &str, timeout_secs: u64) -> TargetSpec {
    TargetSpec {
        name: name.to_owned(),
        private_network: "test".into(),
        pool: TargetSpec::default_pool(),
        image: IMAGE.into(),
        allowed_images: Vec::new(),
        network: None,
        limits: Default::default(),
        timeout_secs,
        policy: Default::default(),
        user: None,
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// `server`'s CLI with `token`, signing with the key in `key_file`.
pub fn signing_cli(server: &impl ControlPlane, token: &str, key_file: &Path) -> Cli {
    let mut cli = server.cli(token);
    cli.env.push((
        "SEALRUN_SIGNING_KEY_FILE".into(),
        path_str(key_file).to_owned(),
    ));
    cli
}

/// Makes a signing key for `user` in `key_file` (unless there is one) and
/// certifies it with [`trust_target`]'s admin key, through the real
/// `sealrun keys init` and `sealrun user certify` (as `admin`).
pub fn certify_user(server: &impl ControlPlane, admin: &Client, user: &str, key_file: &Path) {
    let cli = server.cli(&admin.token);
    if !key_file.exists() {
        cli.ok(&["keys", "init", "--key-file", path_str(key_file)]);
    }
    let public = cli.ok(&["keys", "show", "--key-file", path_str(key_file)]);
    let admin_key = server.data_dir().join(ADMIN_KEY_FILE);
    cli.ok(&[
        "user",
        "certify",
        user,
        "--key",
        public.trim(),
        "--key-file",
        path_str(&admin_key),
    ]);
}

/// Where [`trust_target`] keeps the admin's signing key, in the server's
/// data directory.
pub const ADMIN_KEY_FILE: &str = "admin-signing.key";

/// What an admin checks before `sealrun target trust` certifies a target:
/// the key id and report-key fingerprint it is pinned to (as `--key-id` and
/// `--report-key` take them) and its declaration, written as a targets file
/// in `server`'s data directory (as `-f` takes it).
#[derive(Clone, Debug)]
pub struct Checked {
    /// `--key-id`.
    pub key_id: String,
    /// `--report-key` (`none` if its agent presented none).
    pub report_key: String,
    /// `-f`.
    pub file: PathBuf,
}

/// [`Checked`] for `target`, read as `admin`.
pub async fn what_an_admin_checks(
    server: &impl ControlPlane,
    admin: &Client,
    target: &str,
) -> Checked {
    let view: TargetView = admin
        .get(&format!("/v1/targets/{target}"))
        .await
        .ok()
        .parse();
    let pinned = view.public_key.expect("the target's key is pinned");
    let report_key = pinned
        .report_key
        .and_then(|k| sealrun_wire::trust::SignerKey::parse(&k).ok())
        .map_or_else(|| "none".to_owned(), |k| k.fingerprint());
    #[derive(serde::Serialize)]
    struct TargetsFile<'a> {
        target: [&'a sealrun_wire::admin::TargetSpec; 1],
    }
    let file = server.data_dir().join(format!("certified-{target}.toml"));
    std::fs::write(
        &file,
        toml::to_string(&TargetsFile {
            target: [&view.spec],
        })
        .expect("a target declaration is TOML"),
    )
    .expect("the data directory is writable");
    Checked {
        key_id: pinned.key_id.0,
        report_key,
        file,
    }
}

/// Makes `server`'s CLIs ([`ControlPlane::cli`]: `HOME` is its data
/// directory) trust a new admin key, and certifies `target`'s pinned key,
/// report key and current declaration with it, through the real `sealrun
/// keys init` and `sealrun target trust` (as `admin`, given
/// [`what_an_admin_checks`]): so `sealrun secret set` seals to it.
pub async fn trust_target(server: &impl ControlPlane, admin: &Client, target: &str) {
    let checked = what_an_admin_checks(server, admin, target).await;
    let cli = server.cli(&admin.token);
    // Not the CLI's default key file: a CLI run from this HOME stays
    // unsigned unless a test signs on purpose ([`SIGNING_KEY_FILE`]).
    let key_file = server.data_dir().join(ADMIN_KEY_FILE);
    let key_file = path_str(&key_file);
    if !Path::new(key_file).exists() {
        cli.ok(&["keys", "init", "--admin", "--key-file", key_file]);
    }
    cli.ok(&[
        "target",
        "trust",
        target,
        "--key-id",
        &checked.key_id,
        "--report-key",
        &checked.report_key,
        "-f",
        path_str(&checked.file),
        "--key-file",
        key_file,
    ]);
}
