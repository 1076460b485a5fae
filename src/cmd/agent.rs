//! `sealrun agent`: the daemon that runs inside a private network.

use crate::cli::AgentArgs;
use crate::logging;
use crate::output::Table;
use anyhow::{Context as _, Result, bail};
use sealrun_agent::pool::PoolConfig;
use sealrun_agent::state::StateDir;
use sealrun_agent::{AgentConfig, TargetConfig, defaults};
use sealrun_vault::TargetKeypair;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `agent.toml`; every key is optional and flags / env vars win; what neither
/// gives comes from [`sealrun_agent::defaults`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    url: Option<String>,
    ca_cert: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    enrollment_token: Option<String>,
    name: Option<String>,
    #[serde(default)]
    target: Vec<TargetEntry>,
    concurrency: Option<u32>,
    docker_host: Option<String>,
    shutdown_grace_secs: Option<u64>,
    max_run_timeout_secs: Option<u64>,
    init_binary: Option<PathBuf>,
    trust_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    name: String,
    key_file: Option<PathBuf>,
    /// The images this agent runs for the target, whatever the control
    /// plane allows.
    allowed_images: Option<Vec<String>>,
    /// Containers kept warm for the target (default 0: none).
    pool_size: Option<usize>,
    /// Seconds after which a warm container no run took is replaced.
    pool_max_age_secs: Option<u64>,
}

pub async fn run(args: AgentArgs) -> Result<()> {
    if args.print_key_ids {
        return print_key_ids(&config(args)?);
    }
    logging::init(logging::Format::Json);
    let config = config(args)?;
    sealrun_agent::run(config, crate::signal::shutdown()).await?;
    Ok(())
}

/// `sealrun agent --print-key-ids`: the key id of each target the agent
/// serves, and the fingerprint of the run-report key derived from it, from
/// the key file the agent would use (created if missing, as the agent would
/// on start), under the state directory's lock: what an admin compares
/// before `sealrun target trust`.
fn print_key_ids(config: &AgentConfig) -> Result<()> {
    let state = StateDir::open(&config.state_dir)?;
    let mut table = Table::new(&["TARGET", "KEY ID", "REPORT KEY", "KEY FILE"]);
    for target in &config.targets {
        let path = match &target.key_file {
            Some(p) => p.clone(),
            None => state.key_path(&target.name)?,
        };
        let (keypair, created) = TargetKeypair::load_or_generate(&path)
            .with_context(|| format!("key of target {}", target.name))?;
        let note = if created { " (created)" } else { "" };
        table.row(vec![
            target.name.clone(),
            keypair.key_id().to_string(),
            sealrun_agent::report::key(&keypair)
                .public_key()
                .fingerprint(),
            format!("{}{note}", path.display()),
        ]);
    }
    table.print()
}

/// `NAME` or `NAME=KEYFILE`.
fn parse_target(s: &str) -> TargetConfig {
    match s.split_once('=') {
        Some((name, key)) => TargetConfig {
            key_file: Some(PathBuf::from(key)),
            ..TargetConfig::new(name)
        },
        None => TargetConfig::new(s),
    }
}

fn config(args: AgentArgs) -> Result<AgentConfig> {
    let file: AgentFile = match &args.config {
        Some(p) => crate::config::load(p)?,
        None => AgentFile::default(),
    };
    // Printing key ids dials nothing: it needs no URL.
    let no_url_needed = args.print_key_ids.then(String::new);
    let Some(server_url) = args.url.or(file.url).or(no_url_needed) else {
        bail!("--url (or SEALRUN_URL) is required: the control plane to dial");
    };
    let targets: Vec<TargetConfig> = if args.targets.is_empty() {
        file.target
            .into_iter()
            .map(|t| TargetConfig {
                pool: PoolConfig {
                    size: t.pool_size.unwrap_or(0),
                    max_age: t
                        .pool_max_age_secs
                        .map_or(PoolConfig::DEFAULT_MAX_AGE, Duration::from_secs),
                },
                name: t.name,
                key_file: t.key_file,
                allowed_images: t.allowed_images,
            })
            .collect()
    } else {
        args.targets.iter().map(|s| parse_target(s)).collect()
    };
    if targets.is_empty() {
        bail!("name at least one --target the agent serves");
    }
    // The flags set every target's pool, over what the file says.
    let mut targets = targets;
    for t in &mut targets {
        if let Some(size) = args.pool_size {
            t.pool.size = size;
        }
        if let Some(secs) = args.pool_max_age_secs {
            t.pool.max_age = Duration::from_secs(secs);
        }
    }
    let name = args
        .name
        .or(file.name)
        .or_else(defaults::host_name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| defaults::NAME.to_owned());
    let state_dir = args
        .state_dir
        .or(file.state_dir)
        .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR));
    // Everything not given stays as `AgentConfig::new` sets it: the agent's defaults.
    let mut agent = AgentConfig::new(server_url, state_dir, name);
    agent.ca_cert = args.ca_cert.or(file.ca_cert);
    agent.enrollment_token = args.enrollment_token.or(file.enrollment_token);
    agent.targets = targets;
    if let Some(n) = args.concurrency.or(file.concurrency) {
        agent.concurrency = n;
    }
    agent.docker_host = args.docker_host.or(file.docker_host);
    if let Some(secs) = args.shutdown_grace_secs.or(file.shutdown_grace_secs) {
        agent.shutdown_grace = Duration::from_secs(secs);
    }
    agent.max_run_timeout = args
        .max_run_timeout_secs
        .or(file.max_run_timeout_secs)
        .map(Duration::from_secs);
    agent.init_binary = args.init_binary.or(file.init_binary);
    if let Some(path) = args.trust_file.or(file.trust_file) {
        let keys = super::trust::load_trust(&path)?;
        if keys.is_empty() {
            bail!(
                "{} lists no admin key (admins = [\"ed25519:...\"]): the agent would refuse every run",
                path.display()
            );
        }
        agent.trusted_admins = Some(keys);
    }
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use std::path::Path;

    fn args(extra: &[&str]) -> AgentArgs {
        let argv = ["sealrun", "agent"]
            .into_iter()
            .chain(extra.iter().copied());
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Agent(a) => a,
            _ => unreachable!("parsed as the agent subcommand"),
        }
    }

    #[test]
    fn the_example_agent_config_is_read_whole() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agent.toml");
        let c = config(args(&["--config", path])).unwrap();
        assert_eq!(c.server_url, "https://sealrun.internal:8443");
        assert_eq!(c.name, "dc1-db-1");
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.targets.len(), 2);
        assert_eq!(
            c.targets[1].key_file.as_deref(),
            Some(Path::new("/etc/sealrun/keys/k8s-prod.key"))
        );
        assert_eq!(c.max_run_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(
            (c.targets[0].pool.size, c.targets[0].pool.max_age),
            (2, Duration::from_secs(300))
        );
        assert_eq!(c.targets[1].pool.size, 0);
    }

    #[test]
    fn the_pool_flags_set_every_targets_pool_over_the_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agent.toml");
        let c = config(args(&[
            "--config",
            path,
            "--pool-size",
            "1",
            "--pool-max-age-secs",
            "30",
        ]))
        .unwrap();
        for t in &c.targets {
            assert_eq!((t.pool.size, t.pool.max_age), (1, Duration::from_secs(30)));
        }
    }

    #[test]
    fn what_no_flag_or_file_gives_comes_from_the_agent_crates_defaults() {
        let c = config(args(&["--url", "https://x:1", "--target", "t"])).unwrap();
        assert_eq!(c.state_dir, Path::new(defaults::STATE_DIR));
        assert_eq!(c.concurrency, defaults::CONCURRENCY);
        assert_eq!(c.shutdown_grace, defaults::SHUTDOWN_GRACE);
        assert_eq!(c.max_run_timeout, None);
    }

    #[test]
    fn an_agent_without_targets_is_refused() {
        let err = config(args(&["--url", "https://x:1"])).unwrap_err();
        assert!(err.to_string().contains("--target"), "{err}");
    }
    #[test]
    fn a_target_may_name_its_key_file() {
        let t = super::parse_target("prod-db=/etc/sealrun/prod-db.key");
        assert_eq!(t.name, "prod-db");
        assert_eq!(
            t.key_file.unwrap().to_str(),
            Some("/etc/sealrun/prod-db.key")
        );
        assert!(super::parse_target("demo").key_file.is_none());
    }
}
