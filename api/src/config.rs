//! How a control plane is set up: where it keeps its data, where it listens,
//! which certificate it presents, and the protocol knobs it dictates to agents.

use sealrun_control::Settings;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything [`Server::bind`](crate::Server::bind) needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Holds `sealrun.db` (SQLite, WAL) and `tls/`. Created (mode 0700) if missing.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (see
    /// [`Server::local_addr`](crate::Server::local_addr)).
    pub listen: SocketAddr,
    /// Certificate the server presents.
    pub tls: TlsConfig,
    /// Names besides `localhost`, `127.0.0.1` and `::1` the self-signed
    /// certificate is valid for (ignored with [`TlsConfig::Files`]).
    pub extra_hostnames: Vec<String>,
    /// Org created on first start.
    pub org_name: String,
    /// Where the first start writes the org's one-time admin token (mode 0600).
    /// `None` prints it once to stderr instead.
    pub admin_token_file: Option<PathBuf>,
    /// Protocol knobs and limits.
    pub settings: Settings,
    /// How many connections are kept, and how long each phase of one may
    /// take.
    pub connections: ConnectionLimits,
    /// Where `/metrics` is served, and to whom.
    pub metrics: MetricsAccess,
    /// Slack's Web API, where approval requests are posted (default
    /// [`crate::SLACK_API_URL`]); `http://` only to a loopback address (a
    /// local stand-in).
    pub slack_api_url: String,
    /// A shared PostgreSQL database (several replicas); `None` keeps the
    /// embedded SQLite database in `data_dir`.
    pub database: Option<sealrun_control::DatabaseUrl>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./sealrun-data"),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8443)),
            tls: TlsConfig::SelfSigned,
            extra_hostnames: Vec::new(),
            org_name: "default".to_owned(),
            admin_token_file: None,
            settings: Settings::default(),
            connections: ConnectionLimits::default(),
            metrics: MetricsAccess::default(),
            slack_api_url: crate::SLACK_API_URL.to_owned(),
            database: None,
        }
    }
}

/// Caps and timeouts of client connections (see `README.md`, "Limits").
///
/// Connections beyond a cap make room by closing the one idle longest (no
/// request in flight: a handshake or headers not finished, or a keep-alive
/// connection between requests); when every connection is busy, newcomers
/// are answered `503` with `Retry-After`. Both caps are lowered to fit the
/// process's open-file limit (raised to its hard limit at start), less a
/// reserve the database can always use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, from all clients.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_per_client: usize,
    /// Time for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time for a request's headers to arrive, counted from the
    /// connection's start or the end of its previous response: also how
    /// long a keep-alive connection may stay idle.
    pub idle_timeout: Duration,
    /// Time for a request's body to arrive whole, after its headers. Run
    /// input (`PUT /v1/runs/{id}/stdin`) is exempt: it may stream as long as
    /// its run lasts.
    pub body_timeout: Duration,
    /// What `Retry-After` says when the server is saturated.
    pub retry_after: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            max_per_client: 256,
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Where `/metrics` is served, and to whom. The metrics are of the whole
/// control plane (every org's runs counted together), so they are never
/// shown to anonymous callers of the API address: only on `listen`, or there
/// with `token_file`'s token. With neither, `/metrics` is not served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsAccess {
    /// A separate address serving `/metrics` (and `/health`) over plain
    /// HTTP without a token: bind it to loopback or an internal network.
    pub listen: Option<SocketAddr>,
    /// A file holding the token (at least 16 characters) that
    /// `Authorization: Bearer` must carry for `/metrics` on the API address.
    /// Only its SHA-256 is kept in memory.
    pub token_file: Option<PathBuf>,
}

/// The certificate the server presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsConfig {
    /// Generate a private CA and a server certificate signed by it into
    /// `data_dir/tls/` on first start and reuse them afterwards. Clients pin
    /// `tls/ca.pem`.
    #[default]
    SelfSigned,
    /// PEM files: the certificate chain and its private key.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}
