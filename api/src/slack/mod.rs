//! The Slack integration: `/sealrun` slash commands, verified with the
//! workspace's signing secret and run as the linked sealrun user.
//!
//! * [`verify`]: Slack's v0 request signatures and the replay window.
//! * [`command`]: what the user typed, parsed (words split by
//!   `sealrun_wire::shell`, the one shell-words rule).
//! * [`escape`]: what Slack shows, made inert.
//! * [`admin`]: the admin endpoints that link and unlink workspaces
//!   (signing secrets sealed at rest by the domain) and users.
//! * [`commands`]: the slash-command endpoint.
//! * [`notify`]: posting a run's result to the command's `response_url`.
//!
//! The adapter holds only what is HTTP: the client that posts to
//! `response_url`s and the throttle on audited signature failures. Links,
//! sealed signing secrets, permissions and runs are the domain's
//! (`sealrun_control`); the adapter depends on no route module and on no
//! other feature's state.

pub(crate) mod admin;
pub(crate) mod command;
pub(crate) mod commands;
pub(crate) mod escape;
pub(crate) mod notify;
pub(crate) mod verify;

use crate::error::Error;
use crate::state::AppState;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post, put};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The routes of the integration, with their own state.
pub(crate) fn router(app: AppState) -> Result<Router<AppState>, Error> {
    let state = SlackState {
        app,
        slack: Arc::new(Slack::new()?),
    };
    Ok(Router::new()
        .route("/v1/integrations/slack/commands", post(commands::handle))
        .route(
            "/v1/integrations/slack/workspaces",
            get(admin::list_workspaces),
        )
        .route(
            "/v1/integrations/slack/workspaces/{team_id}",
            put(admin::put_workspace).delete(admin::delete_workspace),
        )
        .route("/v1/integrations/slack/users", get(admin::list_users))
        .route(
            "/v1/integrations/slack/users/{team_id}/{user_id}",
            put(admin::put_user).delete(admin::delete_user),
        )
        .with_state(state))
}

/// Resumes posting the run results a previous process owed to Slack; called
/// once the server runs (not when it is bound: a server bound and dropped
/// without running must not leave tasks holding the control plane).
pub(crate) fn resume_owed(app: AppState) -> Result<(), Error> {
    let state = SlackState {
        app,
        slack: Arc::new(Slack::new()?),
    };
    tokio::spawn(notify::resume(state));
    Ok(())
}

/// The state of the integration's handlers.
#[derive(Clone, Debug)]
pub(crate) struct SlackState {
    app: AppState,
    slack: Arc<Slack>,
}

impl FromRef<SlackState> for AppState {
    fn from_ref(state: &SlackState) -> AppState {
        state.app.clone()
    }
}

/// What the integration holds of its own.
pub(crate) struct Slack {
    /// Posts to `response_url`s.
    http: reqwest::Client,
    /// Last audited signature failure per team (at most one a second).
    failures: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack").finish_non_exhaustive()
    }
}

/// How long one POST to a `response_url` may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

impl Slack {
    /// Sets up the HTTP client.
    fn new() -> Result<Slack, Error> {
        // Mozilla's roots, compiled in: the server image may have no CA
        // store, and `response_url`s are on Slack's public endpoints.
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(POST_TIMEOUT)
            .user_agent(concat!("sealrun/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Tls(format!("HTTP client for Slack: {e}")))?;
        Ok(Slack {
            http,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a signature failure for `team_id` should be audited now (at
    /// most once a second per team, so a flood cannot fill the trail).
    fn admit_failure(&self, team_id: &str) -> bool {
        let Ok(mut last) = self.failures.lock() else {
            return true;
        };
        if last.len() > 10_000 {
            last.clear();
        }
        let now = Instant::now();
        match last.get(team_id) {
            Some(at) if now.duration_since(*at) < Duration::from_secs(1) => false,
            _ => {
                last.insert(team_id.to_owned(), now);
                true
            }
        }
    }
}
