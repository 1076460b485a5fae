//! Errors: [`Error`] for one domain operation, [`OpenError`] for opening the
//! control plane's data directory and database.
//!
//! A domain operation says *what kind* of failure happened (not found,
//! invalid, conflict, forbidden...) and names the object; it never picks a
//! transport status. Each adapter maps the kinds once: the HTTP edge in its
//! one `From<Error>`, Slack into a message for the user.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Kinds of objects a [`Error::NotFound`] can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Object {
    /// A run, by id.
    Run,
    /// A target, by name.
    Target,
    /// A secret of a target, by name.
    Secret,
    /// A token, by id.
    Token,
    /// An agent pool, by name.
    Pool,
    /// An agent, by id.
    Agent,
    /// A linked Slack workspace, by team id.
    SlackWorkspace,
    /// A linked Slack user, by `team/user`.
    SlackUser,
    /// A runbook, by name (and version).
    Runbook,
    /// A user (a person), by name.
    User,
    /// A group of users, by name.
    Group,
}

/// Why one domain operation failed. Messages are for a human, hold no
/// secret material, and never say whether another org's object exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named object does not exist in the caller's org (or belongs to
    /// another org: the two are indistinguishable on purpose).
    #[error("{message}")]
    NotFound {
        /// What kind of object.
        object: Object,
        /// The name or id it was asked for.
        name: String,
        /// The message shown to the caller.
        message: String,
    },
    /// The request is malformed or breaks a rule (names, limits, shapes).
    #[error("{0}")]
    Invalid(String),
    /// Too large for a limit of the control plane (a log chunk).
    #[error("{0}")]
    TooLarge(String),
    /// The object is not in a state that allows this (already ended, taken
    /// name, mismatched key...).
    #[error("{0}")]
    Conflict(String),
    /// The caller is known but may not do this (role, token kind, pool).
    #[error("{0}")]
    Forbidden(String),
    /// The caller could not be authenticated. One message whatever the
    /// reason, so the answer is no oracle.
    #[error("{0}")]
    Unauthenticated(String),
    /// A quota is exhausted (connected agents per org).
    #[error("{0}")]
    LimitReached(String),
    /// The control plane cannot serve this now (shutting down, database
    /// unreachable).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an I/O failure; the cause went to the log, not the caller.
    #[error("internal error (see the server log)")]
    Internal(Cause),
}

/// What went wrong inside, for the log and for offline tools that have no
/// log (`create-org`); never shown to a caller of the API (it may name files
/// or SQL). Not `Display`, so it cannot end up in a message by accident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause(String);

impl Cause {
    /// The cause, as logged.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl Error {
    /// `NotFound` for `object` named `name`, with the message users have
    /// always seen for that kind of object.
    pub fn not_found(object: Object, name: impl Into<String>) -> Error {
        let name = name.into();
        let message = match object {
            Object::Run => format!("no run {name:?}"),
            Object::Target => format!("no target named {name:?}"),
            Object::Secret => format!("no secret named {name:?}"),
            Object::Token => format!("no token {name:?}"),
            Object::Pool => format!("no pool named {name:?}"),
            Object::Agent => format!("no agent {name:?}"),
            Object::SlackWorkspace => format!("Slack team {name} is not linked to this org"),
            Object::SlackUser => format!("Slack user {name} is not linked to this org"),
            Object::Runbook => format!("no runbook named {name:?}"),
            Object::User => format!("no user named {name:?}"),
            Object::Group => format!("no group named {name:?}"),
        };
        Error::NotFound {
            object,
            name,
            message,
        }
    }

    /// `NotFound` with a message of its own (for objects whose message
    /// names more than one thing, like a secret of a target).
    pub fn not_found_because(object: Object, name: impl Into<String>, message: String) -> Error {
        Error::NotFound {
            object,
            name: name.into(),
            message,
        }
    }

    /// Logs `cause` (it may name files or SQL) and hides it from the caller.
    pub fn internal(cause: impl fmt::Display) -> Error {
        let cause = cause.to_string();
        tracing::error!(error = %cause, "internal error");
        Error::Internal(Cause(cause))
    }

    /// The cause of an [`Error::Internal`], else the message.
    pub fn detail(&self) -> String {
        match self {
            Error::Internal(cause) => cause.message().to_owned(),
            other => other.to_string(),
        }
    }

    /// The control plane is stopping.
    pub(crate) fn shutting_down() -> Error {
        Error::Unavailable("the server is shutting down".to_owned())
    }
}

/// Why the control plane's data directory or database could not be opened,
/// or an org could not be created in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data directory could not be created or secured, or a file in it
    /// (a key file) could not be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Another process (a server, `sealrun dev`) holds the data directory,
    /// or it could not be locked; the message names the holder's pid.
    #[error(transparent)]
    Lock(#[from] sealrun_dirlock::LockError),
    /// The database could not be opened, migrated or written.
    #[error("database {location}: {message}")]
    Database {
        /// The database file, or the PostgreSQL server and database.
        location: String,
        /// What the database said.
        message: String,
    },
    /// What should be a sealrun installation's database is not one (no such
    /// file, another program's database, an installation with no org).
    #[error("{location} is not a sealrun installation: {reason}")]
    NotAnInstallation {
        /// The file.
        location: String,
        /// What is missing.
        reason: String,
    },
    /// The server was pointed at an empty PostgreSQL database while its
    /// data directory still holds its SQLite installation.
    #[error(
        "{} holds this data directory's installation, and the PostgreSQL database is empty: move it there first (sealrun server migrate-store --from {}), or move the file away to start a new installation",
        file.display(),
        file.parent().unwrap_or(file).display()
    )]
    NotMoved {
        /// The SQLite database.
        file: PathBuf,
    },
    /// The server was pointed at a PostgreSQL database holding another
    /// installation than the SQLite one its data directory still holds.
    #[error(
        "{} holds an installation the PostgreSQL database does not (it was never moved there, and another replica started one afresh): move the file away to join the database's installation, or move this one into an empty database (sealrun server migrate-store)",
        file.display()
    )]
    OtherInstallation {
        /// The SQLite database.
        file: PathBuf,
    },
    /// The database was written by a newer sealrun.
    #[error(
        "database {location} has schema version {found}, but this sealrun knows only up to {known}: upgrade sealrun"
    )]
    SchemaTooNew {
        /// The database file, or the PostgreSQL server and database.
        location: String,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// `create_org` was asked for a name that is taken.
    #[error("an org named {0:?} already exists")]
    OrgExists(String),
    /// A name (org, pool...) that does not follow the naming rules.
    #[error("{0}")]
    InvalidName(String),
    /// The settings would make the control plane misbehave (a lease shorter
    /// than two heartbeats); the message says which and what would do.
    #[error("{0}")]
    Settings(String),
    /// The one-time admin token could not be written.
    #[error("cannot write the admin token to {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}
