//! Who is calling: the identities every domain operation takes.
//!
//! They are `#[non_exhaustive]`: only the domain makes them (from a verified
//! token, `Control::authenticate`, or a linked Slack user,
//! `Control::slack_member`), so an adapter cannot make up a caller.

use crate::error::Error;
use crate::permissions::Action;
use sealrun_wire::admin::Role;
use sealrun_wire::run::RunSource;

/// A person or program with a role in an org (a user token).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct User {
    /// The org's id.
    pub org_id: i64,
    /// The org's name.
    pub org: String,
    /// The id of the token presented.
    pub token_id: String,
    /// The token's name (its label).
    pub name: String,
    /// The id of the user the token belongs to: the person behind the
    /// request, whichever of its tokens it presents.
    pub user_id: i64,
    /// That user's name.
    pub user: String,
    /// The user's role (its tokens act with it).
    pub role: Role,
    /// When the token expires (Unix milliseconds), if it does.
    pub expires_at_ms: Option<i64>,
    /// The credential generation it was verified at (see
    /// `Control::revoked`).
    pub(crate) verified_at: u64,
}

impl User {
    /// `token:<id>`, as recorded in the audit trail.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }

    /// Refuses ([`Error::Forbidden`]) unless the user's role may do `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        action.check(self.role)
    }
}

/// An enrolled agent (an agent token).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Agent {
    /// The org's id.
    pub org_id: i64,
    /// The org's name.
    pub org: String,
    /// The agent's id.
    pub id: String,
    /// The agent's name.
    pub name: String,
    /// The pool it was enrolled into.
    pub pool_id: i64,
    /// Whether it has connected since it last deregistered.
    pub online: bool,
    /// Targets it serves (from its last connect).
    pub targets: Vec<i64>,
    /// The credential generation it was verified at.
    pub(crate) verified_at: u64,
}

impl Agent {
    /// `agent:<id>`, as recorded in the audit trail.
    pub fn actor(&self) -> String {
        format!("agent:{}", self.id)
    }
}

/// The holder of an enrollment token.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Enroller {
    /// The org's id.
    pub org_id: i64,
    /// The id of the token presented.
    pub token_id: String,
    /// The pool the token enrolls into.
    pub pool_id: i64,
    /// The pool's name.
    pub pool: String,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A user token.
    User(User),
    /// An agent token.
    Agent(Agent),
    /// An enrollment token.
    Enroller(Enroller),
}

impl Principal {
    /// The caller as a user, or [`Error::Forbidden`] naming what its token
    /// kind is for.
    pub fn into_user(self) -> Result<User, Error> {
        match self {
            Principal::User(u) => Ok(u),
            Principal::Agent(_) => Err(Error::Forbidden(
                "agent tokens can only call /v1/agent/* endpoints".into(),
            )),
            Principal::Enroller(_) => Err(Error::Forbidden(
                "enrollment tokens can only register agents".into(),
            )),
        }
    }

    /// The caller as an agent, or [`Error::Forbidden`].
    pub fn into_agent(self) -> Result<Agent, Error> {
        match self {
            Principal::Agent(a) => Ok(a),
            Principal::User(_) => Err(Error::Forbidden("this endpoint is for agents".into())),
            Principal::Enroller(_) => Err(Error::Forbidden(
                "enrollment tokens can only register agents: use the agent token it returned"
                    .into(),
            )),
        }
    }

    /// The caller as an enroller, or [`Error::Forbidden`].
    pub fn into_enroller(self) -> Result<Enroller, Error> {
        match self {
            Principal::Enroller(e) => Ok(e),
            _ => Err(Error::Forbidden(
                "registering an agent needs an enrollment token".into(),
            )),
        }
    }
}

/// The actor the control plane records for what it does on its own (lease
/// expiry, a run failed because its secret was deleted, an org created).
pub(crate) const SYSTEM: &str = "system";

/// Someone acting in an org through an adapter: a user token, or a Slack
/// user linked to the org. What runs record and the audit trail names.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Member {
    /// The org's id.
    pub org_id: i64,
    /// The role its permissions come from.
    pub role: Role,
    /// The sealrun user behind the request (a user token's user, or the
    /// user a Slack user is linked to): who a person is for self-approval
    /// and group rules, whichever token or Slack account they use. 0 only
    /// for a Slack notice owed since before users existed.
    pub user_id: i64,
    /// Shown as a run's `submitter`.
    pub name: String,
    /// Recorded as the audit trail's `actor`.
    pub actor: String,
    /// Where its runs come from: set by the domain from how the member was
    /// made (a user token through the API, or a linked Slack user), never
    /// taken from a request body.
    pub source: RunSource,
}

impl Member {
    /// A Slack user linked to org `org_id` as user `user_id`, with that
    /// user's `role`.
    pub(crate) fn slack(
        org_id: i64,
        role: Role,
        user_id: i64,
        name: String,
        actor: String,
    ) -> Member {
        Member {
            org_id,
            role,
            user_id,
            name,
            actor,
            source: RunSource::Slack,
        }
    }

    /// `user` acting through the sealrun CLI (which says so in a request
    /// header): informational, as any API client could say the same, but it
    /// can never make a run look as if it came from Slack.
    pub fn via_cli(user: &User) -> Member {
        Member {
            source: RunSource::Cli,
            ..Member::from(user)
        }
    }

    /// Refuses ([`Error::Forbidden`]) unless the member's role may do `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        action.check(self.role)
    }
}

impl From<&User> for Member {
    fn from(user: &User) -> Member {
        Member {
            org_id: user.org_id,
            role: user.role,
            user_id: user.user_id,
            // The person, not the token's label: runs show who submitted.
            name: user.user.clone(),
            actor: user.actor(),
            source: RunSource::Api,
        }
    }
}
