//! Targets (declared by admins) and their write-only secrets.
//!
//! Nothing here returns a ciphertext: secrets are listed by name, version
//! and key id only. The one message that carries ciphertext out of the
//! control plane is an agent's run assignment (`crate::queue::claim`).

use crate::caller::User;
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::service::Control;
use crate::store::{self, now_ms};
use sealrun_vault::{ENVELOPE_VERSION, KeyId, SEAL_OVERHEAD, SealedSecret};
use sealrun_wire::admin::{
    PublicKeyView, RekeyRequest, Rekeyed, SecretView, TargetSpec, TargetView,
};
use sealrun_wire::names;
use sealrun_wire::trust::{Signed, TargetCertificate};
use serde_json::{Value, json};
use std::sync::Arc;

/// Longest run timeout a target may allow (a week).
const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Largest sealed secret (base64 text).
const MAX_CIPHERTEXT: usize = 128 * 1024;

/// Whether a new target was declared or an existing one replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// It did not exist before.
    Created,
    /// It existed and was replaced.
    Replaced,
}

fn no_such_target(name: &str) -> Error {
    Error::not_found(Object::Target, name)
}

fn check_spec(spec: &TargetSpec) -> Result<(), String> {
    names::object("target", &spec.name).map_err(|e| e.to_string())?;
    names::object("pool", &spec.pool).map_err(|e| e.to_string())?;
    // The image and every allowed-image entry parse as the rule that checks
    // runs against them (`sealrun_wire::image`) reads them.
    sealrun_wire::image::ImageRef::parse(&spec.image).map_err(|e| e.to_string())?;
    sealrun_wire::image::check_allowed_images(&spec.allowed_images)?;
    if !spec.private_network.is_empty() {
        names::label("private_network label", &spec.private_network).map_err(|e| e.to_string())?;
    }
    if let Some(network) = &spec.network {
        names::object("network", network).map_err(|e| e.to_string())?;
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
    // What the engine would refuse (or read as "unlimited") at every run.
    spec.limits.check().map_err(|e| e.to_string())?;
    let mut runbook_only = std::collections::BTreeSet::new();
    for name in &spec.policy.runbook_only_secrets {
        names::env_var(name).map_err(|e| format!("policy.runbook_only_secrets: {e}"))?;
        if !runbook_only.insert(name) {
            return Err(format!("policy.runbook_only_secrets lists {name} twice"));
        }
    }
    if let Some(rule) = &spec.policy.approval {
        crate::approval::check_rule(rule).map_err(|e| format!("policy.{e}"))?;
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
fn changed_fields(old: &TargetSpec, new: &TargetSpec) -> Result<Vec<String>, Error> {
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

/// The envelope checks the control plane can make without the key.
fn check_sealed(sealed: &SealedSecret, name: &str, target: &str) -> Result<(), Error> {
    use base64::Engine as _;
    if sealed.version != ENVELOPE_VERSION {
        return Err(Error::Invalid(format!(
            "sealed secret version {} is not supported (this control plane takes version {ENVELOPE_VERSION})",
            sealed.version
        )));
    }
    if sealed.ciphertext.len() > MAX_CIPHERTEXT {
        return Err(Error::TooLarge(format!(
            "ciphertext is {} characters; the limit is {MAX_CIPHERTEXT}",
            sealed.ciphertext.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed.ciphertext.as_bytes())
        .map_err(|_| Error::Invalid("ciphertext is not standard base64".into()))?;
    // A sealed envelope holds at least the box overhead, the envelope header
    // (9 bytes), the name and the target.
    let min = SEAL_OVERHEAD + 9 + name.len() + target.len();
    if bytes.len() < min {
        return Err(Error::Invalid(format!(
            "ciphertext is {} bytes, too short to be secret {name} sealed for target {target} (at least {min})",
            bytes.len()
        )));
    }
    Ok(())
}

/// Declares or replaces the checked target `spec` inside `tx`, audited.
fn write_target(
    tx: &store::Tx<'_>,
    user: &User,
    spec: TargetSpec,
) -> Result<(Written, TargetView), Error> {
    let name = spec.name.clone();
    // Neutral: each adapter (HTTP, CLI) says how to create a pool.
    let pool_id = store::pools::id(tx, user.org_id, &spec.pool)?.ok_or_else(|| {
        Error::Invalid(format!(
            "no pool named {:?}: create the pool first",
            spec.pool
        ))
    })?;
    let now = now_ms();
    let (written, detail) = match store::targets::spec_by_name(tx, user.org_id, &name)? {
        None => {
            store::targets::insert(tx, user.org_id, &name, pool_id, &spec, now)?;
            (Written::Created, json!({"created": true, "spec": spec}))
        }
        Some((id, old_spec)) => {
            let changed = changed_fields(&old_spec, &spec)?;
            store::targets::update(tx, id, pool_id, &spec, now)?;
            // Agents of another pool no longer serve it.
            store::agents::keep_pool_for_target(tx, id, pool_id)?;
            (
                Written::Replaced,
                json!({"created": false, "changed": changed}),
            )
        }
    };
    store::audit::append(
        tx,
        user.org_id,
        &user.actor(),
        "target.changed",
        &name,
        detail,
    )?;
    let view =
        store::targets::view(tx, user.org_id, &name)?.ok_or_else(|| no_such_target(&name))?;
    Ok((written, view))
}

/// [`Control::rekey_target`] inside its transaction.
fn rekey_job(
    tx: &store::Tx<'_>,
    user: &User,
    name: &str,
    new_key: KeyId,
    drop_secrets: bool,
) -> Result<Rekeyed, Error> {
    let Some((id, _pool, old_key)) = store::targets::pool_and_key(tx, user.org_id, name)? else {
        return Err(no_such_target(name));
    };
    if old_key.as_deref() == Some(new_key.0.as_str()) {
        return Err(Error::Conflict(format!(
            "target {name} already has key {new_key}: nothing to re-key"
        )));
    }
    let secrets: Vec<String> = store::secrets::list(tx, id)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    if !secrets.is_empty() && !drop_secrets {
        let old = old_key.as_deref().unwrap_or("the old key");
        return Err(Error::Conflict(format!(
            "target {name} has secrets sealed to key {old}, which key {new_key} cannot open ({}); nothing was changed: to delete them and re-key, run `sealrun target rekey {name} --key-id {new_key} --drop-secrets`, then set each again with `sealrun secret set`",
            secrets.join(", ")
        )));
    }
    store::secrets::delete_all(tx, id)?;
    let stopped = store::agents::serving_agents(tx, id)?;
    store::agents::drop_target(tx, id)?;
    store::targets::rekey(tx, id, &new_key.0, now_ms())?;
    store::audit::append(
        tx,
        user.org_id,
        &user.actor(),
        "target.rekeyed",
        name,
        json!({
            "old_key_id": old_key,
            "new_key_id": new_key.0,
            "secrets_deleted": secrets,
            "agents_stopped": stopped.iter().map(|a| &a.id).collect::<Vec<_>>(),
        }),
    )?;
    Ok(Rekeyed {
        target: name.to_owned(),
        old_key_id: old_key.map(KeyId),
        new_key_id: new_key,
        secrets_deleted: secrets,
        agents_stopped: stopped,
    })
}

impl Control {
    /// The org's targets, by name.
    pub async fn list_targets(&self, user: &User) -> Result<Vec<TargetView>, Error> {
        user.require(Action::ReadTargets)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::targets::list(tx, org_id))
            .await
    }

    /// The org's target `name`.
    pub async fn target(&self, user: &User, name: String) -> Result<TargetView, Error> {
        user.require(Action::ReadTargets)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| {
                store::targets::view(tx, org_id, &name)?.ok_or_else(|| no_such_target(&name))
            })
            .await
    }

    /// The pinned public key of target `name`: what to seal its secrets to.
    pub async fn target_public_key(
        &self,
        user: &User,
        name: String,
    ) -> Result<PublicKeyView, Error> {
        let view = self.target(user, name).await?;
        view.public_key.ok_or_else(|| {
            let name = view.spec.name;
            let why = match view.awaiting_key_id {
                Some(key) => format!(
                    "target {name} has no public key: it was re-keyed to key {key} and no agent with that key has connected yet"
                ),
                None => format!(
                    "target {name} has no public key: no agent has registered this target yet"
                ),
            };
            Error::not_found_because(Object::Target, name.clone(), why)
        })
    }

    /// Declares target `name` (which `spec` must name too), or replaces it.
    /// A replaced target keeps its pinned key and its secrets.
    pub async fn put_target(
        &self,
        user: &User,
        name: String,
        spec: TargetSpec,
    ) -> Result<(Written, TargetView), Error> {
        user.require(Action::ChangeTargets)?;
        if spec.name != name {
            return Err(Error::Invalid(format!(
                "the body declares target {:?} but the URL names {name:?}",
                spec.name
            )));
        }
        check_spec(&spec).map_err(Error::Invalid)?;
        let user = user.clone();
        let cache = Arc::clone(&self.auth);
        self.db
            .write_then(
                move |tx| write_target(tx, &user, spec),
                move |_| cache.invalidate(),
            )
            .await
    }

    /// Declares or replaces every target of `specs` in one transaction:
    /// all of them, or none when any one is refused (each refusal names its
    /// target). Each write is audited as a single put is.
    pub async fn put_targets(
        &self,
        user: &User,
        specs: Vec<TargetSpec>,
    ) -> Result<Vec<(Written, TargetView)>, Error> {
        user.require(Action::ChangeTargets)?;
        if specs.is_empty() {
            return Err(Error::Invalid("the list declares no target".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for spec in &specs {
            check_spec(spec).map_err(|e| Error::Invalid(format!("target {:?}: {e}", spec.name)))?;
            if !seen.insert(spec.name.as_str()) {
                return Err(Error::Invalid(format!(
                    "target {:?} is declared twice",
                    spec.name
                )));
            }
        }
        let user = user.clone();
        let cache = Arc::clone(&self.auth);
        self.db
            .write_then(
                move |tx| {
                    specs
                        .into_iter()
                        .map(|spec| {
                            let name = spec.name.clone();
                            write_target(tx, &user, spec).map_err(|e| match e {
                                Error::Invalid(why) => {
                                    Error::Invalid(format!("target {name:?}: {why}"))
                                }
                                other => other,
                            })
                        })
                        .collect()
                },
                move |_| cache.invalidate(),
            )
            .await
    }

    /// Deletes target `name` with its secrets and its key pin; refused
    /// while runs are queued or running.
    pub async fn delete_target(&self, user: &User, name: String) -> Result<(), Error> {
        user.require(Action::ChangeTargets)?;
        let user = user.clone();
        let cache = Arc::clone(&self.auth);
        self.db
            .write_then(
                move |tx| {
                    let id = store::targets::id(tx, user.org_id, &name)?
                        .ok_or_else(|| no_such_target(&name))?;
                    let active = store::runs::active_for_target(tx, id)?;
                    if active > 0 {
                        return Err(Error::Conflict(format!(
                            "target {name} has {active} runs waiting for approval, queued or running; cancel them first"
                        )));
                    }
                    let secrets = store::secrets::delete_all(tx, id)?;
                    store::agents::drop_target(tx, id)?;
                    store::targets::delete(tx, id)?;
                    store::audit::append(
                        tx,
                        user.org_id,
                        &user.actor(),
                        "target.deleted",
                        &name,
                        json!({"secrets_deleted": secrets}),
                    )?;
                    Ok(())
                },
                move |_| cache.invalidate(),
            )
            .await
    }

    /// Moves target `name` to the agent key `req.key_id`: from now on only
    /// an agent presenting exactly that key may serve it (its key bytes are
    /// pinned when that agent connects, so no other agent of the pool can
    /// take the target first). Agents serving it with the old key get none
    /// of its runs any more (runs they are running finish; queued runs wait
    /// for the new key's agent). Secrets sealed to the old key cannot be
    /// opened by the new one: refused while there are any, naming them,
    /// unless `req.drop_secrets`, which deletes them. Audited as
    /// `target.rekeyed` with both key ids.
    pub async fn rekey_target(
        &self,
        user: &User,
        name: String,
        req: RekeyRequest,
    ) -> Result<Rekeyed, Error> {
        user.require(Action::RekeyTargets)?;
        let new_key = req
            .key_id
            .0
            .parse::<KeyId>()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let user = user.clone();
        let cache = Arc::clone(&self.auth);
        self.db
            .write_then(
                move |tx| rekey_job(tx, &user, &name, new_key, req.drop_secrets),
                // Agents' cached principals list the targets they serve.
                move |_| cache.invalidate(),
            )
            .await
    }

    /// Stores an admin's certificate of target `name`'s key, spec and
    /// policy. The control plane cannot tell whether the signer is trusted
    /// (clients and agents decide that, against the admin keys they pin);
    /// it refuses only what cannot be right: a certificate for another org
    /// or target, for a key the target is not pinned to, for a spec other
    /// than the target's now, or whose signature does not verify with the
    /// key it names. Audited as `target.certified`.
    pub async fn certify_target(
        &self,
        user: &User,
        name: String,
        signed: Signed<TargetCertificate>,
    ) -> Result<TargetView, Error> {
        user.require(Action::RekeyTargets)?;
        let (certificate, signer) = signed.open().map_err(|e| Error::Invalid(e.to_string()))?;
        let json = serde_json::to_string(&signed)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let org = store::approvals::org_name(tx, user.org_id)?;
                let view = store::targets::view(tx, user.org_id, &name)?
                    .ok_or_else(|| no_such_target(&name))?;
                let c = &certificate;
                if c.org != org || c.target != name {
                    return Err(Error::Invalid(format!(
                        "this certificate is for target {} of org {}, not target {name} of org {org}",
                        c.target, c.org
                    )));
                }
                let Some(pinned) = &view.public_key else {
                    return Err(Error::Conflict(format!(
                        "target {name} has no key yet: an agent serving it must connect first"
                    )));
                };
                if pinned.key != c.public_key || pinned.key_id.0 != c.key_id {
                    return Err(Error::Conflict(format!(
                        "this certificate is for key {} but target {name} is pinned to key {}",
                        c.key_id, pinned.key_id.0
                    )));
                }
                if pinned.report_key != c.report_key {
                    return Err(Error::Conflict(format!(
                        "this certificate names another run-report key than the one target {name}'s agent presented; certify it again (sealrun target trust {name})"
                    )));
                }
                if c.spec != view.spec {
                    return Err(Error::Conflict(format!(
                        "this certificate is for another declaration of target {name} than its current one: it changed since; certify it again (sealrun target trust {name})"
                    )));
                }
                store::targets::set_certificate(tx, user.org_id, &name, &json)?;
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "target.certified",
                    &name,
                    json!({
                        "key_id": c.key_id,
                        "signer": signer.fingerprint(),
                        "expires_at_ms": c.expires_at_ms,
                        // The certificate itself: an export of the trail
                        // then holds what checks the agents' signed run
                        // reports (`sealrun audit verify --file`).
                        "certificate": signed,
                    }),
                )?;
                store::targets::view(tx, user.org_id, &name)?
                    .ok_or_else(|| no_such_target(&name))
            })
            .await
    }

    /// The secrets of target `target`: metadata only, never ciphertext.
    pub async fn list_secrets(
        &self,
        user: &User,
        target: String,
    ) -> Result<Vec<SecretView>, Error> {
        user.require(Action::ReadSecrets)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| {
                let id = store::targets::id(tx, org_id, &target)?
                    .ok_or_else(|| no_such_target(&target))?;
                store::secrets::list(tx, id)
            })
            .await
    }

    /// Stores secret `name` of target `target`, sealed (on the caller's
    /// machine) to the target's pinned key.
    pub async fn put_secret(
        &self,
        user: &User,
        target: String,
        name: String,
        sealed: SealedSecret,
    ) -> Result<(Written, SecretView), Error> {
        user.require(Action::ManageSecrets)?;
        names::env_var(&name).map_err(|e| Error::Invalid(format!("secret name: {e}")))?;
        check_sealed(&sealed, &name, &target)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let Some((target_id, _pool, pinned)) =
                    store::targets::pool_and_key(tx, user.org_id, &target)?
                else {
                    return Err(no_such_target(&target));
                };
                let Some(pinned) = pinned else {
                    return Err(Error::Conflict(format!(
                        "target {target} has no key: no agent has registered this target yet"
                    )));
                };
                if sealed.key_id.0 != pinned {
                    return Err(Error::Conflict(format!(
                        "the secret is sealed to key {} but target {target}'s key is {pinned}: fetch the public key again and re-seal",
                        sealed.key_id
                    )));
                }
                let old = store::secrets::version(tx, target_id, &name)?;
                let version = old.map_or(1, |v| v + 1);
                let now = now_ms();
                let by = format!("{} ({})", user.name, user.actor());
                store::secrets::upsert(
                    tx,
                    &store::secrets::Written {
                        target_id,
                        name: &name,
                        version,
                        key_id: &pinned,
                        sealed: &sealed,
                        now,
                        by: &by,
                    },
                )?;
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "secret.written",
                    &format!("{target}/{name}"),
                    json!({"name": name, "version": version, "key_id": pinned}),
                )?;
                let written = if old.is_none() {
                    Written::Created
                } else {
                    Written::Replaced
                };
                Ok((
                    written,
                    SecretView {
                        name,
                        version,
                        key_id: KeyId(pinned),
                        updated_at_ms: now,
                        updated_by: by,
                    },
                ))
            })
            .await
    }

    /// Deletes secret `name` of target `target`.
    pub async fn delete_secret(
        &self,
        user: &User,
        target: String,
        name: String,
    ) -> Result<(), Error> {
        user.require(Action::ManageSecrets)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let target_id = store::targets::id(tx, user.org_id, &target)?
                    .ok_or_else(|| no_such_target(&target))?;
                let Some((version, key_id)) = store::secrets::delete(tx, target_id, &name)? else {
                    return Err(Error::not_found_because(
                        Object::Secret,
                        name.clone(),
                        format!("target {target} has no secret named {name:?}"),
                    ));
                };
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "secret.deleted",
                    &format!("{target}/{name}"),
                    json!({"name": name, "version": version, "key_id": key_id}),
                )?;
                Ok(())
            })
            .await
    }
}
