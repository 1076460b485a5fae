//! The agent's side of the agent protocol (see `sealrun_wire::agent`): one HTTPS
//! client, pinned to the control plane's CA when one is given (the rule of
//! [`crate::https`], which the CLI follows too).
//!
//! Every call is a single attempt; [`CallError::is_retryable`] tells callers which
//! failures to retry (with [`crate::backoff`]): transport errors, `5xx`, `408` and
//! `429`. Every other `4xx` is final: retrying a refusal cannot make it succeed.

use crate::https;
use reqwest::{StatusCode, Url};
use sealrun_wire::agent::{
    AgentSettings, Assignment, AuditLinks, AuditLinksRequest, ChallengeRequest, Challenges,
    ConnectRequest, FinishRequest, Heartbeat, HeartbeatAck, PollRequest, RegisterRequest,
    Registered,
};
use sealrun_wire::log::{LogChunk, LogUploadAck};
use sealrun_wire::{ErrorBody, PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// Time allowed for any call but a poll (which the server holds open).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack added to the server's poll hold time before the client gives up.
const POLL_SLACK: Duration = Duration::from_secs(15);

/// A failed call to the control plane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No answer: connection refused or reset, TLS failure, timeout.
    #[error("cannot reach the control plane: {0}")]
    Transport(String),
    /// An answer with an error status.
    #[error("control plane answered {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The `error` field of the body, or the body itself.
        message: String,
    },
    /// A success status with a body that is not what the protocol says.
    #[error("unexpected answer from the control plane: {0}")]
    Protocol(String),
}

impl CallError {
    /// Whether the same call may succeed later: transport errors, `5xx`, `408`,
    /// `429`.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            CallError::Protocol(_) => false,
        }
    }

    /// Whether the control plane says the run is no longer this agent's
    /// (`404`/`409`): its lease lapsed, or it never was.
    pub fn is_run_gone(&self) -> bool {
        matches!(
            self,
            CallError::Status {
                status: 404 | 409,
                ..
            }
        )
    }

    /// The HTTP status, if the control plane answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for CallError {
    fn from(e: reqwest::Error) -> Self {
        // `reqwest::Error`'s Display names the URL (no credentials in it) and the
        // cause chain is where the useful part (connection refused, TLS) is.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        CallError::Transport(message)
    }
}

/// An HTTPS client for the agent protocol.
pub struct ControlPlane {
    http: reqwest::Client,
    base: Url,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is not an `https://` URL.
    #[error("server URL {0:?} must be an https:// URL")]
    BadUrl(String),
    /// The CA file could not be read or holds no certificate.
    #[error("CA certificate {path}: {message}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The TLS stack refused the configuration.
    #[error("cannot build the HTTPS client: {0}")]
    Tls(String),
}

impl From<https::CaError> for ClientError {
    fn from(e: https::CaError) -> Self {
        ClientError::Ca {
            path: e.path,
            message: e.message,
        }
    }
}

impl ControlPlane {
    /// A client for `server_url`. With `ca_cert`, the client trusts that CA and
    /// nothing else (pinning); without it, the system's CA bundle
    /// (`SSL_CERT_FILE`, or the usual distribution paths): see [`crate::https`].
    pub fn new(server_url: &str, ca_cert: Option<&Path>) -> Result<ControlPlane, ClientError> {
        let mut base = Url::parse(server_url)
            .ok()
            .filter(|u| u.scheme() == "https" && u.host().is_some())
            .ok_or_else(|| ClientError::BadUrl(server_url.to_owned()))?;
        // Join paths below the base even when it is given without a trailing slash.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            PROTOCOL_VERSION_HEADER,
            reqwest::header::HeaderValue::from(PROTOCOL_VERSION),
        );
        let builder = https::client_builder(ca_cert)?
            .tcp_keepalive(Duration::from_secs(30))
            // Under the control plane's keep-alive idle limit (20 s), so an
            // idle connection is dropped here before the server closes it,
            // never reused just as the server's close is on its way.
            .pool_idle_timeout(Duration::from_secs(15))
            .user_agent(concat!("sealrun-agent/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers);
        let http = builder
            .build()
            .map_err(|e| ClientError::Tls(CallError::from(e).to_string()))?;
        Ok(ControlPlane {
            http,
            base,
            token: None,
        })
    }

    /// The same client, authenticating every call with the agent's token.
    pub fn with_token(mut self, token: Zeroizing<String>) -> ControlPlane {
        self.token = Some(token);
        self
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // Each segment is percent-encoded, so an odd run id cannot change the path.
            path.pop_if_empty().extend(segments);
        }
        // (`new` accepts only https URLs with a host, which always have segments.)
        url
    }

    async fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        path: &[&str],
        bearer: Option<&str>,
        body: &Req,
        timeout: Duration,
    ) -> Result<Option<Resp>, CallError> {
        let request = self.http.post(self.url(path)).timeout(timeout).json(body);
        self.send(path, bearer, request).await
    }

    /// Authenticates and sends `request`; `None` for `204 No Content`.
    async fn send<Resp: DeserializeOwned>(
        &self,
        path: &[&str],
        bearer: Option<&str>,
        mut request: reqwest::RequestBuilder,
    ) -> Result<Option<Resp>, CallError> {
        if let Some(token) = bearer.or(self.token.as_deref().map(String::as_str)) {
            // bearer_auth marks the header sensitive, which keeps it out of Debug output.
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(status_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CallError::Protocol(format!("{}: {e}", path.join("/"))))
    }

    async fn call_expecting<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        path: &[&str],
        bearer: Option<&str>,
        body: &Req,
    ) -> Result<Resp, CallError> {
        self.call(path, bearer, body, CALL_TIMEOUT)
            .await?
            .ok_or_else(|| CallError::Protocol(format!("{}: empty answer", path.join("/"))))
    }

    /// `POST /v1/agent/register` with an enrollment token.
    pub async fn register(
        &self,
        enrollment_token: &str,
        request: &RegisterRequest,
    ) -> Result<Registered, CallError> {
        self.call_expecting(
            &["v1", "agent", "register"],
            Some(enrollment_token),
            request,
        )
        .await
    }

    /// `POST /v1/agent/challenge`: challenges to prove possession of the
    /// targets' private keys with, on connect.
    pub async fn challenge(&self, request: &ChallengeRequest) -> Result<Challenges, CallError> {
        self.call_expecting(&["v1", "agent", "challenge"], None, request)
            .await
    }

    /// `POST /v1/agent/audit`: links of the org's audit chain, to witness.
    pub async fn audit_links(&self, request: &AuditLinksRequest) -> Result<AuditLinks, CallError> {
        self.call_expecting(&["v1", "agent", "audit"], None, request)
            .await
    }

    /// `POST /v1/agent/connect`.
    pub async fn connect(&self, request: &ConnectRequest) -> Result<AgentSettings, CallError> {
        self.call_expecting(&["v1", "agent", "connect"], None, request)
            .await
    }

    /// `POST /v1/agent/poll`: a run, or `None` when the server's hold time
    /// passed. After an error, ask again with the same `poll_id`: a run the
    /// control plane handed out in that poll is handed out again.
    pub async fn poll(
        &self,
        hold: Duration,
        poll_id: &str,
    ) -> Result<Option<Assignment>, CallError> {
        let request = PollRequest {
            poll_id: Some(poll_id.to_owned()),
        };
        self.call(&["v1", "agent", "poll"], None, &request, hold + POLL_SLACK)
            .await
    }

    /// `POST /v1/agent/heartbeat`.
    pub async fn heartbeat(&self, request: &Heartbeat) -> Result<HeartbeatAck, CallError> {
        Ok(self
            .call(&["v1", "agent", "heartbeat"], None, request, CALL_TIMEOUT)
            .await?
            .unwrap_or_default())
    }

    /// `POST /v1/agent/runs/{id}/logs`.
    pub async fn upload_logs(
        &self,
        run_id: &str,
        chunks: &[LogChunk],
    ) -> Result<LogUploadAck, CallError> {
        let path = ["v1", "agent", "runs", run_id, "logs"];
        let request = self
            .http
            .post(self.url(&path))
            .timeout(CALL_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(encode_upload(chunks));
        self.send(&path, None, request)
            .await?
            .ok_or_else(|| CallError::Protocol(format!("{}: empty answer", path.join("/"))))
    }

    /// `GET /v1/agent/runs/{id}/stdin`: the run's input, streamed as the
    /// submitter sends it. No overall timeout (input may take as long as the
    /// run); TCP keep-alive notices a dead peer. A body that ends without its
    /// final chunk yields an error: the input broke off.
    pub async fn stdin(
        &self,
        run_id: &str,
    ) -> Result<impl futures_util::Stream<Item = Result<bytes::Bytes, CallError>> + use<>, CallError>
    {
        let path = ["v1", "agent", "runs", run_id, "stdin"];
        let mut request = self.http.get(self.url(&path));
        if let Some(token) = self.token.as_deref() {
            request = request.bearer_auth(token.as_str());
        }
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await?;
            return Err(status_error(status, &bytes));
        }
        Ok(futures_util::StreamExt::map(response.bytes_stream(), |r| {
            r.map_err(CallError::from)
        }))
    }

    /// `POST /v1/agent/runs/{id}/finish`.
    pub async fn finish(&self, run_id: &str, request: &FinishRequest) -> Result<(), CallError> {
        let path = ["v1", "agent", "runs", run_id, "finish"];
        self.call::<_, serde_json::Value>(&path, None, request, CALL_TIMEOUT)
            .await
            .map(drop)
    }

    /// `POST /v1/agent/deregister`.
    pub async fn deregister(&self) -> Result<(), CallError> {
        self.call::<_, serde_json::Value>(
            &["v1", "agent", "deregister"],
            None,
            &serde_json::json!({}),
            CALL_TIMEOUT,
        )
        .await
        .map(drop)
    }
}

/// The error of a call answered `status` with `body` (`{"error": ...}`, or
/// the start of whatever else it was).
fn status_error(status: StatusCode, body: &[u8]) -> CallError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(500).collect());
    CallError::Status {
        status: status.as_u16(),
        message,
    }
}

/// Encodes `chunks` exactly as `serde_json` encodes `LogUpload { chunks }`, but
/// writes the base64 straight into the body: base64 never needs JSON escaping,
/// and letting serde scan megabytes of it for escapes was a quarter of the
/// agent's CPU time when streaming.
pub fn encode_upload(chunks: &[LogChunk]) -> Vec<u8> {
    use base64::Engine as _;
    let data: usize = chunks.iter().map(|c| c.data.0.len()).sum();
    let mut body = String::with_capacity(16 + chunks.len() * 48 + data.div_ceil(3) * 4);
    body.push_str("{\"chunks\":[");
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"seq\":");
        body.push_str(&c.seq.to_string());
        body.push_str(",\"stream\":\"");
        body.push_str(c.stream.as_str());
        body.push_str("\",\"data\":\"");
        base64::engine::general_purpose::STANDARD.encode_string(&c.data.0, &mut body);
        body.push_str("\"}");
    }
    body.push_str("]}");
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn client(url: &str) -> ControlPlane {
        // Any readable PEM works for building; the system bundle may be absent.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, crate::https::TEST_CA).unwrap();
        ControlPlane::new(url, Some(&ca)).unwrap()
    }

    #[test]
    fn hand_encoded_uploads_are_exactly_what_serde_would_send() {
        use sealrun_wire::Base64Bytes;
        use sealrun_wire::log::{LogUpload, StreamKind};
        let chunks = vec![
            LogChunk {
                seq: 0,
                stream: StreamKind::Stdout,
                data: Base64Bytes(b"hello \"world\"\n".to_vec()),
            },
            LogChunk {
                seq: 1,
                stream: StreamKind::Stderr,
                data: Base64Bytes(vec![0, 0xff, 0xfe]),
            },
            LogChunk {
                seq: 2,
                stream: StreamKind::System,
                data: Base64Bytes(vec![]),
            },
        ];
        let upload = LogUpload {
            chunks: chunks.clone(),
        };
        assert_eq!(encode_upload(&chunks), serde_json::to_vec(&upload).unwrap());
        assert_eq!(
            encode_upload(&[]),
            serde_json::to_vec(&LogUpload { chunks: vec![] }).unwrap()
        );
    }

    #[test]
    fn plain_http_urls_are_refused() {
        let err = ControlPlane::new("http://127.0.0.1:8443", None).unwrap_err();
        assert!(matches!(err, ClientError::BadUrl(_)));
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let err = ControlPlane::new(
            "https://127.0.0.1:8443",
            Some(Path::new("/nonexistent/ca.pem")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn paths_are_joined_below_the_base_url() {
        let c = client("https://cp.example:8443/sealrun");
        assert_eq!(
            c.url(&["v1", "agent", "poll"]).as_str(),
            "https://cp.example:8443/sealrun/v1/agent/poll"
        );
        let c = client("https://cp.example:8443");
        assert_eq!(
            c.url(&["v1", "agent", "poll"]).as_str(),
            "https://cp.example:8443/v1/agent/poll"
        );
    }

    #[test]
    fn a_run_id_cannot_add_path_segments() {
        let c = client("https://cp.example");
        let url = c.url(&["v1", "agent", "runs", "../../tokens", "logs"]);
        assert_eq!(url.path(), "/v1/agent/runs/..%2F..%2Ftokens/logs");
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let status = |s| CallError::Status {
            status: s,
            message: String::new(),
        };
        assert!(CallError::Transport("refused".into()).is_retryable());
        for s in [500, 502, 503, 408, 429] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 426] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(status(409).is_run_gone() && status(404).is_run_gone());
        assert!(!status(500).is_run_gone());
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let c =
            client("https://cp.example").with_token(Zeroizing::new("sr_agent_topsecret".into()));
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
