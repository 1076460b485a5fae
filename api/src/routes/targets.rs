//! Targets (declared by admins) and their write-only secrets.
//!
//! No route here returns a ciphertext: secrets are listed by name, version
//! and key id only. The one message that carries ciphertext out of the
//! control plane is an agent's run assignment.

use crate::audit;
use crate::auth::User;
use crate::db::now_ms;
use crate::error::ApiError;
use crate::extract::{JsonBody, Segments};
use crate::names::{check_env_name, check_label, check_name};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use sealrun_vault::{ENVELOPE_VERSION, KeyId, SEAL_OVERHEAD, SealedSecret};
use sealrun_wire::admin::{
    PublicKeyView, Role, SecretList, SecretView, TargetList, TargetSpec, TargetView,
};
use serde_json::{Value, json};
use std::sync::Arc;

/// Longest run timeout a target may allow (a week).
const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Largest sealed secret (base64 text).
const MAX_CIPHERTEXT: usize = 128 * 1024;

const TARGET_COLUMNS: &str = "spec, public_key, key_id, updated_ms";

fn view_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, Option<String>, Option<String>, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_view(
    (spec, key, key_id, updated): (String, Option<String>, Option<String>, i64),
) -> Result<TargetView, ApiError> {
    Ok(TargetView {
        spec: serde_json::from_str(&spec)?,
        public_key: match (key, key_id) {
            (Some(key), Some(id)) => Some(PublicKeyView {
                key_id: KeyId(id),
                key,
            }),
            _ => None,
        },
        updated_at_ms: updated,
    })
}

fn no_such_target(name: &str) -> ApiError {
    ApiError::not_found(format!("no target named {name:?}"))
}

fn load(conn: &Connection, org_id: i64, name: &str) -> Result<TargetView, ApiError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE org_id = ?1 AND name = ?2"
        ))?
        .query_row(params![org_id, name], view_from_row)
        .optional()?
        .ok_or_else(|| no_such_target(name))?;
    to_view(row)
}

/// `GET /v1/targets` (admin, operator).
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<TargetList>, ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "read targets")?;
    let targets = state
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TARGET_COLUMNS} FROM targets WHERE org_id = ?1 ORDER BY name"
            ))?;
            let rows = stmt
                .query_map([user.org_id], view_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(to_view).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(TargetList { targets }))
}

/// `GET /v1/targets/{name}` (admin, operator).
pub(crate) async fn get_one(
    State(state): State<AppState>,
    user: User,
    Segments(name): Segments<String>,
) -> Result<Json<TargetView>, ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "read targets")?;
    let view = state
        .db
        .read(move |conn| load(conn, user.org_id, &name))
        .await?;
    Ok(Json(view))
}

fn check_spec(spec: &TargetSpec) -> Result<(), String> {
    check_name("target", &spec.name)?;
    check_name("pool", &spec.pool)?;
    if spec.image.is_empty()
        || spec.image.len() > 512
        || spec
            .image
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid image {:?}", spec.image));
    }
    if !spec.private_network.is_empty() {
        check_label("private_network label", &spec.private_network)?;
    }
    if let Some(network) = &spec.network {
        check_name("network", network)?;
        if network == "host" || network == "none" {
            return Err(format!(
                "network {network:?} is not allowed: leave it out for no network, or name a Docker network"
            ));
        }
    }
    if spec.timeout_secs == 0 || spec.timeout_secs > MAX_TIMEOUT_SECS {
        return Err(format!(
            "timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
        ));
    }
    let l = &spec.limits;
    if l.memory_mb < 6 || l.millicpus == 0 || l.pids == 0 {
        return Err("limits: memory_mb must be at least 6, millicpus and pids at least 1".into());
    }
    if let Some(user) = &spec.user {
        if user.is_empty()
            || user.len() > 64
            || user.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("invalid user {user:?}"));
        }
    }
    Ok(())
}

/// Names of the fields that differ between two specs.
fn changed_fields(old: &TargetSpec, new: &TargetSpec) -> Result<Vec<String>, ApiError> {
    let (Value::Object(old), Value::Object(new)) =
        (serde_json::to_value(old)?, serde_json::to_value(new)?)
    else {
        return Ok(Vec::new());
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect())
}

/// `PUT /v1/targets/{name}` (admin): create or replace. A replaced target
/// keeps its pinned key and its secrets.
pub(crate) async fn put(
    State(state): State<AppState>,
    user: User,
    Segments(name): Segments<String>,
    JsonBody(spec): JsonBody<TargetSpec>,
) -> Result<(StatusCode, Json<TargetView>), ApiError> {
    user.allow(&[Role::Admin], "change targets")?;
    if spec.name != name {
        return Err(ApiError::bad_request(format!(
            "the body declares target {:?} but the URL names {name:?}",
            spec.name
        )));
    }
    check_spec(&spec).map_err(ApiError::bad_request)?;
    let invalidate = Arc::clone(&state);
    let (created, view) = state
        .db
        .write_then(move |conn| {
            let pool_id: i64 = conn
                .prepare_cached("SELECT id FROM pools WHERE org_id = ?1 AND name = ?2")?
                .query_row(params![user.org_id, spec.pool], |r| r.get(0))
                .optional()?
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "no pool named {:?}: create it first (POST /v1/pools)",
                        spec.pool
                    ))
                })?;
            let old: Option<(i64, String)> = conn
                .prepare_cached("SELECT id, spec FROM targets WHERE org_id = ?1 AND name = ?2")?
                .query_row(params![user.org_id, name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let now = now_ms();
            let spec_json = serde_json::to_string(&spec)?;
            let (created, detail) = match old {
                None => {
                    conn.prepare_cached(
                        "INSERT INTO targets (org_id, name, pool_id, spec, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![user.org_id, name, pool_id, spec_json, now])?;
                    (true, json!({"created": true, "spec": spec}))
                }
                Some((id, old_spec)) => {
                    let old_spec: TargetSpec = serde_json::from_str(&old_spec)?;
                    let changed = changed_fields(&old_spec, &spec)?;
                    conn.prepare_cached(
                        "UPDATE targets SET pool_id = ?2, spec = ?3, updated_ms = ?4 WHERE id = ?1",
                    )?
                    .execute(params![id, pool_id, spec_json, now])?;
                    // Agents of another pool no longer serve it.
                    conn.prepare_cached(
                        "DELETE FROM agent_targets WHERE target_id = ?1
                         AND agent_id IN (SELECT id FROM agents WHERE pool_id != ?2)",
                    )?
                    .execute(params![id, pool_id])?;
                    (false, json!({"created": false, "changed": changed}))
                }
            };
            audit::append(conn, user.org_id, &user.actor(), "target.changed", &name, detail)?;
            Ok((created, load(conn, user.org_id, &name)?))
            },
            move |_| invalidate.auth.invalidate(),
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `DELETE /v1/targets/{name}` (admin): refused while runs are queued or
/// running; deletes its secrets and its key pin.
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: User,
    Segments(name): Segments<String>,
) -> Result<StatusCode, ApiError> {
    user.allow(&[Role::Admin], "change targets")?;
    let invalidate = Arc::clone(&state);
    state
        .db
        .write_then(move |conn| {
            let id: i64 = conn
                .prepare_cached("SELECT id FROM targets WHERE org_id = ?1 AND name = ?2")?
                .query_row(params![user.org_id, name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| no_such_target(&name))?;
            let active: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM runs WHERE target_id = ?1 AND status IN ('queued', 'running')",
                )?
                .query_row([id], |r| r.get(0))?;
            if active > 0 {
                return Err(ApiError::conflict(format!(
                    "target {name} has {active} queued or running runs; cancel them first"
                )));
            }
            let secrets = conn
                .prepare_cached("DELETE FROM secrets WHERE target_id = ?1")?
                .execute([id])?;
            conn.prepare_cached("DELETE FROM agent_targets WHERE target_id = ?1")?
                .execute([id])?;
            conn.prepare_cached("DELETE FROM targets WHERE id = ?1")?.execute([id])?;
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "target.deleted",
                &name,
                json!({"secrets_deleted": secrets}),
            )?;
            Ok(())
            },
            move |_| invalidate.auth.invalidate(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/targets/{name}/public-key` (admin, operator): what to seal to.
pub(crate) async fn public_key(
    State(state): State<AppState>,
    user: User,
    Segments(name): Segments<String>,
) -> Result<Json<PublicKeyView>, ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "read targets")?;
    let view = state
        .db
        .read(move |conn| load(conn, user.org_id, &name))
        .await?;
    view.public_key.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "target {} has no public key: no agent has registered this target yet",
            view.spec.name
        ))
    })
}

/// `GET /v1/targets/{name}/secrets` (admin, operator): metadata only.
pub(crate) async fn list_secrets(
    State(state): State<AppState>,
    user: User,
    Segments(name): Segments<String>,
) -> Result<Json<SecretList>, ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "manage secrets")?;
    let secrets = state
        .db
        .read(move |conn| {
            let id = target_id(conn, user.org_id, &name)?;
            let mut stmt = conn.prepare_cached(
                "SELECT name, version, key_id, updated_ms, updated_by FROM secrets
                 WHERE target_id = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok(SecretView {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    key_id: KeyId(r.get(2)?),
                    updated_at_ms: r.get(3)?,
                    updated_by: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(SecretList { secrets }))
}

fn target_id(conn: &Connection, org_id: i64, name: &str) -> Result<i64, ApiError> {
    conn.prepare_cached("SELECT id FROM targets WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| no_such_target(name))
}

/// The envelope checks the control plane can make without the key.
fn check_sealed(sealed: &SealedSecret, name: &str, target: &str) -> Result<(), ApiError> {
    if sealed.version != ENVELOPE_VERSION {
        return Err(ApiError::bad_request(format!(
            "sealed secret version {} is not supported (this control plane takes version {ENVELOPE_VERSION})",
            sealed.version
        )));
    }
    if sealed.ciphertext.len() > MAX_CIPHERTEXT {
        return Err(ApiError::too_large(format!(
            "ciphertext is {} characters; the limit is {MAX_CIPHERTEXT}",
            sealed.ciphertext.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed.ciphertext.as_bytes())
        .map_err(|_| ApiError::bad_request("ciphertext is not standard base64"))?;
    // A sealed envelope holds at least the box overhead, the envelope header
    // (9 bytes), the name and the target.
    let min = SEAL_OVERHEAD + 9 + name.len() + target.len();
    if bytes.len() < min {
        return Err(ApiError::bad_request(format!(
            "ciphertext is {} bytes, too short to be secret {name} sealed for target {target} (at least {min})",
            bytes.len()
        )));
    }
    Ok(())
}

/// `PUT /v1/targets/{name}/secrets/{secret}` (admin, operator): stores a
/// secret sealed (on the caller's machine) to the target's pinned key.
pub(crate) async fn put_secret(
    State(state): State<AppState>,
    user: User,
    Segments((target, name)): Segments<(String, String)>,
    JsonBody(sealed): JsonBody<SealedSecret>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "manage secrets")?;
    check_env_name(&name).map_err(|e| ApiError::bad_request(format!("secret name: {e}")))?;
    check_sealed(&sealed, &name, &target)?;
    let (created, view) = state
        .db
        .write(move |conn| {
            let row: Option<(i64, Option<String>)> = conn
                .prepare_cached("SELECT id, key_id FROM targets WHERE org_id = ?1 AND name = ?2")?
                .query_row(params![user.org_id, target], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (target_id, pinned) = row.ok_or_else(|| no_such_target(&target))?;
            let Some(pinned) = pinned else {
                return Err(ApiError::conflict(format!(
                    "target {target} has no key: no agent has registered this target yet"
                )));
            };
            if sealed.key_id.0 != pinned {
                return Err(ApiError::conflict(format!(
                    "the secret is sealed to key {} but target {target}'s key is {pinned}: fetch the public key again and re-seal",
                    sealed.key_id
                )));
            }
            let old: Option<u64> = conn
                .prepare_cached("SELECT version FROM secrets WHERE target_id = ?1 AND name = ?2")?
                .query_row(params![target_id, name], |r| r.get(0))
                .optional()?;
            let version = old.map_or(1, |v| v + 1);
            let now = now_ms();
            let by = format!("{} ({})", user.name, user.actor());
            conn.prepare_cached(
                "INSERT INTO secrets (target_id, name, version, key_id, sealed, updated_ms, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (target_id, name) DO UPDATE SET version = excluded.version,
                    key_id = excluded.key_id, sealed = excluded.sealed,
                    updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
            )?
            .execute(params![
                target_id,
                name,
                version,
                pinned,
                serde_json::to_string(&sealed)?,
                now,
                by
            ])?;
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "secret.written",
                &format!("{target}/{name}"),
                json!({"name": name, "version": version, "key_id": pinned}),
            )?;
            Ok((
                old.is_none(),
                SecretView {
                    name,
                    version,
                    key_id: KeyId(pinned),
                    updated_at_ms: now,
                    updated_by: by,
                },
            ))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `DELETE /v1/targets/{name}/secrets/{secret}` (admin, operator).
pub(crate) async fn delete_secret(
    State(state): State<AppState>,
    user: User,
    Segments((target, name)): Segments<(String, String)>,
) -> Result<StatusCode, ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "manage secrets")?;
    state
        .db
        .write(move |conn| {
            let target_id = target_id(conn, user.org_id, &target)?;
            let row: Option<(u64, String)> = conn
                .prepare_cached(
                    "DELETE FROM secrets WHERE target_id = ?1 AND name = ?2 RETURNING version, key_id",
                )?
                .query_row(params![target_id, name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((version, key_id)) = row else {
                return Err(ApiError::not_found(format!(
                    "target {target} has no secret named {name:?}"
                )));
            };
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "secret.deleted",
                &format!("{target}/{name}"),
                json!({"name": name, "version": version, "key_id": key_id}),
            )?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
