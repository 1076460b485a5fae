//! People: users (a name and one role; a user holds any number of tokens,
//! which act with its role) and groups of users (for approval rules).

use crate::admin::Role;
use serde::{Deserialize, Serialize};

/// `POST /v1/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// The user's name, unique in the org (1-128 printable characters).
    pub name: String,
    /// What its tokens (and linked Slack users) may do.
    pub role: Role,
}

/// A user, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// How many of its tokens work (unrevoked and unexpired).
    pub tokens: u32,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds it was disabled, if it was (its tokens were
    /// revoked then, and its Slack links stopped working).
    #[serde(default)]
    pub disabled_at_ms: Option<i64>,
    /// The groups it belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// An admin's certificate of its signing key (`sealrun user certify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::trust::Signed<crate::trust::UserCertificate>>,
}

/// `GET /v1/users/{name}/passkeys`: the passkeys a user registered in the
/// web console (public keys), for an admin to certify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyList {
    /// Oldest first.
    pub passkeys: Vec<crate::passkey::Passkey>,
}

/// `GET /v1/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// The org's users, by name.
    pub users: Vec<UserView>,
}

/// What `POST /v1/users/{name}/disable` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDisabled {
    /// The user, as it is now.
    #[serde(flatten)]
    pub user: UserView,
    /// How many of its tokens were revoked by disabling it.
    pub tokens_revoked: u32,
}

/// `POST /v1/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCreate {
    /// The group's name, unique in the org (an object name: letters,
    /// digits, `.`, `_`, `-`).
    pub name: String,
    /// Users to put in it at once (by name).
    #[serde(default)]
    pub members: Vec<String>,
}

/// `POST /v1/groups/{name}/members` and `.../members/remove`: users to add
/// to or remove from a group, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMembers {
    /// User names.
    pub users: Vec<String>,
}

/// A group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// Its members' user names, by name.
    pub members: Vec<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// `GET /v1/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    /// The org's groups, by name.
    pub groups: Vec<GroupView>,
}
