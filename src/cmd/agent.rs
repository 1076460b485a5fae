//! `sealrun agent`: the daemon that runs inside a private network.

use crate::cli::AgentArgs;
use crate::logging;
use anyhow::{Context as _, Result, bail};
use sealrun_agent::{AgentConfig, TargetConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `agent.toml`; every key is optional and flags / env vars win.
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    name: String,
    key_file: Option<PathBuf>,
}

pub async fn run(args: AgentArgs) -> Result<()> {
    logging::init(logging::Format::Json);
    let config = config(args)?;
    sealrun_agent::run(config, crate::signal::shutdown()).await?;
    Ok(())
}

fn load_file(path: &Path) -> Result<AgentFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))
}

/// `NAME` or `NAME=KEYFILE`.
fn parse_target(s: &str) -> TargetConfig {
    match s.split_once('=') {
        Some((name, key)) => TargetConfig {
            name: name.to_owned(),
            key_file: Some(PathBuf::from(key)),
        },
        None => TargetConfig {
            name: s.to_owned(),
            key_file: None,
        },
    }
}

fn config(args: AgentArgs) -> Result<AgentConfig> {
    let file = match &args.config {
        Some(p) => load_file(p)?,
        None => AgentFile::default(),
    };
    let Some(server_url) = args.url.or(file.url) else {
        bail!("--url (or SEALRUN_URL) is required: the control plane to dial");
    };
    let targets: Vec<TargetConfig> = if args.targets.is_empty() {
        file.target
            .into_iter()
            .map(|t| TargetConfig {
                name: t.name,
                key_file: t.key_file,
            })
            .collect()
    } else {
        args.targets.iter().map(|s| parse_target(s)).collect()
    };
    if targets.is_empty() {
        bail!("name at least one --target the agent serves");
    }
    let name = args
        .name
        .or(file.name)
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "agent".to_owned());
    Ok(AgentConfig {
        server_url,
        ca_cert: args.ca_cert.or(file.ca_cert),
        state_dir: args
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/sealrun-agent")),
        enrollment_token: args.enrollment_token.or(file.enrollment_token),
        name,
        targets,
        concurrency: args.concurrency.or(file.concurrency).unwrap_or(4),
        docker_host: args.docker_host.or(file.docker_host),
        shutdown_grace: Duration::from_secs(
            args.shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .unwrap_or(30),
        ),
        max_run_timeout: args
            .max_run_timeout_secs
            .or(file.max_run_timeout_secs)
            .map(Duration::from_secs),
        init_binary: args.init_binary.or(file.init_binary),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

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
