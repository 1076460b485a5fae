//! Runbooks: named, versioned command templates declared by admins,
//! stored as versions, and rendered into runs. What a declaration may say
//! and how a call's parameters become argv is one rule, in
//! [`sealrun_wire::runbook`] (agents check signed runbook runs with it).
use crate::caller::User;
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::service::Control;
use crate::store::{self, Tx, now_ms};
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::run::{RunRequest, RunbookCall};
use sealrun_wire::runbook::RunbookCertificate;
use sealrun_wire::runbook::{
    Applied, RunbookApplied, RunbookSpec, RunbookView, check_spec, render,
};
use sealrun_wire::trust::Signed;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Most runbooks one apply may declare.
const MAX_RUNBOOKS: usize = 500;

/// Checks a runbook against one of its targets: its image is allowed
/// there and its timeout within the target's maximum.
fn check_on_target(spec: &RunbookSpec, target: &TargetSpec) -> Result<(), String> {
    if let Some(image) = &spec.image {
        let allowed = target.effective_images();
        if !sealrun_wire::image::allows(&allowed, image).map_err(|e| e.to_string())? {
            return Err(format!(
                "image {image} is not allowed on target {}: it allows {}",
                target.name,
                allowed.join(", ")
            ));
        }
    }
    if let Some(t) = spec.timeout_secs {
        if t > target.timeout_secs {
            return Err(format!(
                "timeout_secs {t} exceeds target {}'s maximum of {}",
                target.name, target.timeout_secs
            ));
        }
    }
    Ok(())
}

/// A runbook run resolved: the request as if its argv, secrets, image and
/// timeout had been submitted ad hoc, and the runbook version it came from.
pub(crate) struct Rendered {
    pub(crate) request: RunRequest,
    pub(crate) name: String,
    pub(crate) version: u64,
    /// The runbook's own approval rule, if it has one.
    pub(crate) approval: Option<sealrun_wire::approval::ApprovalRule>,
}

/// Resolves a request that calls a runbook: the latest version of the
/// runbook, the target (the request's, or the runbook's only one), the
/// rendered argv. A request that also gives what the runbook decides is
/// refused.
pub(crate) fn resolve(
    tx: &Tx<'_>,
    org_id: i64,
    req: &RunRequest,
    call: &RunbookCall,
) -> Result<Rendered, Error> {
    let own = [
        ("argv", !req.argv.is_empty()),
        ("env", !req.env.is_empty()),
        ("secrets", !req.secrets.is_empty()),
        ("image", req.image.is_some()),
        ("stdin", req.stdin),
    ];
    if let Some((field, _)) = own.iter().find(|(_, given)| *given) {
        return Err(Error::Invalid(format!(
            "a run of runbook {} takes its argv, env, secrets, image and input from the runbook; the request cannot give {field}",
            call.name
        )));
    }
    let view = store::runbooks::latest(tx, org_id, &call.name)?
        .ok_or_else(|| Error::not_found(Object::Runbook, call.name.clone()))?;
    let spec = view.spec;
    let target = if req.target.is_empty() {
        match spec.targets.as_slice() {
            [only] => only.clone(),
            many => {
                return Err(Error::Invalid(format!(
                    "runbook {} runs on several targets ({}): name one",
                    spec.name,
                    many.join(", ")
                )));
            }
        }
    } else if spec.targets.contains(&req.target) {
        req.target.clone()
    } else {
        return Err(Error::Invalid(format!(
            "runbook {} does not run on target {} (it runs on {})",
            spec.name,
            req.target,
            spec.targets.join(", ")
        )));
    };
    let timeout_secs = match (req.timeout_secs, spec.timeout_secs) {
        (Some(t), Some(max)) if t > max => {
            return Err(Error::Invalid(format!(
                "timeout_secs {t} exceeds runbook {}'s timeout of {max}",
                spec.name
            )));
        }
        (Some(t), _) => Some(t),
        (None, rb) => rb,
    };
    let argv = render(&spec, &call.params).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(Rendered {
        // The rest (require_agent, the runbook call itself...) as asked.
        request: RunRequest {
            target,
            argv,
            env: BTreeMap::new(),
            secrets: spec.secrets.clone(),
            timeout_secs,
            image: spec.image.clone(),
            stdin: false,
            ..req.clone()
        },
        approval: spec.approval.clone(),
        name: spec.name,
        version: view.version,
    })
}

/// Stores `spec` as a new version if it differs from the latest one.
fn apply_one(tx: &Tx<'_>, user: &User, spec: RunbookSpec) -> Result<RunbookApplied, Error> {
    if let Some(rule) = &spec.approval {
        crate::approval::check_rule(rule)
            .map_err(|e| Error::Invalid(format!("runbook {}: {e}", spec.name)))?;
    }
    for name in &spec.targets {
        let (_, target) = store::targets::spec_by_name(tx, user.org_id, name)?
            .ok_or_else(|| Error::Invalid(format!("target {name} does not exist")))?;
        check_on_target(&spec, &target).map_err(Error::Invalid)?;
    }
    let latest = store::runbooks::latest(tx, user.org_id, &spec.name)?;
    let (outcome, version) = match &latest {
        // Compared as stored (JSON), so a spec re-read from the store is
        // equal to the one that was written.
        Some(v) if serde_json::to_value(&v.spec)? == serde_json::to_value(&spec)? => {
            return Ok(RunbookApplied {
                name: spec.name,
                version: v.version,
                outcome: Applied::Unchanged,
            });
        }
        Some(v) => (Applied::Updated, v.version + 1),
        None => (Applied::Created, 1),
    };
    let by = format!("{} ({})", user.name, user.actor());
    store::runbooks::insert(tx, user.org_id, &spec, version, now_ms(), &by)?;
    store::audit::append(
        tx,
        user.org_id,
        &user.actor(),
        "runbook.changed",
        &spec.name,
        json!({"version": version, "outcome": outcome.as_str(), "spec": spec}),
    )?;
    Ok(RunbookApplied {
        name: spec.name,
        version,
        outcome,
    })
}

impl Control {
    /// Declares or changes every runbook of `specs` in one transaction:
    /// all of them, or none when any one is refused (each refusal names
    /// its runbook). A runbook whose spec is unchanged keeps its version;
    /// a changed one gets the next; runbooks not listed are left alone.
    pub async fn apply_runbooks(
        &self,
        user: &User,
        specs: Vec<RunbookSpec>,
    ) -> Result<Vec<RunbookApplied>, Error> {
        user.require(Action::ManageRunbooks)?;
        if specs.is_empty() {
            return Err(Error::Invalid("the list declares no runbook".into()));
        }
        if specs.len() > MAX_RUNBOOKS {
            return Err(Error::Invalid(format!(
                "the list declares {} runbooks; the limit is {MAX_RUNBOOKS}",
                specs.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for spec in &specs {
            check_spec(spec)
                .map_err(|e| Error::Invalid(format!("runbook {:?}: {e}", spec.name)))?;
            if !seen.insert(spec.name.as_str()) {
                return Err(Error::Invalid(format!(
                    "runbook {:?} is declared twice",
                    spec.name
                )));
            }
        }
        let user = user.clone();
        self.db
            .write(move |tx| {
                specs
                    .into_iter()
                    .map(|spec| {
                        let name = spec.name.clone();
                        apply_one(tx, &user, spec).map_err(|e| match e {
                            Error::Invalid(why) => {
                                Error::Invalid(format!("runbook {name:?}: {why}"))
                            }
                            other => other,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// Stores an admin's certificate of runbook `name`'s latest version
    /// (made on their machine: `sealrun runbook trust`). It must certify
    /// exactly that version's definition: one applied since is certified
    /// again. Checked only for consistency here; agents check who signed.
    pub async fn certify_runbook(
        &self,
        user: &User,
        name: String,
        signed: Signed<RunbookCertificate>,
    ) -> Result<RunbookView, Error> {
        user.require(Action::ManageRunbooks)?;
        let (certificate, signer) = signed.open().map_err(|e| Error::Invalid(e.to_string()))?;
        let json = serde_json::to_string(&signed)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let org = store::approvals::org_name(tx, user.org_id)?;
                let view = store::runbooks::latest(tx, user.org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::Runbook, name.clone()))?;
                let c = &certificate;
                if c.org != org || c.runbook.name != name {
                    return Err(Error::Invalid(format!(
                        "this certificate is for runbook {} of org {}, not runbook {name} of org {org}",
                        c.runbook.name, c.org
                    )));
                }
                if c.runbook != view.spec {
                    return Err(Error::Conflict(format!(
                        "this certificate is for another definition of runbook {name} than its latest (version {}): it changed since; certify it again (sealrun runbook trust {name})",
                        view.version
                    )));
                }
                store::runbooks::set_certificate(tx, user.org_id, &name, view.version, &json)?;
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "runbook.certified",
                    &name,
                    json!({
                        "version": view.version,
                        "signer": signer.fingerprint(),
                        "allow_slack": c.runbook.allow_slack,
                        "expires_at_ms": c.expires_at_ms,
                    }),
                )?;
                store::runbooks::latest(tx, user.org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::Runbook, name))
            })
            .await
    }

    /// The latest version of each of the org's runbooks, by name.
    pub async fn list_runbooks(&self, user: &User) -> Result<Vec<RunbookView>, Error> {
        user.require(Action::ReadRunbooks)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::runbooks::list_latest(tx, org_id))
            .await
    }

    /// Runbook `name`: its latest version, or version `version`.
    pub async fn runbook(
        &self,
        user: &User,
        name: String,
        version: Option<u64>,
    ) -> Result<RunbookView, Error> {
        user.require(Action::ReadRunbooks)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| match version {
                None => store::runbooks::latest(tx, org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::Runbook, name)),
                Some(v) => store::runbooks::version(tx, org_id, &name, v)?.ok_or_else(|| {
                    let message = format!("runbook {name:?} has no version {v}");
                    Error::not_found_because(Object::Runbook, name, message)
                }),
            })
            .await
    }
}
