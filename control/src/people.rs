//! People: users (a name and one role; tokens belong to them and act with
//! their role; Slack users link to them) and groups of users, which
//! approval rules name.
//!
//! Disabling a user revokes every token it holds in one transaction and
//! wakes every request that outlived its authentication (followed logs),
//! as revoking one token does; a Slack user linked to it is refused like an
//! unlinked one from then on.

use crate::caller::User;
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::service::Control;
use crate::store::{self, Tx, now_ms};
use sealrun_wire::admin::Role;
use sealrun_wire::names;
use sealrun_wire::people::{GroupCreate, GroupView, UserCreate, UserDisabled, UserView};
use sealrun_wire::trust::{Signed, SignerKey, UserCertificate};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Most users one request may add to or remove from a group.
const MAX_MEMBERS_PER_CHANGE: usize = 1000;

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

/// Audit subject of user `name`.
fn user_subject(name: &str) -> String {
    format!("user:{name}")
}

/// Audit subject of group `name`.
fn group_subject(name: &str) -> String {
    format!("group:{name}")
}

/// Creates user `name` with `role` in `by`'s org, audited as
/// `user.created`; [`Error::Conflict`] if the name is taken. Shared with
/// issuing a token for a user that does not exist yet.
pub(crate) fn create_user_in(
    tx: &Tx<'_>,
    by: &User,
    name: &str,
    role: Role,
    now: i64,
) -> Result<i64, Error> {
    let Some(id) = store::users::insert(tx, by.org_id, name, role, now)? else {
        return Err(Error::Conflict(format!("user {name:?} already exists")));
    };
    store::audit::append(
        tx,
        by.org_id,
        &by.actor(),
        "user.created",
        &user_subject(name),
        json!({"role": role.as_str(), "user": by.user}),
    )?;
    Ok(id)
}

/// The org's users `names` (each once, in the order given), or
/// [`Error::NotFound`] naming the first that does not exist.
fn user_ids(tx: &Tx<'_>, org_id: i64, names: &[String]) -> Result<Vec<(i64, String)>, Error> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let user = store::users::by_name(tx, org_id, name)?
            .ok_or_else(|| Error::not_found(Object::User, name.clone()))?;
        out.push((user.id, user.name));
    }
    Ok(out)
}

fn check_member_list(users: &[String]) -> Result<(), Error> {
    if users.len() > MAX_MEMBERS_PER_CHANGE {
        return Err(Error::Invalid(format!(
            "at most {MAX_MEMBERS_PER_CHANGE} users at a time"
        )));
    }
    for u in users {
        names::label("user name", u).map_err(invalid)?;
    }
    Ok(())
}

impl Control {
    /// Creates a user (it holds no token yet: issue one with
    /// [`Control::create_token`]).
    pub async fn create_user(&self, user: &User, req: UserCreate) -> Result<UserView, Error> {
        user.require(Action::ManageUsers)?;
        names::label("user name", &req.name).map_err(invalid)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let now = now_ms();
                create_user_in(tx, &user, &req.name, req.role, now)?;
                Ok(UserView {
                    name: req.name,
                    role: req.role,
                    tokens: 0,
                    created_at_ms: now,
                    disabled_at_ms: None,
                    groups: Vec::new(),
                    certificate: None,
                })
            })
            .await
    }

    /// The org's users, by name, with how many working tokens each holds.
    pub async fn list_users(&self, user: &User) -> Result<Vec<UserView>, Error> {
        user.require(Action::ManageUsers)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::users::list(tx, org_id, now_ms()))
            .await
    }

    /// Disables user `name`: every token it holds is revoked at once (the
    /// requests they hold open end), and Slack users linked to it are
    /// refused from now on. Disabling a disabled user changes nothing.
    /// Refused if it would leave the org without an enabled admin holding a
    /// working token.
    pub async fn disable_user(&self, user: &User, name: String) -> Result<UserDisabled, Error> {
        user.require(Action::ManageUsers)?;
        let user = user.clone();
        let cache = Arc::clone(&self.auth);
        self.db
            .write_then(
                move |tx| {
                    let now = now_ms();
                    let target = store::users::by_name(tx, user.org_id, &name)?
                        .ok_or_else(|| Error::not_found(Object::User, name.clone()))?;
                    let mut revoked = 0;
                    if target.disabled_ms.is_none() {
                        if target.role == Role::Admin
                            && store::users::admins_with_tokens(tx, user.org_id, target.id, now)?
                                == 0
                        {
                            return Err(Error::Conflict(format!(
                                "user {name:?} is the org's last admin with a working token: give another admin a token first"
                            )));
                        }
                        store::users::disable(tx, target.id, now)?;
                        revoked = store::tokens::revoke_user(tx, target.id, now)?;
                        store::audit::append(
                            tx,
                            user.org_id,
                            &user.actor(),
                            "user.disabled",
                            &user_subject(&target.name),
                            json!({"tokens_revoked": revoked, "user": user.user}),
                        )?;
                    }
                    let view = store::users::list(tx, user.org_id, now)?
                        .into_iter()
                        .find(|u| u.name == target.name)
                        .ok_or_else(|| Error::not_found(Object::User, name.clone()))?;
                    Ok(UserDisabled {
                        user: view,
                        tokens_revoked: u32::try_from(revoked).unwrap_or(u32::MAX),
                    })
                },
                // Empties the token cache and wakes followed logs, which
                // re-check their token and find it revoked.
                move |_| cache.invalidate(),
            )
            .await
    }

    /// Stores an admin's certificate of user `name`'s signing key, role and
    /// groups (made on the admin's machine: `sealrun user certify`). The
    /// control plane cannot tell whether the signer is trusted (agents
    /// decide, against the admin keys in their trust file); it refuses what
    /// cannot be right: a certificate for another org or user, whose
    /// signature does not verify with the key it names, or whose role or
    /// groups are not the user's now. Audited as `user.certified`.
    pub async fn certify_user(
        &self,
        user: &User,
        name: String,
        signed: Signed<UserCertificate>,
    ) -> Result<UserView, Error> {
        user.require(Action::ManageUsers)?;
        let (c, signer) = signed.open().map_err(invalid)?;
        let json = serde_json::to_string(&signed)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let now = now_ms();
                let org = store::approvals::org_name(tx, user.org_id)?;
                if c.org != org || c.user != name {
                    return Err(Error::Invalid(format!(
                        "this certificate is for user {} of org {}, not user {name} of org {org}",
                        c.user, c.org
                    )));
                }
                let row = store::users::by_name(tx, user.org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::User, name.clone()))?;
                if row.disabled_ms.is_some() {
                    return Err(Error::Conflict(format!("user {name:?} is disabled")));
                }
                let groups = store::users::groups_of(tx, row.id)?;
                let mut certified = c.groups.clone();
                certified.sort();
                if c.role != row.role || certified != groups {
                    return Err(Error::Conflict(format!(
                        "this certificate says role {} and groups [{}], but user {name} has role {} and groups [{}] now: certify it again",
                        c.role,
                        c.groups.join(", "),
                        row.role,
                        groups.join(", ")
                    )));
                }
                let key = SignerKey::parse(&c.public_key).map_err(invalid)?;
                store::users::set_certificate(tx, row.id, &json)?;
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "user.certified",
                    &user_subject(&name),
                    json!({
                        "key": key.fingerprint(),
                        "role": c.role.as_str(),
                        "groups": c.groups,
                        "signer": signer.fingerprint(),
                        "expires_at_ms": c.expires_at_ms,
                        "user": user.user,
                    }),
                )?;
                store::users::list(tx, user.org_id, now)?
                    .into_iter()
                    .find(|u| u.name == name)
                    .ok_or_else(|| Error::not_found(Object::User, name.clone()))
            })
            .await
    }

    /// Creates group `req.name` with members `req.members` (existing users).
    pub async fn create_group(&self, user: &User, req: GroupCreate) -> Result<GroupView, Error> {
        user.require(Action::ManageUsers)?;
        names::object("group", &req.name).map_err(invalid)?;
        check_member_list(&req.members)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let now = now_ms();
                let members = user_ids(tx, user.org_id, &req.members)?;
                let Some(group_id) = store::users::insert_group(tx, user.org_id, &req.name, now)?
                else {
                    return Err(Error::Conflict(format!(
                        "group {:?} already exists",
                        req.name
                    )));
                };
                for (id, _) in &members {
                    store::users::add_member(tx, group_id, *id)?;
                }
                let members = store::users::members(tx, group_id)?;
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "group.created",
                    &group_subject(&req.name),
                    json!({"members": members, "user": user.user}),
                )?;
                Ok(GroupView {
                    name: req.name,
                    members,
                    created_at_ms: now,
                })
            })
            .await
    }

    /// The org's groups, by name, with their members.
    pub async fn list_groups(&self, user: &User) -> Result<Vec<GroupView>, Error> {
        user.require(Action::ManageUsers)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::users::list_groups(tx, org_id))
            .await
    }

    /// Group `name`, with its members.
    pub async fn group(&self, user: &User, name: String) -> Result<GroupView, Error> {
        user.require(Action::ManageUsers)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| {
                store::users::list_groups(tx, org_id)?
                    .into_iter()
                    .find(|g| g.name == name)
                    .ok_or_else(|| Error::not_found(Object::Group, name))
            })
            .await
    }

    /// Adds `users` to group `name` (those already in it stay, once).
    pub async fn add_group_members(
        &self,
        user: &User,
        name: String,
        users: Vec<String>,
    ) -> Result<GroupView, Error> {
        self.change_members(user, name, users, true).await
    }

    /// Removes `users` from group `name` (those not in it are ignored, but
    /// each must be a user of the org).
    pub async fn remove_group_members(
        &self,
        user: &User,
        name: String,
        users: Vec<String>,
    ) -> Result<GroupView, Error> {
        self.change_members(user, name, users, false).await
    }

    async fn change_members(
        &self,
        user: &User,
        name: String,
        users: Vec<String>,
        add: bool,
    ) -> Result<GroupView, Error> {
        user.require(Action::ManageUsers)?;
        if users.is_empty() {
            return Err(Error::Invalid("name at least one user".into()));
        }
        check_member_list(&users)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let group_id = store::users::group_id(tx, user.org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::Group, name.clone()))?;
                let mut changed = Vec::new();
                for (id, member) in user_ids(tx, user.org_id, &users)? {
                    let did = if add {
                        store::users::add_member(tx, group_id, id)?
                    } else {
                        store::users::remove_member(tx, group_id, id)?
                    };
                    if did {
                        changed.push(member);
                    }
                }
                let members = store::users::members(tx, group_id)?;
                if !changed.is_empty() {
                    let (added, removed) = if add {
                        (changed, Vec::new())
                    } else {
                        (Vec::new(), changed)
                    };
                    store::audit::append(
                        tx,
                        user.org_id,
                        &user.actor(),
                        "group.members_changed",
                        &group_subject(&name),
                        json!({"added": added, "removed": removed, "members": members, "user": user.user}),
                    )?;
                }
                let created_at_ms = store::users::list_groups(tx, user.org_id)?
                    .into_iter()
                    .find(|g| g.name == name)
                    .map_or(0, |g| g.created_at_ms);
                Ok(GroupView {
                    name,
                    members,
                    created_at_ms,
                })
            })
            .await
    }

    /// Deletes group `name` (its members stay users).
    pub async fn delete_group(&self, user: &User, name: String) -> Result<(), Error> {
        user.require(Action::ManageUsers)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let group_id = store::users::group_id(tx, user.org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::Group, name.clone()))?;
                let members = store::users::members(tx, group_id)?;
                store::users::delete_group(tx, group_id)?;
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "group.deleted",
                    &group_subject(&name),
                    json!({"members": members, "user": user.user}),
                )?;
                Ok(())
            })
            .await
    }
}
