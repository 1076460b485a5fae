//! [`Tx`]: the handle every store function takes.

/// A transaction of the writer, or a reader's connection: what the domain
/// hands to store functions. Only the store modules can reach the
/// connection inside, so only they can say SQL.
pub struct Tx<'c> {
    pub(super) conn: &'c rusqlite::Connection,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl<'c> Tx<'c> {
    pub(super) fn new(conn: &'c rusqlite::Connection) -> Tx<'c> {
        Tx { conn }
    }
}

/// The one translation of a database failure into a domain error. Storage
/// that cannot take a write now (full, read-only, failing, out of file
/// descriptors, locked by another process) is `Unavailable`, with a message
/// saying so, since the request may succeed later and the operator must
/// act; anything else is a bug or an unexpected state, `Internal`. Both log
/// the database's own words, which the caller never sees.
impl From<rusqlite::Error> for crate::error::Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let unavailable = match e.sqlite_error_code() {
            Some(C::DiskFull) => Some(
                "the control plane's storage is full: no change can be recorded until space is freed",
            ),
            Some(C::ReadOnly) => {
                Some("the control plane's storage is read-only: no change can be recorded")
            }
            Some(C::SystemIoFailure) => Some("the control plane's storage failed (I/O error)"),
            Some(C::CannotOpen) => {
                Some("the control plane cannot open its database files (too many open files?)")
            }
            Some(C::DatabaseBusy | C::DatabaseLocked) => {
                Some("the control plane's database is busy")
            }
            _ => None,
        };
        match unavailable {
            Some(message) => {
                tracing::error!(error = %e, "{message}");
                crate::error::Error::Unavailable(format!("{message}; retry later"))
            }
            None => crate::error::Error::internal(format_args!("database: {e}")),
        }
    }
}

impl From<serde_json::Error> for crate::error::Error {
    fn from(e: serde_json::Error) -> Self {
        crate::error::Error::internal(format_args!("stored JSON: {e}"))
    }
}
