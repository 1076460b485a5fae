//! The Slack integration: `/sealrun` slash commands, verified with the
//! workspace's signing secret and run as the linked sealrun user.
//!
//! * [`verify`]: Slack's v0 request signatures and the replay window.
//! * [`words`] and [`command`]: what the user typed, parsed.
//! * [`escape`]: what Slack shows, made inert.
//! * [`store`]: linked workspaces (signing secrets sealed at rest) and users.
//! * [`admin`]: the admin endpoints that link and unlink them.
//! * [`commands`]: the slash-command endpoint.
//! * [`notify`]: posting a run's result to the command's `response_url`.
//!
//! A signing secret must be usable to compute HMACs, so it cannot be stored
//! hashed. It is sealed (the vault's sealed box) to a keypair the control
//! plane keeps in `data_dir/slack.key` (mode 0600), bound to its team id,
//! and opened only to verify a request; the opened secret is cached in
//! memory in zeroizing buffers and dropped whenever the link changes.

pub(crate) mod admin;
pub(crate) mod command;
pub(crate) mod commands;
pub(crate) mod escape;
pub(crate) mod notify;
pub(crate) mod store;
pub(crate) mod verify;
pub(crate) mod words;

use crate::error::Error;
use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post, put};
use sealrun_vault::TargetKeypair;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// File (in the data directory) holding the key signing secrets are sealed to.
pub(crate) const KEY_FILE: &str = "slack.key";

/// The routes of the integration.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
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
}

/// The integration's share of the server state.
pub(crate) struct Slack {
    keypair: TargetKeypair,
    cache: Mutex<store::SecretCache>,
    /// Posts to `response_url`s.
    http: reqwest::Client,
    /// Last audited signature failure per team (at most one a second).
    failures: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("key_id", &self.keypair.key_id())
            .finish_non_exhaustive()
    }
}

/// How long one POST to a `response_url` may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

impl Slack {
    /// Loads (or creates) `data_dir/slack.key` and sets up the HTTP client.
    pub(crate) fn open(data_dir: &Path) -> Result<Slack, Error> {
        let path = data_dir.join(KEY_FILE);
        let data_dir_err = |e: &dyn std::fmt::Display| Error::DataDir {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        };
        let (keypair, created) =
            TargetKeypair::load_or_generate(&path).map_err(|e| data_dir_err(&e))?;
        if created {
            tracing::info!(path = %path.display(), "generated the key Slack signing secrets are sealed to");
        }
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
            keypair,
            cache: Mutex::new(store::SecretCache::default()),
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
