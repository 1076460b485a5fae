//! Starting, running and stopping a control plane.

use crate::config::ServerConfig;
use crate::db::{self, Db, now_ms};
use crate::error::Error;
use crate::org::{self, DB_FILE};
use crate::queue;
use crate::routes;
use crate::state::{AppState, Shared};
use crate::tls;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// A bound control plane, ready to [`run`](Server::run).
pub struct Server {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    ca_cert: Option<PathBuf>,
    state: AppState,
    stop: watch::Sender<bool>,
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
        let (db, tls) = tokio::task::spawn_blocking(move || prepare(&blocking))
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
        let (stop, shutdown) = watch::channel(false);
        let state = Arc::new(Shared {
            db,
            settings: config.settings,
            wakeups: Default::default(),
            watchers: Default::default(),
            metrics: Default::default(),
            failures: Default::default(),
            auth: Default::default(),
            slack: crate::slack::Slack::open(&config.data_dir)?,
            shutdown,
        });
        tracing::info!(%local_addr, data_dir = %config.data_dir.display(), "control plane bound");
        Ok(Server {
            listener,
            local_addr,
            tls: tls.config,
            ca_cert: tls.ca_cert,
            state,
            stop,
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
            stop,
            ..
        } = self;
        let handle = axum_server::Handle::new();
        let grace = state.settings.shutdown_grace;
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
            stopper.graceful_shutdown(Some(grace));
        });
        let sweeper = tokio::spawn(sweep_leases(Arc::clone(&state)));
        let app = routes::router(Arc::clone(&state));
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
        let closing = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || closing.db.close()).await;
        served.map_err(Error::Serve)
    }
}

/// The blocking part of [`Server::bind`].
fn prepare(config: &ServerConfig) -> Result<(Db, tls::Tls), Error> {
    org::ensure_data_dir(&config.data_dir)?;
    let path = config.data_dir.join(DB_FILE);
    {
        let mut conn = db::open_migrated(&path)?;
        org::bootstrap(
            &mut conn,
            &path,
            &config.org_name,
            config.admin_token_file.as_ref(),
        )?;
    }
    let tls = tls::load(&config.data_dir, &config.tls, &config.extra_hostnames)?;
    Ok((Db::open(&path, config.settings.durable_commits)?, tls))
}

/// Turns runs whose lease lapsed into `lost`, every `lease_sweep_interval`.
async fn sweep_leases(state: AppState) {
    let mut tick = tokio::time::interval(state.settings.lease_sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutting_down() => return,
        }
        match state
            .db
            .write(|conn| queue::expire_leases(conn, now_ms()))
            .await
        {
            Ok(lost) => {
                for run in &lost {
                    tracing::warn!(run = %run, "lease expired: run lost");
                    state.watchers.touch(run);
                }
            }
            Err(e) => tracing::error!(error = %e.message, "lease sweep failed"),
        }
    }
}
