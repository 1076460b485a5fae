//! The Slack integration: `/sealrun` slash commands and approval requests
//! with Approve / Reject buttons, verified with the workspace's signing
//! secret and acted on as the linked sealrun user.
//!
//! * [`verify`]: Slack's v0 request signatures and the replay window.
//! * [`auth`]: the one check every request from Slack passes first.
//! * [`command`]: what the user typed, parsed (words split by
//!   `sealrun_wire::shell`, the one shell-words rule).
//! * [`escape`]: what Slack shows, made inert.
//! * [`admin`]: the admin endpoints that link and unlink workspaces
//!   (signing secrets sealed at rest by the domain), users and the
//!   approvers' channel (its bot token sealed too).
//! * [`commands`]: the slash-command endpoint.
//! * [`notify`]: posting a run's result to the command's `response_url`.
//! * [`web`]: calls to Slack's Web API as the app's bot.
//! * [`approvals`]: the approval messages: posted to the approvers'
//!   channel, updated as decisions come in, the requester told.
//! * [`interact`]: the interactivity endpoint: button clicks and the
//!   reject dialog.
//!
//! The adapter holds only what is HTTP: the client that posts to Slack,
//! where Slack's Web API is, and the throttle on audited signature
//! failures. Links, sealed credentials, permissions, approvals and runs are
//! the domain's (`sealrun_control`); the adapter depends on no route module
//! and on no other feature's state.

pub(crate) mod admin;
pub(crate) mod approvals;
pub(crate) mod auth;
pub(crate) mod command;
pub(crate) mod commands;
pub(crate) mod escape;
pub(crate) mod interact;
pub(crate) mod notify;
pub(crate) mod verify;
pub(crate) mod web;

use crate::error::Error;
use crate::state::AppState;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post, put};
use reqwest::Url;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where Slack's Web API is, unless configured otherwise.
pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

/// The integration's state, made once per server: `api_url` is Slack's
/// Web API (`https://`, or `http://` on loopback for a stand-in).
pub(crate) fn state(app: AppState, api_url: &str) -> Result<SlackState, Error> {
    let mut api = notify::check_response_url(api_url)
        .map_err(|e| Error::Config(format!("slack_api_url {api_url:?}: {e}")))?;
    // Method names are joined to it: `.../api` and `.../api/` are the same.
    if !api.path().ends_with('/') {
        api.set_path(&format!("{}/", api.path()));
    }
    Ok(SlackState {
        app,
        slack: Arc::new(Slack::new(api)?),
    })
}

/// The routes of the integration, with their own state.
pub(crate) fn router(state: SlackState) -> Router<AppState> {
    Router::new()
        .route(commands::PATH, post(commands::handle))
        .route(interact::PATH, post(interact::handle))
        .route(
            "/v1/integrations/slack/workspaces",
            get(admin::list_workspaces),
        )
        .route(
            "/v1/integrations/slack/workspaces/{team_id}",
            put(admin::put_workspace).delete(admin::delete_workspace),
        )
        .route(
            "/v1/integrations/slack/workspaces/{team_id}/approvals",
            put(admin::put_approvals).delete(admin::delete_approvals),
        )
        .route("/v1/integrations/slack/users", get(admin::list_users))
        .route(
            "/v1/integrations/slack/users/{team_id}/{user_id}",
            put(admin::put_user).delete(admin::delete_user),
        )
        .with_state(state)
}

/// Starts what the integration does in the background, once the server
/// runs (not when it is bound: a server bound and dropped without running
/// must not leave tasks holding the control plane): resuming the run
/// results a previous process owed to Slack, and draining the approval
/// messages' outbox.
pub(crate) fn start(state: SlackState) {
    let tasks = state.slack.tasks.clone();
    tasks.spawn(notify::resume(state.clone()));
    tasks.spawn(approvals::outbox(state));
}

/// Waits (at most `grace`) for the integration's background tasks to end
/// once shutdown has begun: a message posted during shutdown is then also
/// recorded as posted, so the next start does not post it again.
pub(crate) async fn drain(state: &SlackState, grace: Duration) {
    let tasks = &state.slack.tasks;
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "Slack tasks still running at shutdown: what they owed is posted after the next start"
        );
    }
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
    /// Posts to `response_url`s and the Web API.
    http: reqwest::Client,
    /// Slack's Web API, ending in `/`.
    api: Url,
    /// Every background task (result notices, the approvals outbox).
    tasks: tokio_util::task::TaskTracker,
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
    fn new(api: Url) -> Result<Slack, Error> {
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
            api,
            tasks: tokio_util::task::TaskTracker::new(),
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
