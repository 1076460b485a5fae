//! The one permission table: which role may do which [`Action`].
//!
//! Every check in the control plane (HTTP routes, Slack commands) goes
//! through [`Action::allows`]; the role tables in `ARCHITECTURE.md`,
//! `api/README.md` and `docs/openapi.yaml` are rendered from [`TABLE`] by
//! [`markdown_table`] and checked by a test, so they cannot drift from what
//! is enforced.

use crate::error::Error;
use sealrun_wire::admin::Role;

/// Something a user token (or a linked Slack user) asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Issue, list and revoke user tokens.
    ManageTokens,
    /// Create, list and disable users; create, change and delete groups.
    ManageUsers,
    /// Create and list agent pools.
    ManagePools,
    /// Issue and list enrollment tokens.
    EnrollAgents,
    /// Revoke agents.
    ManageAgents,
    /// List agents: online, version, targets, last seen.
    ReadAgents,
    /// Declare, replace and delete targets.
    ChangeTargets,
    /// Move a target to another agent key (dropping what the old key sealed).
    RekeyTargets,
    /// Read targets and their public keys.
    ReadTargets,
    /// Set and delete sealed secrets.
    ManageSecrets,
    /// List a target's secrets: names, versions and key ids only (never a
    /// value or its ciphertext).
    ReadSecrets,
    /// Submit runs.
    SubmitRuns,
    /// Cancel runs.
    CancelRuns,
    /// Read runs.
    ReadRuns,
    /// Read runs' redacted output.
    ReadLogs,
    /// Read and verify the audit trail.
    ReadAudit,
    /// Link and unlink Slack workspaces and users.
    ManageSlack,
    /// Approve or reject runs waiting for approval (never one's own).
    ApproveRuns,
    /// Read approval requests: the full spec of a run waiting for approval.
    ReadApprovals,
    /// Declare and change runbooks (a change is a new version).
    ManageRunbooks,
    /// Read runbooks and their versions.
    ReadRunbooks,
}

/// One row of the table.
#[derive(Debug)]
pub struct Permission {
    /// The action.
    pub action: Action,
    /// The roles that may do it.
    pub roles: &'static [Role],
    /// The verb phrase refusals use: "a token with role X cannot ...".
    pub verb: &'static str,
    /// The HTTP routes and Slack commands that need it (for the docs).
    pub surfaces: &'static str,
}

const ADMIN: &[Role] = &[Role::Admin];
const ADMIN_OPERATOR: &[Role] = &[Role::Admin, Role::Operator];
const ADMIN_AUDITOR: &[Role] = &[Role::Admin, Role::Auditor];
const EVERY_ROLE: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];

/// The permission table. The order is the order of the rendered docs.
pub const TABLE: &[Permission] = &[
    Permission {
        action: Action::ManageTokens,
        roles: ADMIN,
        verb: "manage tokens",
        surfaces: "`POST/GET /v1/tokens`, `DELETE /v1/tokens/{id}`",
    },
    Permission {
        action: Action::ManageUsers,
        roles: ADMIN,
        verb: "manage users and groups",
        surfaces: "`POST/GET /v1/users`, `POST /v1/users/{user}/disable`, `PUT /v1/users/{user}/certificate`, `GET /v1/users/{user}/passkeys`, `POST/GET /v1/groups`, `GET/DELETE /v1/groups/{group}`, `POST /v1/groups/{group}/add`, `POST /v1/groups/{group}/remove`",
    },
    Permission {
        action: Action::ManagePools,
        roles: ADMIN,
        verb: "manage pools",
        surfaces: "`POST/GET /v1/pools`",
    },
    Permission {
        action: Action::EnrollAgents,
        roles: ADMIN,
        verb: "enroll agents",
        surfaces: "`POST/GET /v1/pools/{pool}/enrollment-tokens`",
    },
    Permission {
        action: Action::ManageAgents,
        roles: ADMIN,
        verb: "revoke agents",
        surfaces: "`DELETE /v1/agents/{id}`",
    },
    Permission {
        action: Action::ReadAgents,
        roles: EVERY_ROLE,
        verb: "read agents",
        surfaces: "`GET /v1/agents`, console `/ui/agents`",
    },
    Permission {
        action: Action::ChangeTargets,
        roles: ADMIN,
        verb: "change targets",
        surfaces: "`PUT /v1/targets`, `PUT/DELETE /v1/targets/{name}`",
    },
    Permission {
        action: Action::RekeyTargets,
        roles: ADMIN,
        verb: "re-key and certify targets",
        surfaces: "`POST /v1/targets/{name}/rekey`, `PUT /v1/targets/{name}/certificate`",
    },
    Permission {
        action: Action::ReadTargets,
        roles: EVERY_ROLE,
        verb: "read targets",
        surfaces: "`GET /v1/targets`, `GET /v1/targets/{name}`, `GET /v1/targets/{name}/public-key`, console `/ui/targets`",
    },
    Permission {
        action: Action::ManageSecrets,
        roles: ADMIN_OPERATOR,
        verb: "manage secrets",
        surfaces: "`PUT/DELETE /v1/targets/{name}/secrets/{secret}`",
    },
    Permission {
        action: Action::ReadSecrets,
        roles: EVERY_ROLE,
        verb: "list secrets (names, versions, key ids)",
        surfaces: "`GET /v1/targets/{name}/secrets`, console `/ui/targets/{name}`",
    },
    Permission {
        action: Action::SubmitRuns,
        roles: ADMIN_OPERATOR,
        verb: "submit runs",
        surfaces: "`POST /v1/runs`, `PUT /v1/runs/{id}/stdin` (the run's submitter only), Slack `/sealrun run`",
    },
    Permission {
        action: Action::CancelRuns,
        roles: ADMIN_OPERATOR,
        verb: "cancel runs",
        surfaces: "`POST /v1/runs/{id}/cancel`, Slack `/sealrun cancel`, console Cancel button",
    },
    Permission {
        action: Action::ReadRuns,
        roles: EVERY_ROLE,
        verb: "read runs",
        surfaces: "`GET /v1/runs`, `GET /v1/runs/{id}`, Slack `/sealrun status`, console `/ui/runs`",
    },
    Permission {
        action: Action::ReadLogs,
        roles: EVERY_ROLE,
        verb: "read logs",
        surfaces: "`GET /v1/runs/{id}/logs`, Slack `/sealrun logs`, console `/ui/runs/{id}` (live log, download)",
    },
    Permission {
        action: Action::ReadAudit,
        roles: ADMIN_AUDITOR,
        verb: "read the audit trail",
        surfaces: "`GET /v1/audit`, `GET /v1/audit/verify`, console `/ui/audit` (and its JSONL export)",
    },
    Permission {
        action: Action::ManageSlack,
        roles: ADMIN,
        verb: "manage the Slack integration",
        surfaces: "`GET /v1/integrations/slack/workspaces`, `PUT/DELETE /v1/integrations/slack/workspaces/{team_id}`, `PUT/DELETE /v1/integrations/slack/workspaces/{team_id}/approvals`, `GET /v1/integrations/slack/users`, `PUT/DELETE /v1/integrations/slack/users/{team_id}/{user_id}`",
    },
    Permission {
        action: Action::ApproveRuns,
        roles: ADMIN_OPERATOR,
        verb: "approve runs",
        surfaces: "`POST /v1/approvals/{run_id}/approve`, `POST /v1/approvals/{run_id}/reject`, Slack Approve / Reject buttons, console Reject button",
    },
    Permission {
        action: Action::ReadApprovals,
        roles: EVERY_ROLE,
        verb: "read approval requests",
        surfaces: "`GET /v1/approvals`, `GET /v1/approvals/{run_id}`, console `/ui/approvals`",
    },
    Permission {
        action: Action::ManageRunbooks,
        roles: ADMIN,
        verb: "manage runbooks",
        surfaces: "`PUT /v1/runbooks`, `PUT /v1/runbooks/{name}/certificate`",
    },
    Permission {
        action: Action::ReadRunbooks,
        roles: EVERY_ROLE,
        verb: "read runbooks",
        surfaces: "`GET /v1/runbooks`, `GET /v1/runbooks/{name}`, console `/ui/runbooks`",
    },
];

impl Action {
    /// Every action, in table order.
    pub fn all() -> impl Iterator<Item = Action> {
        TABLE.iter().map(|p| p.action)
    }

    /// Its row of [`TABLE`].
    pub fn permission(self) -> &'static Permission {
        // Every action has a row: `every_action_has_exactly_one_row` checks it.
        TABLE.iter().find(|p| p.action == self).unwrap_or(&TABLE[0])
    }

    /// Whether `role` may do it.
    pub fn allows(self, role: Role) -> bool {
        self.permission().roles.contains(&role)
    }

    /// `Ok` if `role` may do it, else [`Error::Forbidden`] saying so.
    pub fn check(self, role: Role) -> Result<(), Error> {
        if self.allows(role) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "a token with role {role} cannot {}",
                self.permission().verb
            )))
        }
    }
}

/// The roles, in the columns' order.
const COLUMNS: [Role; 3] = [Role::Admin, Role::Operator, Role::Auditor];

/// [`TABLE`] as a Markdown table, as the docs show it between
/// `<!-- permissions:begin -->` and `<!-- permissions:end -->`.
pub fn markdown_table() -> String {
    let mut out = String::from("| action | routes and commands | admin | operator | auditor |\n");
    out.push_str("|---|---|:-:|:-:|:-:|\n");
    for p in TABLE {
        let marks: Vec<&str> = COLUMNS
            .iter()
            .map(|r| if p.roles.contains(r) { "yes" } else { "-" })
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            p.verb,
            p.surfaces,
            marks.join(" | ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant. The `match` is exhaustive: a new `Action` does not
    /// compile until it is listed here, and then must have its row.
    fn every_variant() -> Vec<Action> {
        use Action::*;
        let all = [
            ManageTokens,
            ManageUsers,
            ManagePools,
            EnrollAgents,
            ManageAgents,
            ReadAgents,
            ChangeTargets,
            RekeyTargets,
            ReadTargets,
            ManageSecrets,
            ReadSecrets,
            SubmitRuns,
            CancelRuns,
            ReadRuns,
            ReadLogs,
            ReadAudit,
            ManageSlack,
            ApproveRuns,
            ReadApprovals,
            ManageRunbooks,
            ReadRunbooks,
        ];
        for a in all {
            match a {
                ManageTokens | ManageUsers | ManagePools | EnrollAgents | ManageAgents
                | ReadAgents | ChangeTargets | RekeyTargets | ReadTargets | ManageSecrets
                | ReadSecrets | SubmitRuns | CancelRuns | ReadRuns | ReadLogs | ReadAudit
                | ManageSlack | ManageRunbooks | ReadRunbooks | ApproveRuns | ReadApprovals => {}
            }
        }
        all.to_vec()
    }

    #[test]
    fn every_action_has_exactly_one_row() {
        let variants = every_variant();
        for a in &variants {
            let rows = TABLE.iter().filter(|p| p.action == *a).count();
            assert_eq!(rows, 1, "{a:?}");
            assert_eq!(a.permission().action, *a);
        }
        assert_eq!(TABLE.len(), variants.len());
    }

    #[test]
    fn a_refusal_names_the_role_and_the_action() {
        let err = Action::ManageTokens.check(Role::Operator).unwrap_err();
        assert_eq!(
            err,
            Error::Forbidden("a token with role operator cannot manage tokens".into())
        );
        assert!(Action::ManageTokens.check(Role::Admin).is_ok());
    }

    #[test]
    fn auditors_may_read_but_never_change_anything() {
        for p in TABLE {
            let writes = !matches!(
                p.action,
                Action::ReadRuns
                    | Action::ReadLogs
                    | Action::ReadAudit
                    | Action::ReadApprovals
                    | Action::ReadTargets
                    | Action::ReadSecrets
                    | Action::ReadRunbooks
                    | Action::ReadAgents
            );
            assert_eq!(
                p.action.allows(Role::Auditor),
                !writes,
                "{:?}: auditors may only read",
                p.action
            );
        }
    }

    #[test]
    fn the_markdown_table_has_a_row_per_action() {
        let table = markdown_table();
        assert_eq!(table.lines().count(), TABLE.len() + 2);
        assert!(table.contains(
            "| read the audit trail | `GET /v1/audit`, `GET /v1/audit/verify`, console `/ui/audit` (and its JSONL export) | yes | - | yes |"
        ));
    }
}
