//! Starting, running and stopping a control plane.

use crate::config::{ConnectionLimits, ServerConfig};
use crate::connections::{self, Admission, Registry};
use crate::error::Error;
use crate::metrics::MetricsToken;
use crate::routes;
use crate::state::AppState;
use crate::tls;
use axum::middleware;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use sealrun_control::{Control, OpenOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Connections the metrics address keeps (Prometheus scrapes one at a time).
const METRICS_CONNECTIONS: usize = 16;
/// The most the open-file limit is raised to.
const MAX_OPEN_FILES: u64 = 1 << 20;

/// A bound control plane, ready to [`run`](Server::run).
pub struct Server {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    metrics_listener: Option<(std::net::TcpListener, SocketAddr)>,
    tls: Arc<rustls::ServerConfig>,
    ca_cert: Option<PathBuf>,
    limits: ConnectionLimits,
    state: AppState,
    slack: crate::slack::SlackState,
    app: axum::Router,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("metrics_addr", &self.metrics_addr())
            .field("ca_cert", &self.ca_cert)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Raises the open-file limit to its hard limit, opens (creating and
    /// migrating) the database in `config.data_dir`, creates the first org
    /// on first start, loads or generates the certificate and binds the
    /// listening sockets. The connection caps are fitted to the open-file
    /// limit, less a reserve for the database; a limit that leaves no room
    /// for connections is refused here.
    pub async fn bind(config: ServerConfig) -> Result<Server, Error> {
        // Both providers may be compiled into the process (through other
        // crates); pin ring. Another caller having installed it is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fds = raise_open_file_limit();
        let metrics_token = match &config.metrics.token_file {
            Some(path) => Some(Arc::new(MetricsToken::read(path)?)),
            None => None,
        };
        let limits = config.connections.clone();
        let metrics_cap = if config.metrics.listen.is_some() {
            METRICS_CONNECTIONS
        } else {
            0
        };
        let api_cap = connections::fit(limits.max_connections, fds, metrics_cap).ok_or_else(|| {
            Error::Config(format!(
                "the open-file limit ({fds}) leaves no room for client connections beside the {} the database and the process keep in reserve: raise it (LimitNOFILE= in the systemd unit, ulimit -n)",
                connections::FD_RESERVE
            ))
        })?;
        if api_cap < limits.max_connections {
            tracing::warn!(
                open_file_limit = fds,
                max_connections = api_cap,
                asked = limits.max_connections,
                "the open-file limit lowers the connection cap (raise LimitNOFILE= to keep it)"
            );
        }
        let blocking = config.clone();
        let (control, tls) = tokio::task::spawn_blocking(move || prepare(blocking))
            .await
            .map_err(|e| Error::Serve(std::io::Error::other(e)))??;
        let (listener, local_addr) = bind_tcp(config.listen)?;
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(bind_tcp(addr)?),
            None => None,
        };
        let mut listeners = vec![("api", Registry::new(api_cap, &limits))];
        if metrics_listener.is_some() {
            listeners.push(("metrics", Registry::new(METRICS_CONNECTIONS, &limits)));
        }
        let state = AppState {
            control: Arc::new(control),
            metrics: Arc::default(),
            listeners: Arc::new(listeners),
            metrics_token,
            readiness: Arc::default(),
        };
        let slack = crate::slack::state(state.clone(), &config.slack_api_url)?;
        let app = routes::router(state.clone(), slack.clone())?.layer(
            middleware::from_fn_with_state(limits.clone(), connections::body_deadline),
        );
        tracing::info!(
            %local_addr,
            metrics_addr = ?metrics_listener.as_ref().map(|(_, a)| *a),
            data_dir = %config.data_dir.display(),
            open_file_limit = fds,
            max_connections = api_cap,
            "control plane bound"
        );
        Ok(Server {
            listener,
            local_addr,
            metrics_listener,
            tls: tls.config,
            ca_cert: tls.ca_cert,
            limits,
            state,
            slack,
            app,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics address actually bound, if one was asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
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
            metrics_listener,
            tls,
            limits,
            state,
            slack,
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
        let relaying = Arc::clone(&state.control);
        let relay = tokio::spawn(async move { relaying.relay_hints().await });
        let slack_tasks = slack.clone();
        crate::slack::start(slack);
        let metrics = metrics_listener.map(|(listener, _)| {
            let registry = Arc::clone(&state.listeners[1].1);
            let router = routes::metrics_router(state.clone());
            let handle = handle.clone();
            let limits = limits.clone();
            tokio::spawn(async move {
                let acceptor = Admission::new(registry, DefaultAcceptor::new());
                if let Err(e) = serve(listener, acceptor, &limits, handle, router).await {
                    tracing::error!(error = %e, "the metrics address stopped serving");
                }
            })
        });
        let tls = RustlsAcceptor::new(RustlsConfig::from_config(tls))
            .handshake_timeout(limits.tls_handshake_timeout);
        let acceptor = Admission::new(Arc::clone(&state.listeners[0].1), tls);
        let served = serve(listener, acceptor, &limits, handle, app).await;
        crate::slack::drain(&slack_tasks, grace).await;
        // Slack's work this replica still held goes to the next replica
        // (or this one restarted) at once, instead of when the hold lapses.
        if let Err(e) = state.control.release_slack_holds().await {
            tracing::warn!(error = %e, "cannot hand over Slack's outbox; another replica takes it over within 30 s");
        }
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        sweeper.abort();
        relay.abort();
        let closing = Arc::clone(&state.control);
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
        served.map_err(Error::Serve)
    }
}

/// Serves `app` on `listener` through `acceptor` until `handle` shuts down:
/// HTTP/1.1 only (the ALPN the certificate offers), with the header timeout
/// (hyper starts it when a connection waits for a request's first byte, so
/// it bounds slow headers and keep-alive idleness alike).
async fn serve<T>(
    listener: std::net::TcpListener,
    acceptor: Admission<T>,
    limits: &ConnectionLimits,
    handle: axum_server::Handle<SocketAddr>,
    app: axum::Router,
) -> std::io::Result<()>
where
    T: Accept<connections::Guarded<tokio::net::TcpStream>, (), Service = ()>
        + Clone
        + Send
        + Sync
        + 'static,
    T::Future: Send + 'static,
    T::Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // `http1_only` after `acceptor`, which forgets it: otherwise each
    // connection first waits, without a timeout, for bytes telling HTTP/1
    // from HTTP/2 apart, before the header timeout starts.
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .http1_only()
        .handle(handle);
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    server.serve(app.into_make_service()).await
}

/// Binds `addr` for the async runtime.
fn bind_tcp(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), Error> {
    let bind_err = |source| Error::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Raises this process's open-file limit to its hard limit (at most
/// [`MAX_OPEN_FILES`]): the default soft limit, 1024, is far below what a
/// server with thousands of clients needs; the hard limit is the
/// administrator's (`LimitNOFILE=`). Returns the limit in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    // A hard limit of "infinity" (some container runtimes) is more than any
    // cap needs: a million descriptors is plenty.
    let target = hard.min(MAX_OPEN_FILES);
    if soft >= target {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => {
            tracing::info!(from = soft, to = target, "open-file limit raised");
            target
        }
        Err(e) => {
            tracing::warn!(error = %e, limit = soft, "cannot raise the open-file limit");
            soft
        }
    }
}

/// The blocking part of [`Server::bind`].
fn prepare(config: ServerConfig) -> Result<(Control, tls::Tls), Error> {
    let control = Control::open(OpenOptions {
        data_dir: &config.data_dir,
        org_name: &config.org_name,
        admin_token_file: config.admin_token_file.as_deref(),
        settings: config.settings.clone(),
        database: config.database.clone(),
    })?;
    let tls = tls::load(&config.data_dir, &config.tls, &config.extra_hostnames)?;
    Ok((control, tls))
}
