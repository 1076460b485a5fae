//! `sealrun server`: the control plane daemon.

use crate::cli::{ServerArgs, ServerCommand};
use crate::logging;
use crate::output::outln;
use anyhow::{Context as _, Result};
use sealrun_api::{Server, ServerConfig, TlsConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `server.toml`; every key is optional and flags / env vars win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<String>,
    org: Option<String>,
    admin_token_file: Option<PathBuf>,
    #[serde(default)]
    hostnames: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    lease_ttl_secs: Option<u64>,
    queue_ttl_secs: Option<u64>,
    max_log_bytes: Option<u64>,
    max_agents_per_org: Option<u32>,
    metrics_listen: Option<String>,
    metrics_token_file: Option<PathBuf>,
    slack_api_url: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
}

pub async fn run(args: ServerArgs) -> Result<()> {
    if let Some(ServerCommand::CreateOrg {
        data_dir,
        database_url: url,
        name,
    }) = args.command
    {
        // The org goes where the server keeps its data: the same settings,
        // read the same way (flags, then env, then the file).
        let file = server_file(args.config.as_deref())?;
        let data_dir = data_dir
            .or(args.data_dir)
            .or(file.data_dir)
            .unwrap_or_else(|| ServerConfig::default().data_dir);
        let url = url.or(args.database_url).or(file.database_url);
        let database = url.as_deref().map(database_url).transpose()?;
        let token = sealrun_api::create_org(&data_dir, database.as_ref(), &name)
            .with_context(|| format!("cannot create org {name}"))?;
        eprintln!("org {name} created; its admin token is shown only this once:");
        outln!("{token}")?;
        return Ok(());
    }
    if let Some(ServerCommand::ReplicaFiles { out, hostnames }) = args.command {
        let files = sealrun_api::replica_files(&out, &hostnames)
            .with_context(|| format!("cannot make the replicas' files in {}", out.display()))?;
        outln!(
            "made the files replicas share in {}:\n  \
             tls_cert = {}\n  tls_key = {}\n  \
             copy into each replica's data directory: {}\n  \
             agents and CLIs pin: {}\n  \
             keep off the replicas (it issues certificates): {}",
            out.display(),
            files.cert.display(),
            files.key.display(),
            files.slack_key.display(),
            files.ca_cert.display(),
            files.ca_key.display()
        )?;
        return Ok(());
    }
    if let Some(ServerCommand::MigrateStore { from, to }) = args.command {
        let file = server_file(args.config.as_deref())?;
        let Some(to) = to.or(args.database_url).or(file.database_url) else {
            anyhow::bail!(
                "migrate-store needs the PostgreSQL database: SEALRUN_DATABASE_URL, --to, or database_url in --config"
            );
        };
        let to = database_url(&to)?;
        let moved = sealrun_api::migrate_store(&from, &to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.location()))?;
        for (table, rows) in &moved.rows {
            eprintln!("  {table}: {rows} rows");
        }
        for (org, entries, head) in &moved.chains {
            eprintln!(
                "  org {org}: audit chain of {entries} entries verified on the copy, head {head}"
            );
        }
        outln!(
            "moved {} to {}: {} rows, {} audit chains verified",
            moved.source.display(),
            to.location(),
            moved.rows.values().sum::<u64>(),
            moved.chains.len()
        )?;
        return Ok(());
    }
    logging::init(logging::Format::Json);
    let config = config(args)?;
    let server = Server::bind(config)
        .await
        .context("cannot start the control plane")?;
    tracing::info!(addr = %server.local_addr(), ca = ?server.ca_cert_path(), "control plane listening");
    server.run(crate::signal::shutdown()).await?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// `database_url` / `SEALRUN_DATABASE_URL`, checked; the error never
/// quotes the URL, which may hold a password.
fn database_url(url: &str) -> Result<sealrun_api::DatabaseUrl> {
    url.parse()
        .map_err(|e: String| anyhow::anyhow!("database_url: {e}"))
}

/// `server.toml`, or every key unset when none is given.
fn server_file(path: Option<&std::path::Path>) -> Result<ServerFile> {
    match path {
        Some(p) => crate::config::load(p),
        None => Ok(ServerFile::default()),
    }
}

fn config(args: ServerArgs) -> Result<ServerConfig> {
    let file = server_file(args.config.as_deref())?;
    let mut config = ServerConfig::default();
    if let Some(d) = args.data_dir.or(file.data_dir) {
        config.data_dir = d;
    }
    if let Some(url) = args.database_url.or(file.database_url) {
        config.database = Some(database_url(&url)?);
    }
    if let Some(l) = args.listen.or(file.listen) {
        config.listen = l
            .parse()
            .with_context(|| format!("--listen {l}: expected an address like 0.0.0.0:8443"))?;
    }
    if let Some(o) = args.org.or(file.org) {
        config.org_name = o;
    }
    config.admin_token_file = args.admin_token_file.or(file.admin_token_file);
    config.extra_hostnames = if args.hostnames.is_empty() {
        file.hostnames
    } else {
        args.hostnames
    };
    if let (Some(cert), Some(key)) = (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        config.tls = TlsConfig::Files { cert, key };
    }
    if let Some(s) = args.lease_ttl_secs.or(file.lease_ttl_secs) {
        config.settings.lease_ttl = Duration::from_secs(s);
    }
    if let Some(s) = args.queue_ttl_secs.or(file.queue_ttl_secs) {
        if s == 0 {
            anyhow::bail!("queue_ttl_secs must be at least 1");
        }
        config.settings.queue_ttl = Duration::from_secs(s);
    }
    if let Some(b) = args.max_log_bytes.or(file.max_log_bytes) {
        config.settings.max_log_bytes = b;
    }
    if let Some(n) = args.max_agents_per_org.or(file.max_agents_per_org) {
        config.settings.max_agents_per_org = n;
    }
    if let Some(l) = args.metrics_listen.or(file.metrics_listen) {
        config.metrics.listen = Some(l.parse().with_context(|| {
            format!("--metrics-listen {l}: expected an address like 127.0.0.1:9464")
        })?);
    }
    config.metrics.token_file = args.metrics_token_file.or(file.metrics_token_file);
    if let Some(url) = args.slack_api_url.or(file.slack_api_url) {
        config.slack_api_url = url;
    }
    if let Some(n) = args.max_connections.or(file.max_connections) {
        if n == 0 {
            anyhow::bail!("max_connections must be at least 1");
        }
        config.connections.max_connections = n;
    }
    if let Some(n) = args
        .max_connections_per_client
        .or(file.max_connections_per_client)
    {
        if n == 0 {
            anyhow::bail!("max_connections_per_client must be at least 1");
        }
        config.connections.max_per_client = n;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(extra: &[&str]) -> ServerArgs {
        let mut argv = vec!["server"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(std::iter::once("sealrun").chain(argv)).command {
            crate::cli::Command::Server(a) => a,
            _ => unreachable!("parsed as the server subcommand"),
        }
    }

    #[test]
    fn the_example_server_config_is_read_whole() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/server.toml");
        let c = config(args(&["--config", path])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/sealrun"));
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.org_name, "acme");
        assert_eq!(c.extra_hostnames, ["sealrun.internal"]);
        assert_eq!(c.settings.lease_ttl, Duration::from_secs(60));
        assert_eq!(c.settings.queue_ttl, Duration::from_secs(3600));
        assert_eq!(c.settings.max_agents_per_org, 100);
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.connections.max_connections, 4096);
        assert_eq!(c.connections.max_per_client, 256);
    }

    #[test]
    fn a_zero_queue_ttl_is_refused() {
        let err = config(args(&["--queue-ttl-secs", "0"])).unwrap_err();
        assert!(err.to_string().contains("queue_ttl_secs"), "{err}");
        // Positive control: one second is a valid TTL.
        let c = config(args(&["--queue-ttl-secs", "1"])).unwrap();
        assert_eq!(c.settings.queue_ttl, Duration::from_secs(1));
    }

    #[test]
    fn metrics_access_and_connection_caps_are_read() {
        let c = config(args(&[
            "--metrics-listen",
            "127.0.0.1:9464",
            "--metrics-token-file",
            "/etc/sealrun/metrics.token",
            "--max-connections",
            "100",
            "--max-connections-per-client",
            "10",
        ]))
        .unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(
            c.metrics.token_file,
            Some(PathBuf::from("/etc/sealrun/metrics.token"))
        );
        assert_eq!(c.connections.max_connections, 100);
        assert_eq!(c.connections.max_per_client, 10);
        let err = config(args(&["--max-connections", "0"])).unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        let err = config(args(&["--metrics-listen", "9464"])).unwrap_err();
        assert!(err.to_string().contains("--metrics-listen"), "{err}");
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/server.toml");
        let c = config(args(&["--config", path, "--listen", "127.0.0.1:9000"])).unwrap();
        assert_eq!(c.listen.port(), 9000);
    }

    #[test]
    fn an_unknown_config_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "lisen = \"0.0.0.0:1\"\n").unwrap();
        let err = config(args(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
