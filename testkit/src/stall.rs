//! Clients that hold a connection open without finishing a request: the
//! idle and slow clients a server must not let stall it. Each [`Stalled`]
//! is a real TCP (and, past the handshake, TLS) connection to the server,
//! made with blocking sockets so that hundreds can be held from one thread.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How a [`Stalled`] client holds its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// A TCP connection that never sends a byte.
    Silent,
    /// Half a TLS ClientHello, then nothing.
    HalfHandshake,
    /// A finished TLS handshake, then nothing.
    Handshaken,
    /// A request's first header lines (no blank line), then nothing.
    HalfHeaders,
    /// A `POST` with its headers (`Content-Length: 1000`) and a few bytes
    /// of a form body, then nothing; to `path`.
    HalfBody(&'static str),
    /// One whole request (`GET /health`), then nothing: a keep-alive
    /// connection left idle (the answer is read by
    /// [`Stalled::closed_within`]).
    KeepAlive,
}

impl Stall {
    /// Every kind, for a mix (`HalfBody` to `/v1/runs`).
    pub const ALL: [Stall; 6] = [
        Stall::Silent,
        Stall::HalfHandshake,
        Stall::Handshaken,
        Stall::HalfHeaders,
        Stall::HalfBody("/v1/runs"),
        Stall::KeepAlive,
    ];
}

/// One stalled connection; dropping it closes it.
#[derive(Debug)]
pub struct Stalled {
    how: Stall,
    stream: Conn,
}

#[derive(Debug)]
enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stalled {
    /// Connects to `addr` (a server whose certificate `ca_cert` signed, for
    /// name `localhost`) and stalls as `how` says.
    pub fn open(addr: SocketAddr, ca_cert: &Path, how: Stall) -> io::Result<Stalled> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        let stream = match how {
            Stall::Silent => Conn::Tcp(tcp),
            Stall::HalfHandshake => {
                let mut tls = client(ca_cert)?;
                let mut hello = Vec::new();
                tls.write_tls(&mut hello)?;
                let mut tcp = tcp;
                tcp.write_all(&hello[..hello.len() / 2])?;
                Conn::Tcp(tcp)
            }
            Stall::Handshaken | Stall::HalfHeaders | Stall::HalfBody(_) | Stall::KeepAlive => {
                let mut tls = rustls::StreamOwned::new(client(ca_cert)?, tcp);
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                match how {
                    Stall::HalfHeaders => {
                        tls.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\n")?;
                    }
                    Stall::HalfBody(path) => {
                        let head = format!(
                            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nteam_id=T"
                        );
                        tls.write_all(head.as_bytes())?;
                    }
                    Stall::KeepAlive => {
                        tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
                    }
                    _ => {}
                }
                tls.flush()?;
                Conn::Tls(Box::new(tls))
            }
        };
        Ok(Stalled { how, stream })
    }

    /// How it stalls.
    pub fn how(&self) -> Stall {
        self.how
    }

    /// What the server sends until it closes the connection, if it closes
    /// it within `within`; `None` if it is still open then.
    pub fn closed_within(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut buf = [0u8; 4096];
            let read = match &mut self.stream {
                Conn::Tcp(tcp) => {
                    let _ = tcp.set_read_timeout(Some(left));
                    tcp.read(&mut buf)
                }
                Conn::Tls(tls) => {
                    let _ = tls.sock.set_read_timeout(Some(left));
                    tls.read(&mut buf)
                }
            };
            match read {
                Ok(0) => return Some(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Reset, or closed without TLS's close_notify: closed.
                Err(_) => return Some(got),
            }
        }
    }
}

/// A TLS client trusting `ca_cert` only, for `localhost`.
fn client(ca_cert: &Path) -> io::Result<rustls::ClientConnection> {
    let pem = std::fs::read(ca_cert)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?).map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
    rustls::ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)
}
