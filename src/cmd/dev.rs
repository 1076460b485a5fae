//! `sealrun dev`: a control plane, an agent, an org, a pool and a demo target
//! on this machine, in one process, for trying sealrun out.

use crate::cli::DevArgs;
use crate::client::{Client, Connection};
use crate::logging;
use crate::output;
use anyhow::{Context as _, Result, bail};
use sealrun_agent::{AgentConfig, TargetConfig};
use sealrun_api::{Server, ServerConfig};
use sealrun_dirlock::DirLock;
use sealrun_wire::admin::{EnrollmentToken, TargetSpec, TargetView, Whoami};
use sealrun_wire::agent::ResourceLimits;
use sealrun_wire::trust::SigningKey;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEMO_TARGET: &str = "demo";

pub async fn run(args: DevArgs) -> Result<()> {
    logging::init(logging::Format::Text);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    // One `sealrun dev` per data directory, and nothing touched before it is
    // ours: not the image, the control plane (which locks `server/` too),
    // the agent (`agent/`), the admin token or `dev.env`. Held until return.
    let _lock = DirLock::acquire(&data_dir, "data directory", "sealrun dev")?;
    say("checking the Docker engine");
    // Before anything starts: without the shim the agent could not run anything.
    let init_binary = sealrun_agent::init::locate(args.init_binary.as_deref())?;
    say(&format!("init shim {}", init_binary.display()));
    ensure_image(&args.image).await?;

    let token_file = data_dir.join("admin.token");
    let config = ServerConfig {
        data_dir: data_dir.join("server"),
        listen: args.listen.parse().with_context(|| {
            format!(
                "--listen {}: expected an address like 127.0.0.1:8443",
                args.listen
            )
        })?,
        org_name: "dev".to_owned(),
        admin_token_file: Some(token_file.clone()),
        ..ServerConfig::default()
    };
    let server = Server::bind(config)
        .await
        .context("cannot start the control plane (is another `sealrun dev` running?)")?;
    let addr = server.local_addr();
    let url = format!("https://localhost:{}", addr.port());
    let ca_cert = server
        .ca_cert_path()
        .map(Path::to_path_buf)
        .context("the dev control plane should have generated its own CA")?;
    say(&format!("control plane listening on {url}"));
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async {
        let _ = server_stopped.await;
    }));

    let admin_token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read the admin token from {}", token_file.display()))?
        .trim()
        .to_owned();
    let admin = Client::new(Connection {
        url: url.clone(),
        token: admin_token.clone(),
        ca_cert: Some(ca_cert.clone()),
        pinned_admins: Vec::new(),
    })?;
    let spec = TargetSpec {
        name: DEMO_TARGET.to_owned(),
        private_network: "local".to_owned(),
        pool: TargetSpec::default_pool(),
        image: args.image.clone(),
        allowed_images: Vec::new(),
        network: None,
        limits: ResourceLimits::default(),
        timeout_secs: 600,
        policy: Default::default(),
        user: None,
    };
    let _: TargetView = admin
        .put(&format!("/v1/targets/{DEMO_TARGET}"), &spec)
        .await?;
    say(&format!(
        "target `{DEMO_TARGET}` runs in image {}",
        args.image
    ));

    let agent_dir = data_dir.join("agent");
    let enrollment_token = if agent_dir.join("agent.json").exists() {
        None
    } else {
        let t: EnrollmentToken = admin
            .post(
                "/v1/pools/default/enrollment-tokens",
                &serde_json::json!({}),
            )
            .await?;
        Some(t.token)
    };
    // The agent's defaults, but for what a local setup knows better.
    let mut agent_config = AgentConfig::new(url.clone(), agent_dir, "dev-agent");
    agent_config.ca_cert = Some(ca_cert.clone());
    agent_config.enrollment_token = enrollment_token;
    agent_config.targets = vec![TargetConfig::new(DEMO_TARGET)];
    // Ctrl-C on a dev setup should not hold the terminal for the full 30 s.
    agent_config.shutdown_grace = Duration::from_secs(10);
    agent_config.init_binary = Some(init_binary);
    // The dev's own trust root: one admin key, made once in the data
    // directory. Its agent trusts it, as a production agent trusts its
    // admins' keys (`trust_file`), so the dev runs only what is signed,
    // certified and approved, like the real thing.
    let trust = DevTrust::open(&data_dir)?;
    agent_config.trusted_admins = Some(vec![trust.key.public_key()]);
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut agent_task = tokio::spawn(sealrun_agent::run(agent_config, async {
        let _ = agent_stopped.await;
    }));
    wait_for_key(&admin, &mut agent_task).await?;
    say("agent connected and serving `demo`");
    trust_demo(&trust, &admin, &spec).await?;
    say("demo's key certified with this dev's admin key, which its CLI and agent trust");

    let env_file = data_dir.join("dev.env");
    write_env(&env_file, &url, &admin_token, &ca_cert, &trust)?;
    next_steps(&env_file, &url, &ca_cert);

    tokio::select! {
        _ = crate::signal::shutdown() => {}
        r = &mut agent_task => {
            let _ = stop_server.send(());
            let _ = server_task.await;
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the agent stopped")),
                Err(e) => bail!("the agent crashed: {e}"),
            };
        }
    }
    say("stopping: agent first (running commands get 10 s), then the control plane");
    let _ = stop_agent.send(());
    let _ = agent_task.await;
    let _ = stop_server.send(());
    let _ = server_task.await;
    Ok(())
}

fn say(msg: &str) {
    eprintln!("{} {msg}", output::paint_stderr("[sealrun dev]", "1;34"));
}

/// Waits until the agent has pinned the demo target's key, or fails with the
/// agent's own error if it stops first.
async fn wait_for_key(
    admin: &Client,
    agent: &mut tokio::task::JoinHandle<Result<(), sealrun_agent::Error>>,
) -> Result<()> {
    for _ in 0..300 {
        if agent.is_finished() {
            return match agent.await {
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the agent could not start")),
                _ => bail!("the agent stopped before it connected"),
            };
        }
        let t: TargetView = admin.get(&format!("/v1/targets/{DEMO_TARGET}")).await?;
        if t.public_key.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the agent did not connect within 30 s")
}

/// The dev's trust root: its admin key and trust file (in the data
/// directory; created once).
struct DevTrust {
    admin_key: PathBuf,
    trust_file: PathBuf,
    key: SigningKey,
}

impl DevTrust {
    fn open(data_dir: &Path) -> Result<DevTrust> {
        let admin_key = data_dir.join("signing.key");
        let trust_file = data_dir.join("trust.toml");
        let key = if admin_key.exists() {
            super::trust::load_signing_key(&admin_key)?
        } else {
            super::trust::create_signing_key(&admin_key)?
        };
        super::trust::trust_key(&trust_file, key.public_key())?;
        Ok(DevTrust {
            admin_key,
            trust_file,
            key,
        })
    }
}

/// Certifies the demo target's key and declaration with the dev's admin
/// key (again at every start: an agent with a new state directory has a
/// new key), and the dev admin's own signing key (the same key).
async fn trust_demo(trust: &DevTrust, admin: &Client, spec: &TargetSpec) -> Result<()> {
    let key = &trust.key;
    let me: Whoami = admin.get("/v1/whoami").await?;
    let view: TargetView = admin.get(&format!("/v1/targets/{DEMO_TARGET}")).await?;
    let Some(pinned) = &view.public_key else {
        bail!("target {DEMO_TARGET} has no key yet");
    };
    // The declaration this process just made, for the key its own agent
    // presented: nothing to check out of band on one machine.
    let signed = super::trust::certificate(key, &me.org, spec, pinned, 365);
    let _: TargetView = admin
        .put(&format!("/v1/targets/{DEMO_TARGET}/certificate"), &signed)
        .await?;
    // The dev's admin signs their runs and approvals with the same key.
    if let Some(user) = &me.user {
        super::trust::certify_user(
            admin,
            user,
            &key.public_key().to_string(),
            super::trust::Passkeys::Keep,
            365,
            Some(trust.admin_key.clone()),
        )
        .await?;
    }
    Ok(())
}

/// `dev.env` holds the admin token: readable by its owner only. Written
/// whole to a temporary file and renamed into place, so whoever waits for
/// `dev.env` to appear (a script, the test kit) never reads half of it.
fn write_env(path: &Path, url: &str, token: &str, ca: &Path, trust: &DevTrust) -> Result<()> {
    let text = format!(
        "# written by `sealrun dev`: source it to use the CLI against the dev control plane\n\
         export SEALRUN_URL='{url}'\nexport SEALRUN_TOKEN='{token}'\nexport SEALRUN_CA_CERT='{}'\n\
         export SEALRUN_SIGNING_KEY_FILE='{}'\nexport SEALRUN_TRUST_FILE='{}'\n",
        ca.display(),
        trust.admin_key.display(),
        trust.trust_file.display()
    );
    let tmp = path.with_extension("env.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn next_steps(env_file: &Path, url: &str, ca_cert: &Path) {
    eprintln!(
        "\n{ready} In another shell:\n\n  \
         source {env}\n  \
         printf %s 'correct-horse-battery' | sealrun secret set --target demo DB_PASSWORD\n  \
         sealrun run --target demo --secret DB_PASSWORD -- sh -c 'echo \"password: $DB_PASSWORD\"'\n  \
         sealrun runs list\n  \
         sealrun audit verify\n\n\
         Web console: {url}/ui/ (sign in with the token in {env}; the certificate is\n\
         signed by this dev's own CA, {ca}, which your browser does not know).\n\n\
         Ctrl-C here stops the control plane and the agent.\n",
        ready = output::paint_stderr("Ready.", "1"),
        env = env_file.display(),
        ca = ca_cert.display()
    );
}

/// Makes sure the demo image exists; the default one is built FROM scratch
/// with the host's static busybox (see [`sealrun_agent::image`]), so a machine
/// with no registry access works.
async fn ensure_image(image: &str) -> Result<()> {
    let docker = sealrun_agent::image::connect_local().await?;
    sealrun_agent::image::ensure(&docker, image, say).await?;
    Ok(())
}
