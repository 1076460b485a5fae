//! The roles a user holds (a leaf module: `admin` and `approval` both
//! name roles, and `admin` declares targets whose policy holds approval
//! rules).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a user token may do. Agents are a separate kind of principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manage tokens, pools, targets and agents; everything an operator can.
    Admin,
    /// Submit and cancel runs, set secrets, read runs and logs.
    Operator,
    /// Read runs, redacted logs and the audit trail; nothing else.
    Auditor,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Auditor]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
