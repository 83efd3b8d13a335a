//! The one error type of the core contracts.
//!
//! Every backend converts its driver's errors into [`Error`] at its boundary,
//! so callers act on a category ([`ErrorKind`]) and never on a driver type.

use std::fmt;

/// A boxed error from a driver or the operating system, kept as the `source`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result of a core operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in categories a caller can act on.
///
/// Every message says what was being done and with what, for example
/// `get of videos/abc/master.m3u8 from Fs(/data/objects): no such object`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{message}")]
    NotFound {
        /// What was looked for, and where.
        message: String,
    },
    /// The thing to create exists already.
    #[error("{message}")]
    AlreadyExists {
        /// What exists, and where.
        message: String,
    },
    /// The request does not fit the current state: a lease that expired or
    /// belongs to somebody else, an illegal status transition, a key that
    /// collides with a directory.
    #[error("{message}")]
    Conflict {
        /// What conflicted with what.
        message: String,
    },
    /// A condition the caller attached did not hold: a version or etag that
    /// no longer matches (compare-and-set lost), a fence that another holder
    /// took over. Read the current state and decide again.
    #[error("{message}")]
    Precondition {
        /// Which condition failed, on what.
        message: String,
    },
    /// A conditional read found the caller's copy current (`If-None-Match`).
    #[error("{message}")]
    NotModified {
        /// What was not modified.
        message: String,
    },
    /// The backend refused the caller's credentials for this operation.
    #[error("{message}")]
    PermissionDenied {
        /// What was refused, and by whom.
        message: String,
    },
    /// The request itself is malformed: a bad key, a bad URL, an out-of-range
    /// value. Retrying the same request cannot succeed.
    #[error("{message}")]
    InvalidInput {
        /// What was wrong with the input.
        message: String,
    },
    /// The backend cannot do this at all (presigning on a local filesystem).
    #[error("{message}")]
    NotSupported {
        /// What is not supported, and by which backend.
        message: String,
    },
    /// The backend could not be reached or failed in a way that may pass:
    /// retrying later can succeed.
    #[error("{message}: {source}")]
    Unavailable {
        /// What was being done.
        message: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The backend answered with something unexpected (corrupt data, a driver
    /// error with no better category).
    #[error("{message}: {source}")]
    Backend {
        /// What was being done.
        message: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// The category of an [`Error`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::AlreadyExists`].
    AlreadyExists,
    /// See [`Error::Conflict`].
    Conflict,
    /// See [`Error::Precondition`].
    Precondition,
    /// See [`Error::NotModified`].
    NotModified,
    /// See [`Error::PermissionDenied`].
    PermissionDenied,
    /// See [`Error::InvalidInput`].
    InvalidInput,
    /// See [`Error::NotSupported`].
    NotSupported,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Backend`].
    Backend,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Precondition => "precondition failed",
            ErrorKind::NotModified => "not modified",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotSupported => "not supported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Backend => "backend error",
        };
        f.write_str(name)
    }
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Precondition { .. } => ErrorKind::Precondition,
            Error::NotModified { .. } => ErrorKind::NotModified,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::NotSupported { .. } => ErrorKind::NotSupported,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// A [`Error::Precondition`] with this message.
    pub fn precondition(message: impl Into<String>) -> Self {
        Error::Precondition {
            message: message.into(),
        }
    }

    /// A [`Error::NotModified`] with this message.
    pub fn not_modified(message: impl Into<String>) -> Self {
        Error::NotModified {
            message: message.into(),
        }
    }

    /// A [`Error::PermissionDenied`] with this message.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Error::PermissionDenied {
            message: message.into(),
        }
    }

    /// A [`Error::NotFound`] with this message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound {
            message: message.into(),
        }
    }

    /// An [`Error::AlreadyExists`] with this message.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Error::AlreadyExists {
            message: message.into(),
        }
    }

    /// A [`Error::Conflict`] with this message.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
        }
    }

    /// An [`Error::InvalidInput`] with this message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
        }
    }

    /// A [`Error::NotSupported`] with this message.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Error::NotSupported {
            message: message.into(),
        }
    }

    /// An [`Error::Unavailable`] wrapping `source`.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Backend`] wrapping `source`.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: source.into(),
        }
    }

    /// Maps an I/O error to the category that fits it.
    pub fn from_io(message: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let message = message.into();
        match err.kind() {
            Io::NotFound => Error::not_found(format!("{message}: {err}")),
            Io::AlreadyExists => Error::already_exists(format!("{message}: {err}")),
            Io::PermissionDenied => Error::permission_denied(format!("{message}: {err}")),
            Io::InvalidInput | Io::InvalidData => Error::invalid_input(format!("{message}: {err}")),
            Io::NotADirectory | Io::IsADirectory | Io::DirectoryNotEmpty => {
                Error::conflict(format!("{message}: {err}"))
            }
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::TimedOut
            | Io::Interrupted
            | Io::WouldBlock => Error::unavailable(message, err),
            _ => Error::backend(message, err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_categories() {
        let e = Error::from_io(
            "get of a/b",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().starts_with("get of a/b"), "{e}");
        let e = Error::from_io(
            "put of a/b",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }
}
