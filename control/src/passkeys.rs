//! Passkeys: people register them in the web console; an admin certifies
//! them into the person's certificate (`sealrun user certify --passkey`),
//! after comparing fingerprints out of band, as for signing keys. Only then
//! do approvals asserted with one count, with agents that check
//! signatures: a row here proves nothing by itself.

use crate::caller::User;
use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::service::Control;
use crate::store::{self, now_ms};
use sealrun_wire::passkey::Passkey;
use sealrun_wire::trust::{Signed, UserCertificate};
use serde_json::json;

/// A passkey of the caller's, and whether their certificate names it.
#[derive(Clone, Debug)]
pub struct OwnPasskey {
    /// The passkey.
    pub passkey: Passkey,
    /// Whether an admin certified it (it is in the user's certificate).
    pub certified: bool,
}

impl Control {
    /// Registers `passkey` as the caller's own (any role: it is theirs).
    /// Audited `passkey.registered` with its fingerprint.
    pub async fn register_passkey(&self, user: &User, passkey: Passkey) -> Result<(), Error> {
        let user = user.clone();
        self.db
            .write(move |tx| {
                if !store::passkeys::insert(tx, user.user_id, &passkey, now_ms())? {
                    return Err(Error::Conflict("this passkey is registered already".into()));
                }
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "passkey.registered",
                    &format!("user:{}", user.user),
                    json!({"fingerprint": passkey.fingerprint(), "origin": passkey.origin}),
                )?;
                Ok(())
            })
            .await
    }

    /// The caller's passkeys, each with whether it is certified.
    pub async fn own_passkeys(&self, user: &User) -> Result<Vec<OwnPasskey>, Error> {
        let user_id = user.user_id;
        self.db
            .read(move |tx| {
                let certified = certified_passkeys(tx, user_id)?;
                Ok(store::passkeys::of_user(tx, user_id)?
                    .into_iter()
                    .map(|passkey| OwnPasskey {
                        certified: certified.contains(&passkey),
                        passkey,
                    })
                    .collect())
            })
            .await
    }

    /// The passkeys user `name` registered, for an admin to certify.
    pub async fn user_passkeys(&self, user: &User, name: String) -> Result<Vec<Passkey>, Error> {
        user.require(Action::ManageUsers)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| {
                let row = store::users::by_name(tx, org_id, &name)?
                    .ok_or_else(|| Error::not_found(Object::User, name.clone()))?;
                store::passkeys::of_user(tx, row.id)
            })
            .await
    }
}

/// The passkeys user `user_id`'s certificate names (none without one). Its
/// signature was checked when it was stored; whose it is, agents judge.
pub(crate) fn certified_passkeys(
    tx: &crate::store::Tx<'_>,
    user_id: i64,
) -> Result<Vec<Passkey>, Error> {
    let Some(json) = store::users::certificate(tx, user_id)? else {
        return Ok(Vec::new());
    };
    let signed: Signed<UserCertificate> = serde_json::from_str(&json)?;
    Ok(signed.claimed().map(|c| c.passkeys).unwrap_or_default())
}
