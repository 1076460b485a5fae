//! Which client connections the server keeps, and for how long.
//!
//! Every accepted connection is registered here before anything is read
//! from it, under two caps (in total, and per client address) sized to the
//! process's open-file limit minus a reserve for the database
//! ([`FD_RESERVE`]). A connection is *idle* while no request of its is in
//! flight: from its TCP accept, through the TLS handshake and the request
//! headers, and between keep-alive requests. It is *busy* from the moment
//! its request's headers are complete until its response (however long it
//! streams: followed logs, long polls, run input) has been sent.
//!
//! When a new connection would exceed a cap, the connection that has been
//! idle longest (of that address, then of all) is closed to make room: idle
//! and slow clients (a handshake never finished, headers trickling in, a
//! keep-alive connection left open) cannot keep a client that sends a
//! request from getting in, however many they open. Only when every
//! connection is busy is the newcomer refused: answered `503` with
//! `Retry-After` (a small pool of such answers), or closed at once when that
//! pool is full too, so refusing never costs a descriptor the database needs.
//!
//! Timeouts bound each phase besides: the TLS handshake, the request
//! headers (which is also the keep-alive idle limit, see [`serve`]), and a
//! request's body ([`body_deadline`]), except run input, which streams for
//! as long as its run lasts.

use crate::config::ConnectionLimits;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::accept::Accept;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::task::AtomicWaker;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Open files the connection caps leave to everything else: the database
/// (its writer, syncer and checkpointer, up to
/// [`MAX_READERS`](sealrun_control::MAX_READERS) reader connections of two
/// descriptors each), the listeners, outgoing Slack requests, the runtime
/// and the log.
pub(crate) const FD_RESERVE: u64 = 64 + 3 * sealrun_control::MAX_READERS as u64;

/// The routes whose request body is a stream that may pause for as long as
/// its run lasts (a submitter's input, slowed by the command reading it or
/// by the pipe feeding it): their body is bounded by the run's end, not by
/// [`ConnectionLimits::body_timeout`]. Route templates, as routed.
const STREAMED_BODIES: [&str; 1] = ["/v1/runs/{id}/stdin"];

/// The registry of one listener's connections.
#[derive(Debug)]
pub(crate) struct Registry {
    max_connections: usize,
    max_per_client: usize,
    max_refusing: usize,
    retry_after: Duration,
    state: Mutex<Table>,
    /// Connections closed to make room for a new one.
    evicted: AtomicU64,
    /// Connections answered `503` or closed at once.
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    /// Idle connections, oldest first: `(idle since, id)`.
    idle: BTreeSet<(Instant, u64)>,
    clients: HashMap<IpAddr, Client>,
    /// Connections being answered `503`.
    refusing: usize,
}

#[derive(Debug, Default)]
struct Client {
    open: usize,
    idle: BTreeSet<(Instant, u64)>,
}

#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    /// Requests in flight; 0: idle since `idle_since`.
    busy: usize,
    idle_since: Instant,
    close: Arc<Closer>,
}

/// How one connection is told to close (its reads fail from then on).
#[derive(Debug, Default)]
struct Closer {
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl Closer {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// What a listener's connections look like now (for `/metrics`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Snapshot {
    /// Connections open and counted against the caps.
    pub(crate) open: u64,
    /// Of those, idle ones.
    pub(crate) idle: u64,
    /// The total cap in force.
    pub(crate) max: u64,
    /// Connections closed to make room, since start.
    pub(crate) evicted: u64,
    /// Connections refused (answered `503`, or closed), since start.
    pub(crate) refused: u64,
}

enum Admitted {
    /// Counted against the caps, served.
    Yes(Arc<Slot>),
    /// Over the caps with every connection busy: answered `503`.
    Refused(Arc<Refusal>),
}

impl Registry {
    /// A registry for at most `max_connections` connections (already fitted
    /// to the descriptors available), `limits.max_per_client` of them from
    /// one address.
    pub(crate) fn new(max_connections: usize, limits: &ConnectionLimits) -> Arc<Registry> {
        Arc::new(Registry {
            max_connections,
            max_per_client: limits.max_per_client.max(1),
            max_refusing: refusal_pool(max_connections),
            retry_after: limits.retry_after,
            state: Mutex::new(Table::default()),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The connections now, for monitoring.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let (open, idle) = self
            .state
            .lock()
            .map(|s| (s.conns.len() as u64, s.idle.len() as u64))
            .unwrap_or_default();
        Snapshot {
            open,
            idle,
            max: self.max_connections as u64,
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Registers a connection from `ip`, closing the longest-idle one if a
    /// cap is reached; `None`: refuse it without a word.
    fn admit(self: &Arc<Registry>, ip: IpAddr) -> Option<Admitted> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        let now = Instant::now();
        let full_for_client = state
            .clients
            .get(&ip)
            .is_some_and(|c| c.open >= self.max_per_client);
        let victim = if full_for_client {
            Some(state.clients.get(&ip).and_then(|c| c.idle.first().copied()))
        } else if state.conns.len() >= self.max_connections {
            Some(state.idle.first().copied())
        } else {
            None
        };
        let room = match victim {
            None => true,
            Some(Some((_, id))) => {
                state.evict(id);
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(None) => false,
        };
        if !room {
            self.refused.fetch_add(1, Ordering::Relaxed);
            if state.refusing >= self.max_refusing {
                return None;
            }
            state.refusing += 1;
            return Some(Admitted::Refused(Arc::new(Refusal {
                registry: Arc::clone(self),
            })));
        }
        state.next_id += 1;
        let id = state.next_id;
        let close = Arc::new(Closer::default());
        state.conns.insert(
            id,
            Conn {
                ip,
                busy: 0,
                idle_since: now,
                close: Arc::clone(&close),
            },
        );
        state.idle.insert((now, id));
        let client = state.clients.entry(ip).or_default();
        client.open += 1;
        client.idle.insert((now, id));
        Some(Admitted::Yes(Arc::new(Slot {
            registry: Arc::clone(self),
            id,
            close,
        })))
    }

    fn with_conn(&self, id: u64, f: impl FnOnce(&mut Table, u64)) {
        if let Ok(mut state) = self.state.lock() {
            if state.conns.contains_key(&id) {
                f(&mut state, id);
            }
        }
    }
}

impl Table {
    /// Forgets connection `id` and tells it to close.
    fn evict(&mut self, id: u64) {
        if let Some(conn) = self.forget(id) {
            conn.close.close();
        }
    }

    fn forget(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        self.idle.remove(&(conn.idle_since, id));
        if let Some(client) = self.clients.get_mut(&conn.ip) {
            client.open = client.open.saturating_sub(1);
            client.idle.remove(&(conn.idle_since, id));
            if client.open == 0 {
                self.clients.remove(&conn.ip);
            }
        }
        Some(conn)
    }

    fn begin(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.busy += 1;
        if conn.busy == 1 {
            let key = (conn.idle_since, id);
            let ip = conn.ip;
            self.idle.remove(&key);
            if let Some(client) = self.clients.get_mut(&ip) {
                client.idle.remove(&key);
            }
        }
    }

    fn end(&mut self, id: u64) {
        let now = Instant::now();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.busy = conn.busy.saturating_sub(1);
        if conn.busy == 0 {
            conn.idle_since = now;
            let ip = conn.ip;
            self.idle.insert((now, id));
            if let Some(client) = self.clients.get_mut(&ip) {
                client.idle.insert((now, id));
            }
        }
    }
}

/// How many connections may be answered `503` at once besides the cap: a
/// few, so a client told to retry hears why, without costing descriptors.
fn refusal_pool(max_connections: usize) -> usize {
    (max_connections / 16).clamp(4, 256)
}

/// How many connections a listener may hold with `fds` open files allowed
/// and `others` (other listeners' caps) taken: the cap asked for, fitted
/// into what the reserve and the refusal pool leave. `None`: no room at all.
pub(crate) fn fit(wanted: usize, fds: u64, others: usize) -> Option<usize> {
    let available = fds.saturating_sub(FD_RESERVE).saturating_sub(others as u64);
    let available = usize::try_from(available).unwrap_or(usize::MAX);
    // The cap plus its refusal pool must fit in what is available.
    let mut max = wanted.min(available);
    while max > 0 && max + refusal_pool(max) > available {
        max -= 1.max(max / 64);
    }
    (max >= 8).then_some(max)
}

/// One admitted connection's place in the registry; leaving it (the stream
/// and the service both dropped) frees it.
#[derive(Debug)]
struct Slot {
    registry: Arc<Registry>,
    id: u64,
    close: Arc<Closer>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut state) = self.registry.state.lock() {
            state.forget(self.id);
        }
    }
}

/// A place in the refusal pool, freed when the refused connection ends.
#[derive(Debug)]
struct Refusal {
    registry: Arc<Registry>,
}

impl Drop for Refusal {
    fn drop(&mut self) {
        if let Ok(mut state) = self.registry.state.lock() {
            state.refusing = state.refusing.saturating_sub(1);
        }
    }
}

/// A connection's stream: reads fail once it was closed to make room.
#[derive(Debug)]
pub(crate) struct Guarded<S> {
    inner: S,
    close: Option<Arc<Closer>>,
    /// Keep the connection's place while the stream lives.
    _slot: Option<Arc<Slot>>,
    _refusal: Option<Arc<Refusal>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(close) = &self.close {
            close.waker.register(cx.waker());
            if close.closed.load(Ordering::SeqCst) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed to make room for another connection",
                )));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The acceptor of a listener: admission, then `inner` (TLS, or nothing).
#[derive(Clone, Debug)]
pub(crate) struct Admission<T> {
    registry: Arc<Registry>,
    inner: T,
}

impl<T> Admission<T> {
    pub(crate) fn new(registry: Arc<Registry>, inner: T) -> Admission<T> {
        Admission { registry, inner }
    }
}

impl<T, S> Accept<TcpStream, S> for Admission<T>
where
    T: Accept<Guarded<TcpStream>, (), Service = ()> + Clone + Send + Sync + 'static,
    T::Future: Send + 'static,
    T::Stream: Send + 'static,
    S: Send + 'static,
{
    type Stream = T::Stream;
    type Service = Tracked<S>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let registry = Arc::clone(&self.registry);
        let inner = self.inner.clone();
        Box::pin(async move {
            // Answers are small and latency-bound; Nagle plus delayed ACKs
            // would add milliseconds to each of them.
            stream.set_nodelay(true)?;
            let ip = stream.peer_addr()?.ip();
            let guarded = |close, slot, refusal| Guarded {
                inner: stream,
                close,
                _slot: slot,
                _refusal: refusal,
            };
            let (guarded, mode) = match registry.admit(ip) {
                Some(Admitted::Yes(slot)) => (
                    guarded(Some(Arc::clone(&slot.close)), Some(Arc::clone(&slot)), None),
                    Mode::Serve(slot),
                ),
                Some(Admitted::Refused(refusal)) => (
                    guarded(None, None, Some(refusal)),
                    Mode::Refuse(registry.retry_after),
                ),
                None => {
                    return Err(io::Error::other(
                        "at the connection limit with every connection busy",
                    ));
                }
            };
            let (stream, ()) = inner.accept(guarded, ()).await?;
            Ok((
                stream,
                Tracked {
                    inner: service,
                    mode,
                },
            ))
        })
    }
}

#[derive(Clone, Debug)]
enum Mode {
    Serve(Arc<Slot>),
    Refuse(Duration),
}

/// A connection's service: marks the connection busy while a request is in
/// flight, or answers `503` on a refused one.
#[derive(Clone, Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    mode: Mode,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for Tracked<S>
where
    S: tower_service::Service<axum::http::Request<B>, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        match &self.mode {
            Mode::Refuse(retry_after) => {
                let answer = busy_answer(*retry_after);
                Box::pin(std::future::ready(Ok(answer)))
            }
            Mode::Serve(slot) => {
                let busy = Busy::begin(Arc::clone(slot));
                let future = self.inner.call(req);
                Box::pin(async move {
                    let response = future.await?;
                    // Busy until the whole body is sent (or dropped).
                    Ok(response.map(|body| {
                        Body::new(Finishing {
                            inner: body,
                            _busy: busy,
                        })
                    }))
                })
            }
        }
    }
}

/// The `503` of a refused connection, which is then closed.
fn busy_answer(retry_after: Duration) -> Response {
    let secs = retry_after.as_secs().max(1);
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the server is at its connection limit; retry in {secs} s"),
    )
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request in flight on a connection.
#[derive(Debug)]
struct Busy(Arc<Slot>);

impl Busy {
    fn begin(slot: Arc<Slot>) -> Busy {
        slot.registry.with_conn(slot.id, Table::begin);
        Busy(slot)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.registry.with_conn(self.0.id, Table::end);
    }
}

/// A response body that keeps its connection busy until it is done.
struct Finishing {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware (after routing): a request body must arrive whole within
/// `body_timeout` of its headers, except on [`STREAMED_BODIES`]; one that
/// does not is answered `408` and its connection closed.
pub(crate) async fn body_deadline(
    State(limits): State<ConnectionLimits>,
    req: Request,
    next: Next,
) -> Response {
    let streamed = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| STREAMED_BODIES.contains(&p.as_str()));
    if streamed || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let timeout = limits.body_timeout;
    let sleep = Box::pin(tokio::time::sleep(timeout));
    let flag = Arc::clone(&expired);
    let req = req.map(|body| {
        Body::new(Deadline {
            inner: body,
            sleep: Some(sleep),
            expired: flag,
        })
    });
    let response = next.run(req).await;
    if !expired.load(Ordering::SeqCst) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} s",
            timeout.as_secs_f64()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passes.
struct Deadline {
    inner: Body,
    /// `None` once the body ended (the deadline no longer matters).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(sleep) = &mut self.sleep {
            if sleep.as_mut().poll(cx).is_ready() {
                self.sleep = None;
                self.expired.store(true, Ordering::SeqCst);
                return Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))));
            }
        }
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.sleep = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn registry(max: usize, per_client: usize) -> Arc<Registry> {
        Registry::new(
            max,
            &ConnectionLimits {
                max_per_client: per_client,
                ..ConnectionLimits::default()
            },
        )
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn slot(a: Option<Admitted>) -> Arc<Slot> {
        match a {
            Some(Admitted::Yes(slot)) => slot,
            _ => panic!("not admitted"),
        }
    }

    #[test]
    fn a_newcomer_closes_the_longest_idle_connection_when_full() {
        let r = registry(2, 10);
        let first = slot(r.admit(ip(1)));
        let second = slot(r.admit(ip(2)));
        let _third = slot(r.admit(ip(3)));
        assert!(first.close.closed.load(Ordering::SeqCst));
        // Positive control: the younger one stays.
        assert!(!second.close.closed.load(Ordering::SeqCst));
        let s = r.snapshot();
        assert_eq!((s.open, s.evicted), (2, 1));
    }

    #[test]
    fn busy_connections_are_never_closed_to_make_room() {
        let r = registry(2, 10);
        let a = slot(r.admit(ip(1)));
        let b = slot(r.admit(ip(2)));
        let _busy_a = Busy::begin(Arc::clone(&a));
        let _busy_b = Busy::begin(Arc::clone(&b));
        assert!(matches!(r.admit(ip(3)), Some(Admitted::Refused(_))));
        assert!(!a.close.closed.load(Ordering::SeqCst));
        assert_eq!(r.snapshot().refused, 1);
    }

    #[test]
    fn a_connection_that_finished_its_request_is_idle_again() {
        let r = registry(2, 10);
        let a = slot(r.admit(ip(1)));
        let b = slot(r.admit(ip(2)));
        drop(Busy::begin(Arc::clone(&a)));
        // `a` finished its request after `b` was opened: `b` is older idle.
        let _c = slot(r.admit(ip(3)));
        assert!(b.close.closed.load(Ordering::SeqCst));
        assert!(!a.close.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn one_address_gives_up_its_own_idle_connections_first() {
        let r = registry(10, 2);
        let other = slot(r.admit(ip(9)));
        let a1 = slot(r.admit(ip(1)));
        let _a2 = slot(r.admit(ip(1)));
        let _a3 = slot(r.admit(ip(1)));
        assert!(a1.close.closed.load(Ordering::SeqCst));
        assert!(!other.close.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn refusals_beyond_their_pool_are_closed_without_an_answer() {
        let r = registry(8, 100);
        let held: Vec<_> = (0..8)
            .map(|i| {
                let s = slot(r.admit(ip(i)));
                Busy::begin(s)
            })
            .collect();
        let refused: Vec<_> = (0..refusal_pool(8)).map(|_| r.admit(ip(50))).collect();
        assert!(
            refused
                .iter()
                .all(|a| matches!(a, Some(Admitted::Refused(_))))
        );
        assert!(r.admit(ip(51)).is_none());
        drop(refused);
        assert!(matches!(r.admit(ip(52)), Some(Admitted::Refused(_))));
        drop(held);
    }

    #[test]
    fn a_closed_slot_leaves_the_registry() {
        let r = registry(4, 4);
        let a = slot(r.admit(ip(1)));
        assert_eq!(r.snapshot().open, 1);
        drop(a);
        assert_eq!(r.snapshot().open, 0);
    }

    #[test]
    fn the_cap_fits_what_the_reserve_leaves() {
        // 256 descriptors: the reserve and the refusal pool come off.
        let max = fit(10_000, 256, 0).unwrap();
        assert!(max + refusal_pool(max) <= (256 - FD_RESERVE) as usize);
        assert!(max > 100, "{max}");
        // Positive control: a large limit leaves the cap asked for.
        assert_eq!(fit(4096, 1 << 20, 0), Some(4096));
        assert_eq!(fit(4096, FD_RESERVE + 4, 0), None);
    }
}
