//! How a control plane is set up: where it keeps its data, where it listens,
//! which certificate it presents, and the protocol knobs it dictates to agents.

use sealrun_control::Settings;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

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
        }
    }
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
