//! The HTTPS client every non-daemon subcommand uses, and the one-line errors
//! it turns failures into.

use crate::cli::ClientArgs;
use crate::profile::{self, Profiles};
use anyhow::{Context as _, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use sealrun_wire::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Connection {
    pub url: String,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
    /// The admin keys the profile used pinned for this URL (empty when the
    /// URL came from elsewhere).
    pub pinned_admins: Vec<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .field("token", &"***")
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl Connection {
    /// Flags, then env vars (clap merges the two), then the saved profile.
    pub fn resolve(args: &ClientArgs) -> Result<Connection> {
        Ok(Connection::resolve_with_profile(args)?.0)
    }

    /// As [`Connection::resolve`], with the name of the saved profile that
    /// gave at least one of the settings, if any did.
    pub fn resolve_with_profile(args: &ClientArgs) -> Result<(Connection, Option<String>)> {
        let name = args.profile.as_deref().unwrap_or(profile::DEFAULT);
        profile::check_name(name)?;
        let profiles = Profiles::load()?;
        let profile = profiles.get(name);
        if profile.is_none() && args.profile.is_some() {
            let saved = profiles.names();
            bail!(
                "no profile `{name}` saved{}: run `sealrun login --profile {name}`",
                if saved.is_empty() {
                    String::new()
                } else {
                    format!(" (saved: {})", saved.join(", "))
                }
            );
        }
        let used = profile.is_some_and(|p| {
            args.url.is_none()
                || args.token.is_none()
                || (args.ca_cert.is_none() && p.ca_cert.is_some())
        });
        let url = args
            .url
            .clone()
            .or_else(|| profile.map(|p| p.url.clone()))
            .ok_or_else(|| {
                anyhow!("no control plane configured: set SEALRUN_URL (or source dev.env, or run `sealrun login`)")
            })?;
        let token = args
            .token
            .clone()
            .or_else(|| profile.map(|p| p.token.clone()))
            .ok_or_else(|| anyhow!("no API token: set SEALRUN_TOKEN (or run `sealrun login`)"))?;
        let ca_cert = args
            .ca_cert
            .clone()
            .or_else(|| profile.and_then(|p| p.ca_cert.clone()));
        let url = url.trim_end_matches('/').to_owned();
        // A profile's pins are for its own control plane only.
        let pinned_admins = profile
            .filter(|p| p.url.trim_end_matches('/') == url)
            .map(|p| p.trusted_admins.clone())
            .unwrap_or_default();
        let conn = Connection {
            url,
            token,
            ca_cert,
            pinned_admins,
        };
        Ok((conn, used.then(|| name.to_owned())))
    }
}

/// A typed client of the control plane's API.
#[derive(Debug, Clone)]
pub struct Client {
    conn: Connection,
    http: reqwest::Client,
}

impl Client {
    pub fn new(conn: Connection) -> Result<Client> {
        if !conn.url.starts_with("https://") {
            bail!(
                "control plane URL must start with https:// (got {}): sealrun never sends tokens in clear text",
                conn.url
            );
        }
        // The agent's rule, so the CLI and the agent trust the same servers:
        // only the given CA (pinning), else the system's CA bundle.
        let http = sealrun_agent::https::client_builder(conn.ca_cert.as_deref())?
            // The product name tells the control plane a run comes from the
            // CLI (recorded as its `source`).
            .user_agent(format!(
                "{}/{}",
                sealrun_wire::run::CLI_PRODUCT,
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .context("cannot set up the HTTPS client")?;
        Ok(Client { conn, http })
    }

    pub fn from_args(args: &ClientArgs) -> Result<Client> {
        Client::new(Connection::resolve(args)?)
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `POST path` carrying an `Idempotency-Key`: sent again with the same
    /// key, the control plane answers what the first one did instead of
    /// acting twice.
    pub async fn post_once<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        key: &str,
    ) -> Result<T> {
        let req = self
            .http
            .post(format!("{}{}", self.conn.url, path))
            .bearer_auth(&self.conn.token)
            .header("Idempotency-Key", key)
            .json(body);
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let resp = check(resp).await?;
        self.decode(path, resp).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// A call whose answer body does not matter (204s).
    pub async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<()> {
        self.request(method, path, body).await.map(drop)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let resp = self.request(method, path, body).await?;
        self.decode(path, resp).await
    }

    /// `PUT path` with a streamed octet body (a run's input), decoding the
    /// JSON answer.
    pub async fn put_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        body: reqwest::Body,
    ) -> Result<T> {
        let req = self
            .http
            .put(format!("{}{}", self.conn.url, path))
            .bearer_auth(&self.conn.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let resp = check(resp).await?;
        self.decode(path, resp).await
    }

    async fn decode<T: DeserializeOwned>(&self, path: &str, resp: reqwest::Response) -> Result<T> {
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!("unexpected answer from the control plane for {path} (is the CLI the same version as the server?)")
        })
    }

    /// Sends a request and returns the response if it succeeded; any
    /// failure becomes a one-line error.
    pub async fn request<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.conn.url, path))
            .bearer_auth(&self.conn.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        check(resp).await
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        // reqwest's Display is terse; the source chain holds the reason
        // (connection refused, certificate unknown, ...). Keep it on one line.
        let mut reason = String::new();
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            reason = s.to_string();
            src = s.source();
        }
        let hint = if reason.contains("certificate") || reason.contains("UnknownIssuer") {
            " (is SEALRUN_CA_CERT the control plane's CA?)"
        } else {
            ""
        };
        Unreachable {
            line: format!(
                "cannot reach the control plane at {}: {reason}{hint}",
                self.conn.url
            ),
        }
        .into()
    }
}

/// The control plane could not be reached, or its answer did not arrive:
/// whether a request was acted on is unknown. Its `Display` is the one line
/// a user sees.
#[derive(Debug)]
pub struct Unreachable {
    line: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for Unreachable {}

/// The control plane answered a request with an error status. Its
/// `Display` is the one line a user sees.
#[derive(Debug)]
pub struct Refused {
    /// The HTTP status.
    pub status: StatusCode,
    line: String,
}

impl Refused {
    /// Whether asking again cannot help (the run does not exist, the token
    /// is refused or not allowed, the request is wrong): every 4xx but
    /// 408 and 429.
    pub fn is_permanent(&self) -> bool {
        self.status.is_client_error()
            && self.status != StatusCode::REQUEST_TIMEOUT
            && self.status != StatusCode::TOO_MANY_REQUESTS
    }

    /// Whether the request may have been acted on although it was refused
    /// or not confirmed (every 5xx: a 503 saying a change may or may not
    /// have been applied, a proxy's 502/504), or may succeed if sent again
    /// (408, 429). A request sent again after this needs an idempotency key.
    pub fn is_retryable(&self) -> bool {
        self.status.is_server_error()
            || self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for Refused {}

/// Turns a non-2xx answer into the server's own one-line message.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    // The server's message may quote what a user submitted: shown safely
    // wherever this error ends up printed.
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| crate::output::safe(&b.error).into_owned())
        .unwrap_or_else(|_| status.canonical_reason().unwrap_or("error").to_owned());
    let prefix = match status {
        StatusCode::UNAUTHORIZED => "the control plane refused the token",
        StatusCode::FORBIDDEN => "not allowed",
        StatusCode::NOT_FOUND => "not found",
        _ => "the control plane refused the request",
    };
    Err(Refused {
        status,
        line: format!("{prefix} ({}): {message}", status.as_u16()),
    }
    .into())
}
