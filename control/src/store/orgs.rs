//! Rows of `orgs`.

use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;

/// How many orgs exist.
/// The distinct signers (`ed25519:...`) of the org's target, user and
/// runbook certificates.
pub(crate) fn certifiers(tx: &Tx<'_>, org_id: i64) -> Result<Vec<String>, Error> {
    // The signer is read here, not with the database's JSON functions,
    // which differ between the backends.
    #[derive(serde::Deserialize)]
    struct Signed {
        signer: Option<String>,
    }
    let mut stmt = tx.prepare_cached(
        "SELECT certificate FROM targets WHERE org_id = ?1 AND certificate IS NOT NULL
         UNION SELECT certificate FROM users WHERE org_id = ?1 AND certificate IS NOT NULL
         UNION SELECT certificate FROM runbooks WHERE org_id = ?1 AND certificate IS NOT NULL",
    )?;
    let mut signers = std::collections::BTreeSet::new();
    for certificate in stmt.query_map(params![org_id], |r| r.get::<_, String>(0))? {
        // A certificate that is not JSON has no signer to list, as
        // `json_extract` gave none.
        if let Ok(Signed {
            signer: Some(signer),
        }) = serde_json::from_str(&certificate?)
        {
            signers.insert(signer);
        }
    }
    Ok(signers.into_iter().collect())
}

pub(crate) fn count(tx: &Tx<'_>) -> Result<i64, Error> {
    Ok(tx.query_row("SELECT COUNT(*) FROM orgs", params![], |r| r.get(0))?)
}

/// Whether an org is named `name`.
pub(crate) fn exists(tx: &Tx<'_>, name: &str) -> Result<bool, Error> {
    Ok(tx
        .query_row("SELECT 1 FROM orgs WHERE name = ?1", params![name], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

/// Inserts an org; returns its id.
pub(crate) fn insert(tx: &Tx<'_>, name: &str, now: i64) -> Result<i64, Error> {
    Ok(tx.query_row(
        "INSERT INTO orgs (name, created_ms) VALUES (?1, ?2) RETURNING id",
        params![name, now],
        |r| r.get(0),
    )?)
}
