//! The audit trail as users read it: pages and a full re-verification.

use crate::caller::User;
use crate::error::Error;
use crate::permissions::Action;
use crate::service::Control;
use crate::store;
use sealrun_wire::audit::{AuditPage, AuditVerification};
use serde_json::Value;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

impl Control {
    /// Entries with `seq > after`, at most `limit` (default 100, at most
    /// 1000), in order.
    pub async fn audit_page(
        &self,
        user: &User,
        after: u64,
        limit: Option<u32>,
    ) -> Result<AuditPage, Error> {
        user.require(Action::ReadAudit)?;
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let org_id = user.org_id;
        let entries = self
            .db
            .read(move |tx| store::audit::page(tx, org_id, after, limit))
            .await?;
        let next_after = entries.last().map_or(after, |e| e.seq);
        Ok(AuditPage {
            entries,
            next_after,
        })
    }

    /// Re-checks the org's whole chain.
    pub async fn audit_verify(&self, user: &User) -> Result<AuditVerification, Error> {
        user.require(Action::ReadAudit)?;
        let org_id = user.org_id;
        let verifier = self
            .db
            .read(move |tx| store::audit::verify(tx, org_id))
            .await?;
        Ok(verifier.finish())
    }
}

/// An entry about something refused, to append outside any other change.
pub(crate) struct Refused {
    pub(crate) org_id: i64,
    pub(crate) actor: String,
    pub(crate) action: &'static str,
    pub(crate) subject: String,
    pub(crate) detail: Value,
}

impl Control {
    /// Appends an entry about a refused request. A failure to write it is
    /// logged, not answered: the request is refused either way.
    pub(crate) async fn audit_refusal(&self, entry: Refused) {
        let action = entry.action;
        let written = self
            .db
            .write(move |tx| {
                store::audit::append(
                    tx,
                    entry.org_id,
                    &entry.actor,
                    entry.action,
                    &entry.subject,
                    entry.detail,
                )
                .map(drop)
            })
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, action, "cannot audit a refused request");
        }
    }
}
