//! Passkeys in the console: a person registers one here (the browser's
//! WebAuthn, ES256), sees its fingerprint to compare with the admin who
//! certifies it (`sealrun user certify NAME --passkey FINGERPRINT`), and
//! then approves runs with it: the approval statement's challenge is signed
//! by the authenticator, and agents check that assertion against the
//! certificate, so the server that served the page cannot forge one.

use super::error::PageError;
use super::page::{self, Section, empty};
use super::session::{Posted, Viewer};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use maud::html;
use rand::RngCore as _;
use sealrun_wire::passkey::{ALGORITHM, Passkey, rp_id};
use serde::Deserialize;

/// The origin the browser is on: `https://` and the `Host` it asked for
/// (the console is served over HTTPS only).
pub(crate) fn origin(headers: &HeaderMap) -> Result<String, PageError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| PageError::bad_request("the request names no host"))?;
    Ok(format!("https://{host}"))
}

/// `GET /ui/passkeys`.
pub(crate) async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let own = state.control.own_passkeys(&viewer.user).await?;
    let origin = origin(&headers)?;
    let rp_id = rp_id(&origin).map_err(|e| PageError::bad_request(e.to_string()))?;
    let mut challenge = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut challenge);
    let options = serde_json::json!({
        "challenge": B64URL.encode(challenge),
        "rp": {"id": rp_id, "name": "sealrun"},
        "user": {
            "id": B64URL.encode(format!("{}/{}", viewer.user.org_id, viewer.user.user_id)),
            "name": viewer.user.user,
            "displayName": viewer.user.user,
        },
        "alg": ALGORITHM,
        "exclude": own.iter().map(|p| p.passkey.credential_id.clone()).collect::<Vec<_>>(),
    });
    let content = html! {
        p {
            "A passkey lets you approve runs here, signed by your authenticator (a security key, "
            "or your device's PIN or biometrics). It counts once an admin certifies it: give them "
            "its fingerprint, and they run " code { "sealrun user certify " (viewer.user.user) " --key … --passkey FINGERPRINT" } "."
        }
        @if own.is_empty() { (empty("You have registered no passkey.")) } @else {
            div class="scroll" { table {
                thead { tr { th scope="col" { "Fingerprint" } th scope="col" { "Origin" } th scope="col" { "Certified" } } }
                tbody { @for p in &own {
                    tr {
                        td { code class="fingerprint" { (p.passkey.fingerprint()) } }
                        td { (p.passkey.origin) }
                        td { @if p.certified { span class="badge ok" { "certified" } } @else { span class="badge" { "waiting for an admin" } } }
                    }
                } }
            } }
        }
        form id="register-passkey" method="post" action="/ui/passkeys" data-options=(options.to_string()) {
            input type="hidden" name="csrf" value=(viewer.csrf());
            input type="hidden" name="credential_id";
            input type="hidden" name="public_key";
            button type="submit" { "Register a passkey" }
            p class="meta" id="passkey-status" role="status" {}
        }
    };
    Ok(page::page(&viewer, Section::Passkeys, "Passkeys", content))
}

/// The registration form as the page's script posts it.
#[derive(Debug, Deserialize)]
pub(crate) struct Register {
    #[serde(default)]
    credential_id: String,
    /// The public key's SPKI DER (`response.getPublicKey()`), base64url.
    #[serde(default)]
    public_key: String,
}

/// `POST /ui/passkeys`: registers the caller's new passkey.
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { viewer, form }: Posted<Register>,
) -> Result<Response, PageError> {
    let spki = B64URL
        .decode(form.public_key.trim_end_matches('='))
        .map_err(|_| PageError::bad_request("the passkey's public key is not base64url"))?;
    let passkey = Passkey::new(
        form.credential_id.trim_end_matches('='),
        &spki,
        &origin(&headers)?,
    )
    .map_err(|e| PageError::bad_request(e.to_string()))?;
    state
        .control
        .register_passkey(&viewer.user, passkey)
        .await?;
    Ok(Redirect::to("/ui/passkeys").into_response())
}
