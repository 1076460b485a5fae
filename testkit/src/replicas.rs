//! Several `sealrun server` processes on one PostgreSQL database, as an
//! operator runs them (README, "PostgreSQL and several replicas"), and the
//! TCP load balancer in front of them that `examples/haproxy.cfg` stands
//! for: TLS passes through it to whichever replica takes the connection.

use crate::client::https_client;
use crate::server::{ControlPlane, ServerProcess};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// `n` replicas of one control plane sharing the database at `url`, each
/// with a data directory of its own under `dir` (`replica-0`, ...) holding
/// the same TLS material and admin token, which is what replicas must share
/// besides the database (and `slack.key`, unused here).
#[derive(Debug)]
pub struct Replicas {
    /// The replicas, in the order they started.
    pub servers: Vec<ServerProcess>,
}

impl Replicas {
    /// Starts the first replica (it creates the org, its TLS material and
    /// admin token), then the others with copies of those; `extra_args`
    /// go to every one.
    pub async fn start(dir: &Path, url: &str, n: usize, extra_args: &[&str]) -> Replicas {
        assert!(n >= 1, "at least one replica");
        let env = vec![("SEALRUN_DATABASE_URL".to_owned(), PathBuf::from(url))];
        let first_dir = dir.join("replica-0");
        let first = ServerProcess::start_with_env(
            &first_dir,
            crate::free_port(),
            &[],
            extra_args,
            env.clone(),
        )
        .await;
        let mut servers = vec![first];
        for i in 1..n {
            let data_dir = dir.join(format!("replica-{i}"));
            share_material(&first_dir, &data_dir);
            let server = ServerProcess::start_with_env(
                &data_dir,
                crate::free_port(),
                &[],
                extra_args,
                env.clone(),
            )
            .await;
            servers.push(server);
        }
        Replicas { servers }
    }

    /// Replica `i`.
    pub fn at(&self, i: usize) -> &ServerProcess {
        &self.servers[i]
    }

    /// The replicas' logs, each headed by its port: for a failing test.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("--- replica on port {} ---\n{}\n", s.port, s.log()))
            .collect()
    }

    /// Replica `i`, to kill or restart.
    pub fn at_mut(&mut self, i: usize) -> &mut ServerProcess {
        &mut self.servers[i]
    }

    /// A load balancer in front of every replica that hands each new
    /// connection to the first replica in `order` (indexes into
    /// [`Replicas::servers`]) that accepts it: a client of it stays on
    /// `order[0]` until that replica dies, then moves on.
    pub async fn balancer(&self, order: &[usize]) -> Balancer {
        let first = &self.servers[order[0]];
        let backends = order
            .iter()
            .map(|&i| SocketAddr::from(([127, 0, 0, 1], self.servers[i].port)))
            .collect();
        Balancer::start(
            backends,
            first.ca_cert.clone(),
            first.admin_token.clone(),
            self.servers[0].data_dir.clone(),
        )
        .await
    }
}

/// Copies what a replica shares with the first one: its TLS material
/// (`tls/`, so clients pinning one CA reach any replica) and the admin
/// token file the kit reads.
fn share_material(from: &Path, to: &Path) {
    let tls = to.join("tls");
    std::fs::create_dir_all(&tls).expect("the replica's tls directory");
    for entry in std::fs::read_dir(from.join("tls")).expect("the first replica's tls directory") {
        let entry = entry.expect("a tls file");
        std::fs::copy(entry.path(), tls.join(entry.file_name())).expect("a copy of a tls file");
    }
    std::fs::copy(from.join("admin.token"), to.join("admin.token")).expect("the admin token");
}

/// A TCP load balancer on `127.0.0.1`: each accepted connection goes to the
/// first backend, in its order, that accepts a connection (a killed replica
/// refuses at once), and bytes are copied both ways until either side
/// closes. Dropping it closes every connection through it.
#[derive(Debug)]
pub struct Balancer {
    /// `https://localhost:<port>` (the replicas' certificate names
    /// `localhost`).
    pub url: String,
    /// The replicas' CA.
    pub ca_cert: PathBuf,
    /// The org's first admin token.
    pub admin_token: String,
    /// An HTTPS client pinned to [`Balancer::ca_cert`].
    pub http: reqwest::Client,
    /// The first replica's data directory (`HOME` of its CLIs).
    pub data_dir: PathBuf,
    routed: Arc<Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(
        backends: Vec<SocketAddr>,
        ca_cert: PathBuf,
        admin_token: String,
        data_dir: PathBuf,
    ) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the balancer");
        let port = listener
            .local_addr()
            .expect("the balancer's address")
            .port();
        let routed = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(balance(listener, backends, Arc::clone(&routed)));
        Balancer {
            url: format!("https://localhost:{port}"),
            http: https_client(&ca_cert),
            ca_cert,
            admin_token,
            data_dir,
            routed,
            task,
        }
    }

    /// The replica ports connections went to, in the order they came.
    pub fn routed(&self) -> Vec<u16> {
        self.routed
            .lock()
            .expect("the routing record")
            .iter()
            .map(SocketAddr::port)
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

crate::server::control_plane!(Balancer);

/// The accept loop; its connections live in a `JoinSet` it owns, so
/// aborting it closes them all.
async fn balance(
    listener: TcpListener,
    backends: Vec<SocketAddr>,
    routed: Arc<Mutex<Vec<SocketAddr>>>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let backends = backends.clone();
                let routed = Arc::clone(&routed);
                connections.spawn(async move {
                    if let Some((backend, addr)) = first_accepting(&backends).await {
                        routed.lock().expect("the routing record").push(addr);
                        pass_through(client, backend).await;
                    }
                    // No backend accepts: dropping the client's connection
                    // says so, as a load balancer with none up does.
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The first backend that accepts a connection within a second.
async fn first_accepting(backends: &[SocketAddr]) -> Option<(TcpStream, SocketAddr)> {
    for &addr in backends {
        let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr));
        if let Ok(Ok(stream)) = connect.await {
            return Some((stream, addr));
        }
    }
    None
}

/// Copies both ways until either side closes or breaks; then both close.
async fn pass_through(mut client: TcpStream, mut backend: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}
