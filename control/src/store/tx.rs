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

impl From<rusqlite::Error> for crate::error::Error {
    fn from(e: rusqlite::Error) -> Self {
        crate::error::Error::internal(format_args!("database: {e}"))
    }
}

impl From<serde_json::Error> for crate::error::Error {
    fn from(e: serde_json::Error) -> Self {
        crate::error::Error::internal(format_args!("stored JSON: {e}"))
    }
}
