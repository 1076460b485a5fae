//! Targets (declared by admins) and their write-only secrets. No route here
//! returns a ciphertext.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, Segments};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sealrun_control::{User, Written};
use sealrun_vault::SealedSecret;
use sealrun_wire::admin::{
    PublicKeyView, RekeyRequest, Rekeyed, SecretList, SecretView, TargetList, TargetSpec,
    TargetSpecs, TargetView,
};
use sealrun_wire::trust::{Signed, TargetCertificate};

fn status(written: Written) -> StatusCode {
    match written {
        Written::Created => StatusCode::CREATED,
        Written::Replaced => StatusCode::OK,
    }
}

/// `GET /v1/targets` (admin, operator).
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
) -> Result<Json<TargetList>, ApiError> {
    let targets = state.control.list_targets(&user).await?;
    Ok(Json(TargetList { targets }))
}

/// `PUT /v1/targets` (admin): declares or replaces every listed target in
/// one transaction, or none of them.
pub(crate) async fn put_all(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    JsonBody(req): JsonBody<TargetSpecs>,
) -> Result<Json<TargetList>, ApiError> {
    let written = state.control.put_targets(&user, req.targets).await?;
    Ok(Json(TargetList {
        targets: written.into_iter().map(|(_, view)| view).collect(),
    }))
}

/// `GET /v1/targets/{name}` (admin, operator).
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<Json<TargetView>, ApiError> {
    Ok(Json(state.control.target(&user, name).await?))
}

/// `PUT /v1/targets/{name}` (admin): create or replace. A replaced target
/// keeps its pinned key and its secrets.
pub(crate) async fn put(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    JsonBody(spec): JsonBody<TargetSpec>,
) -> Result<(StatusCode, Json<TargetView>), ApiError> {
    let (written, view) = state.control.put_target(&user, name, spec).await?;
    Ok((status(written), Json(view)))
}

/// `DELETE /v1/targets/{name}` (admin): refused while runs are queued or
/// running; deletes its secrets and its key pin.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<StatusCode, ApiError> {
    state.control.delete_target(&user, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/targets/{name}/certificate` (admin): store an admin's
/// certificate of the target's key (made and signed on the admin's machine).
pub(crate) async fn certify(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    JsonBody(signed): JsonBody<Signed<TargetCertificate>>,
) -> Result<Json<TargetView>, ApiError> {
    Ok(Json(
        state.control.certify_target(&user, name, signed).await?,
    ))
}

/// `POST /v1/targets/{name}/rekey` (admin): move the target to another agent
/// key; refused while it has secrets unless `drop_secrets`.
pub(crate) async fn rekey(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    JsonBody(req): JsonBody<RekeyRequest>,
) -> Result<Json<Rekeyed>, ApiError> {
    Ok(Json(state.control.rekey_target(&user, name, req).await?))
}

/// `GET /v1/targets/{name}/public-key` (admin, operator): what to seal to.
pub(crate) async fn public_key(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<Json<PublicKeyView>, ApiError> {
    Ok(Json(state.control.target_public_key(&user, name).await?))
}

/// `GET /v1/targets/{name}/secrets` (admin, operator): metadata only.
pub(crate) async fn list_secrets(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<Json<SecretList>, ApiError> {
    let secrets = state.control.list_secrets(&user, name).await?;
    Ok(Json(SecretList { secrets }))
}

/// `PUT /v1/targets/{name}/secrets/{secret}` (admin, operator): stores a
/// secret sealed (on the caller's machine) to the target's pinned key.
pub(crate) async fn put_secret(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments((target, name)): Segments<(String, String)>,
    JsonBody(sealed): JsonBody<SealedSecret>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    let (written, view) = state
        .control
        .put_secret(&user, target, name, sealed)
        .await?;
    Ok((status(written), Json(view)))
}

/// `DELETE /v1/targets/{name}/secrets/{secret}` (admin, operator).
pub(crate) async fn delete_secret(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments((target, name)): Segments<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.control.delete_secret(&user, target, name).await?;
    Ok(StatusCode::NO_CONTENT)
}
