//! Starting, running and stopping a control plane.

use crate::config::ServerConfig;
use crate::error::Error;
use crate::routes;
use crate::state::AppState;
use crate::tls;
use sealrun_control::{Control, OpenOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A bound control plane, ready to [`run`](Server::run).
pub struct Server {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    ca_cert: Option<PathBuf>,
    state: AppState,
    app: axum::Router,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("ca_cert", &self.ca_cert)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens (creating and migrating) the database in `config.data_dir`,
    /// creates the first org on first start, loads or generates the
    /// certificate and binds the listening socket.
    pub async fn bind(config: ServerConfig) -> Result<Server, Error> {
        // Both providers may be compiled into the process (through other
        // crates); pin ring. Another caller having installed it is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let blocking = config.clone();
        let (control, tls) = tokio::task::spawn_blocking(move || prepare(blocking))
            .await
            .map_err(|e| Error::Serve(std::io::Error::other(e)))??;
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let bind_err = |source| Error::Bind {
            addr: config.listen,
            source,
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let state = AppState {
            control: Arc::new(control),
            metrics: Arc::default(),
        };
        let app = routes::router(state.clone())?;
        tracing::info!(%local_addr, data_dir = %config.data_dir.display(), "control plane bound");
        Ok(Server {
            listener,
            local_addr,
            tls: tls.config,
            ca_cert: tls.ca_cert,
            state,
            app,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The CA certificate clients should pin, when the certificate is
    /// self-signed (`data_dir/tls/ca.pem`).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// Serves until `shutdown` resolves, then stops gracefully: long polls
    /// answer `204`, log streams end (clients resume with `after`), in-flight
    /// requests get `settings.shutdown_grace` to finish, queued database
    /// writes are committed and the WAL is checkpointed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Server {
            listener,
            tls,
            state,
            app,
            ..
        } = self;
        let handle = axum_server::Handle::new();
        let grace = state.settings().shutdown_grace;
        let stopper = handle.clone();
        let stopping = Arc::clone(&state.control);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            stopping.begin_shutdown();
            stopper.graceful_shutdown(Some(grace));
        });
        let sweeping = Arc::clone(&state.control);
        let sweeper = tokio::spawn(async move { sweeping.sweep_leases().await });
        crate::slack::resume_owed(state.clone())?;
        // TCP_NODELAY: answers are small and latency-bound; Nagle plus
        // delayed ACKs would add milliseconds to each of them.
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        )
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
        let served = match axum_server::from_tcp(listener) {
            Ok(server) => {
                server
                    .acceptor(acceptor)
                    .handle(handle)
                    .serve(app.into_make_service())
                    .await
            }
            Err(e) => Err(e),
        };
        sweeper.abort();
        let closing = Arc::clone(&state.control);
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
        served.map_err(Error::Serve)
    }
}

/// The blocking part of [`Server::bind`].
fn prepare(config: ServerConfig) -> Result<(Control, tls::Tls), Error> {
    let control = Control::open(OpenOptions {
        data_dir: &config.data_dir,
        org_name: &config.org_name,
        admin_token_file: config.admin_token_file.as_deref(),
        settings: config.settings.clone(),
    })?;
    let tls = tls::load(&config.data_dir, &config.tls, &config.extra_hostnames)?;
    Ok((control, tls))
}
