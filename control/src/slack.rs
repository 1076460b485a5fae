//! Slack as the domain sees it: which workspaces (with their sealed signing
//! secrets) and which users are linked to an org, and what their refused
//! requests leave in the audit trail. The HTTP side (signatures, parsing,
//! messages, `response_url`) is the `api` crate's Slack adapter.

use crate::audit::Refused;
use crate::caller::{Member, User};
use crate::error::{Error, Object};
use crate::people::create_user_in;
use crate::permissions::Action;
use crate::service::Control;
use crate::slack_keys::Workspace;
use crate::store::{self, now_ms};
use sealrun_wire::names;
use sealrun_wire::slack::{UserLink, UserView, WorkspaceView};
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Longest a verified request is remembered (its replay window, however
/// the adapter sets it, is shorter).
const MAX_REMEMBERED_MS: i64 = 3600 * 1000;

/// A run result owed to Slack: posted to the slash command's
/// `response_url` once the run ends, kept in the store until then (or
/// until the URL expires), so that a restart of the control plane does not
/// lose it.
pub struct SlackNotice {
    /// The run.
    pub run_id: String,
    /// Where to post (a credential for the channel: never logged).
    pub response_url: Zeroizing<String>,
    /// Unix milliseconds after which Slack no longer honours the URL.
    pub expires_at_ms: i64,
    /// Who submitted the run, to read it as.
    pub member: Member,
}

impl std::fmt::Debug for SlackNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackNotice")
            .field("run_id", &self.run_id)
            .field("response_url", &"***")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("member", &self.member)
            .finish()
    }
}

/// A Slack id (team `T...`/`E...`, user `U...`/`W...`): 2-32 uppercase
/// letters and digits, starting with a letter.
pub fn check_slack_id(kind: &str, id: &str) -> Result<(), Error> {
    let ok = (2..=32).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid Slack {kind} id {id:?}: expected 2-32 uppercase letters and digits, e.g. T0123ABCD"
        )))
    }
}

/// A signing secret as Slack issues them (32 hex digits today); anything
/// printable, without spaces, of a sensible length is accepted.
pub(crate) fn check_signing_secret(secret: &str) -> Result<(), Error> {
    let ok = (16..=256).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        // Never echo the value.
        Err(Error::Invalid(
            "invalid signing secret: expected 16-256 printable characters without spaces (Slack app > Basic Information > Signing Secret)".into(),
        ))
    }
}

fn not_linked(team_id: &str) -> Error {
    Error::not_found(Object::SlackWorkspace, team_id)
}

impl Control {
    /// Links workspace `team_id` to the user's org, or replaces its signing
    /// secret (sealed before it is stored; never returned). Other orgs may
    /// link the same workspace, each with its own Slack app (and signing
    /// secret), so linking says nothing about them; only a signing secret
    /// another org of the team already uses is refused (which tells that
    /// only to someone who holds it), since a request it signs could not
    /// be told apart.
    pub async fn link_slack_workspace(
        &self,
        user: &User,
        team_id: String,
        signing_secret: Zeroizing<String>,
    ) -> Result<WorkspaceView, Error> {
        user.require(Action::ManageSlack)?;
        check_slack_id("team", &team_id)?;
        check_signing_secret(&signing_secret)?;
        let sealed = self.slack.seal(&team_id, signing_secret.as_bytes())?;
        let plain = Zeroizing::new(signing_secret.as_bytes().to_vec());
        drop(signing_secret);
        let user = user.clone();
        let keys = Arc::clone(&self.slack);
        let invalidate = Arc::clone(&self.slack);
        self.db
            .write_then(
                move |tx| {
                    let now = now_ms();
                    for (org, other) in store::slack::workspace_secrets(tx, &team_id)? {
                        if org != user.org_id && keys.open_secret(&team_id, &other)?.ct_eq(&plain).into() {
                            return Err(Error::Conflict(format!(
                                "this signing secret is already in use for Slack team {team_id}: link the workspace with the signing secret of this org's own Slack app"
                            )));
                        }
                    }
                    drop(plain);
                    let existing = store::slack::workspace_created(tx, &team_id, user.org_id)?;
                    let created = match existing {
                        Some(created) => {
                            store::slack::update_workspace(tx, &team_id, user.org_id, &sealed, now)?;
                            created
                        }
                        None => {
                            store::slack::insert_workspace(tx, &team_id, user.org_id, &sealed, now)?;
                            now
                        }
                    };
                    store::audit::append(
                        tx,
                        user.org_id,
                        &user.actor(),
                        "slack.workspace_linked",
                        &format!("slack:{team_id}"),
                        json!({"replaced_secret": existing.is_some()}),
                    )?;
                    let approvals_channel =
                        store::slack::approvals_channel(tx, &team_id, user.org_id)?;
                    Ok(WorkspaceView {
                        team_id,
                        linked_at_ms: created,
                        updated_at_ms: now,
                        approvals_channel,
                    })
                },
                move |_| invalidate.invalidate(),
            )
            .await
    }

    /// The org's linked workspaces.
    pub async fn list_slack_workspaces(&self, user: &User) -> Result<Vec<WorkspaceView>, Error> {
        user.require(Action::ManageSlack)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::slack::list_workspaces(tx, org_id))
            .await
    }

    /// Unlinks workspace `team_id` and every user linked in it.
    pub async fn unlink_slack_workspace(&self, user: &User, team_id: String) -> Result<(), Error> {
        user.require(Action::ManageSlack)?;
        let user = user.clone();
        let keys = Arc::clone(&self.slack);
        self.db
            .write_then(
                move |tx| {
                    let users = store::slack::count_users(tx, &team_id, user.org_id)?;
                    if !store::slack::delete_workspace(tx, &team_id, user.org_id)? {
                        return Err(not_linked(&team_id));
                    }
                    store::audit::append(
                        tx,
                        user.org_id,
                        &user.actor(),
                        "slack.workspace_unlinked",
                        &format!("slack:{team_id}"),
                        json!({"users_unlinked": users}),
                    )?;
                    Ok(())
                },
                move |_| keys.invalidate(),
            )
            .await
    }

    /// Links Slack user `user_id` of a linked workspace to a sealrun user
    /// (`link.user`; or, as before users existed, user `link.name` with
    /// `link.role`, created if it does not exist), or moves the link to
    /// another user. The Slack user acts with that user's role, as that
    /// user.
    pub async fn link_slack_user(
        &self,
        user: &User,
        team_id: String,
        user_id: String,
        link: UserLink,
    ) -> Result<UserView, Error> {
        user.require(Action::ManageSlack)?;
        check_slack_id("team", &team_id)?;
        check_slack_id("user", &user_id)?;
        let (account, legacy_role) = match (link.user, link.name, link.role) {
            (Some(account), None, None) => (account, None),
            (None, Some(name), Some(role)) => (name, Some(role)),
            _ => {
                return Err(Error::Invalid(
                    "link the Slack user to a sealrun user: give user (or, as before, name and role)".into(),
                ));
            }
        };
        names::label("user name", &account).map_err(|e| Error::Invalid(e.to_string()))?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                if store::slack::workspace_created(tx, &team_id, user.org_id)?.is_none() {
                    return Err(not_linked(&team_id));
                }
                let now = now_ms();
                let (sealrun_id, role) = match (
                    store::users::by_name(tx, user.org_id, &account)?,
                    legacy_role,
                ) {
                    (Some(u), _) if u.disabled_ms.is_some() => {
                        return Err(Error::Conflict(format!(
                            "user {account:?} is disabled: a Slack user linked to it could do nothing"
                        )));
                    }
                    (Some(u), Some(role)) if u.role != role => {
                        return Err(Error::Conflict(format!(
                            "user {account:?} has role {}, not {role}: link the Slack user to it with user {account:?}",
                            u.role
                        )));
                    }
                    (Some(u), _) => (u.id, u.role),
                    (None, Some(role)) => (create_user_in(tx, &user, &account, role, now)?, role),
                    (None, None) => return Err(Error::not_found(Object::User, account)),
                };
                store::slack::upsert_user(tx, &team_id, user.org_id, &user_id, sealrun_id, now)?;
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "slack.user_linked",
                    &format!("slack:{team_id}/{user_id}"),
                    json!({"name": account, "role": role.as_str(), "user": user.user}),
                )?;
                Ok(UserView {
                    team_id,
                    user_id,
                    name: account,
                    role,
                    updated_at_ms: now,
                    disabled: false,
                })
            })
            .await
    }

    /// The users linked in the org's workspaces.
    pub async fn list_slack_users(&self, user: &User) -> Result<Vec<UserView>, Error> {
        user.require(Action::ManageSlack)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::slack::list_users(tx, org_id))
            .await
    }

    /// Unlinks Slack user `user_id` of workspace `team_id`.
    pub async fn unlink_slack_user(
        &self,
        user: &User,
        team_id: String,
        user_id: String,
    ) -> Result<(), Error> {
        user.require(Action::ManageSlack)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                if !store::slack::delete_user(tx, &team_id, &user_id, user.org_id)? {
                    return Err(Error::not_found_because(
                        Object::SlackUser,
                        format!("{team_id}/{user_id}"),
                        format!("Slack user {user_id} of team {team_id} is not linked to this org"),
                    ));
                }
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "slack.user_unlinked",
                    &format!("slack:{team_id}/{user_id}"),
                    json!({"user": user.user}),
                )?;
                Ok(())
            })
            .await
    }

    /// The links of workspace `team_id` (one per org that linked it, each
    /// with its signing secret opened, to verify a request): none if no org
    /// did.
    pub async fn slack_workspaces(&self, team_id: &str) -> Result<Vec<Workspace>, Error> {
        let generation = match self.slack.cached(team_id) {
            Ok(w) => return Ok(w),
            Err(generation) => generation,
        };
        let team = team_id.to_owned();
        let rows = self
            .db
            .read(move |tx| store::slack::workspace_secrets(tx, &team))
            .await?;
        let mut links = Vec::with_capacity(rows.len());
        for (org_id, sealed) in rows {
            links.push(Workspace {
                team_id: team_id.to_owned(),
                org_id,
                secret: Arc::new(self.slack.open_secret(team_id, &sealed)?),
            });
        }
        self.slack.remember(generation, team_id, links.clone());
        Ok(links)
    }

    /// Slack user `user_id` of the verified `workspace` as a member of its
    /// org, if linked to a user that is not disabled: that user (its id and
    /// role), submitter `slack:<team>/<user> (<name>)`, audit actor
    /// `slack:<team>/<user>`.
    pub async fn slack_member(
        &self,
        workspace: &Workspace,
        user_id: &str,
    ) -> Result<Option<Member>, Error> {
        let team_id = workspace.team_id();
        let (team, org, user) = (team_id.to_owned(), workspace.org_id, user_id.to_owned());
        let linked = self
            .db
            .read(move |tx| store::slack::user(tx, &team, org, &user))
            .await?;
        Ok(linked.map(|(id, name, role)| {
            Member::slack(
                workspace.org_id,
                role,
                id,
                format!("slack:{team_id}/{user_id} ({name})"),
                format!("slack:{team_id}/{user_id}"),
            )
        }))
    }

    /// Audits a refused Slack request signature of a linked team (the caller
    /// throttles).
    pub async fn audit_slack_signature_refused(
        &self,
        workspace: &Workspace,
        reason: &str,
        path: &str,
    ) {
        self.audit_refusal(Refused {
            org_id: workspace.org_id,
            actor: "slack".into(),
            action: "auth.failed",
            subject: format!("slack:{}", workspace.team_id),
            detail: json!({"reason": reason, "path": path}),
        })
        .await;
    }

    /// Audits a refused slash command of Slack user `user_id` of the
    /// verified `workspace` (nothing else happened); `verb` is the command's
    /// first word only.
    pub async fn audit_slack_command_refused(
        &self,
        workspace: &Workspace,
        user_id: &str,
        reason: &str,
        verb: &str,
    ) {
        let actor = format!("slack:{}/{user_id}", workspace.team_id);
        self.audit_refusal(Refused {
            org_id: workspace.org_id,
            actor: actor.clone(),
            action: "slack.command_refused",
            subject: actor,
            detail: json!({"reason": reason, "command": verb}),
        })
        .await;
    }
}

impl Control {
    /// Whether a request of `workspace` (verified: only the domain makes a
    /// [`Workspace`]) whose signature is `mac` is seen for the first time;
    /// it is remembered until `until_ms` (when its timestamp leaves the
    /// replay window), so a captured request replayed within the window
    /// is refused instead of acted on twice. Kept in the store, so a
    /// restart does not forget it.
    pub async fn slack_accept_once(
        &self,
        workspace: &Workspace,
        mac: [u8; 32],
        until_ms: i64,
    ) -> Result<bool, Error> {
        let _verified = workspace;
        let now = now_ms();
        let until = until_ms.clamp(now, now.saturating_add(MAX_REMEMBERED_MS));
        self.db
            .write(move |tx| store::slack::accept_once(tx, &mac, until, now))
            .await
    }

    /// Records that run `run_id`, submitted by `who` from Slack, owes its
    /// result to `response_url` until `expires_at_ms`.
    pub async fn slack_notice_owed(
        &self,
        who: &Member,
        run_id: &str,
        response_url: &str,
        expires_at_ms: i64,
    ) -> Result<(), Error> {
        let notice = store::slack::Notice {
            run_id: run_id.to_owned(),
            org_id: who.org_id,
            role: who.role,
            user_id: who.user_id,
            submitter: who.name.clone(),
            actor: who.actor.clone(),
            response_url: self.slack.seal_response_url(run_id, response_url)?,
            expires_ms: expires_at_ms,
        };
        let replica = self.replica.clone();
        self.db
            .write(move |tx| {
                let hold = store::slack::Hold::from_now(&replica);
                store::slack::insert_notice(tx, &notice, hold)
            })
            .await
    }

    /// Renews this replica's hold on the run results it waits for, and
    /// takes the ones owed to Slack that no live replica holds (after a
    /// restart, or a replica's death): those newly taken, their URLs
    /// opened; those whose URL expired are forgotten. Called every
    /// few seconds while the server runs (the Slack adapter's renewal).
    pub async fn slack_notices_owed(&self) -> Result<Vec<SlackNotice>, Error> {
        let replica = self.replica.clone();
        let stored = self
            .db
            .write(move |tx| {
                let hold = store::slack::Hold::from_now(&replica);
                store::slack::claim_notices(tx, hold)
            })
            .await?;
        let mut owed = Vec::with_capacity(stored.len());
        for n in stored {
            let response_url = match self.slack.open_response_url(&n.run_id, &n.response_url) {
                Ok(url) => url,
                // Logged where it happened; the others can still be sent.
                Err(_) => continue,
            };
            owed.push(SlackNotice {
                member: Member::slack(n.org_id, n.role, n.user_id, n.submitter, n.actor),
                run_id: n.run_id,
                response_url,
                expires_at_ms: n.expires_ms,
            });
        }
        Ok(owed)
    }

    /// Lets go of the rows of Slack's outbox this replica holds (at a
    /// graceful stop, once its Slack tasks ended): another replica, or this
    /// one restarted, takes them at once.
    pub async fn release_slack_holds(&self) -> Result<(), Error> {
        let replica = self.replica.clone();
        self.db
            .write(move |tx| store::slack::release_holds(tx, &replica))
            .await
    }

    /// Forgets run `run_id`'s owed result (posted, refused for good by
    /// Slack, or given up).
    pub async fn slack_notice_settled(&self, run_id: &str) -> Result<(), Error> {
        let run_id = run_id.to_owned();
        self.db
            .write(move |tx| store::slack::delete_notice(tx, &run_id))
            .await
    }
}
