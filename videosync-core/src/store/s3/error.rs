//! SDK errors converted into [`Error`] categories (the table in the
//! module docs of [`super`]).

use std::fmt;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::{BoxError, Error, ErrorKind};

pub(super) fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

pub(super) fn is_unsatisfiable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(416) || err.code() == Some("InvalidRange")
}

/// The object's size from the `Content-Range: bytes */size` of a 416.
pub(super) fn unsatisfied_size<E>(err: &SdkError<E, HttpResponse>) -> Option<u64> {
    let response = err.raw_response().filter(|r| r.status().as_u16() == 416)?;
    let header = response.headers().get("content-range")?;
    header.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

pub(super) fn is_changed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(412) || err.code() == Some("PreconditionFailed")
}

/// An SDK error, with what S3 said, kept as the `source` of an [`Error`].
#[derive(Debug)]
struct S3Failure {
    detail: String,
    source: BoxError,
}

impl fmt::Display for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for S3Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The category of an SDK error (see the table in the module docs).
pub(super) fn category<E>(err: &SdkError<E, HttpResponse>, code: Option<&str>) -> ErrorKind {
    match code {
        Some("NoSuchKey" | "NoSuchUpload" | "NotFound") => return ErrorKind::NotFound,
        Some("InvalidRange" | "EntityTooSmall" | "InvalidPart" | "InvalidPartOrder") => {
            return ErrorKind::InvalidInput
        }
        Some("PreconditionFailed" | "ConditionalRequestConflict") => {
            return ErrorKind::Precondition
        }
        Some("AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId") => {
            return ErrorKind::PermissionDenied
        }
        Some(
            "SlowDown"
            | "ServiceUnavailable"
            | "InternalError"
            | "RequestTimeout"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => return ErrorKind::Unavailable,
        _ => {}
    }
    match status(err) {
        // A missing bucket is a configuration error, not a missing object.
        Some(404) if code != Some("NoSuchBucket") => ErrorKind::NotFound,
        Some(416) => ErrorKind::InvalidInput,
        Some(412) => ErrorKind::Precondition,
        Some(304) => ErrorKind::NotModified,
        Some(403) => ErrorKind::PermissionDenied,
        Some(429 | 500..) => ErrorKind::Unavailable,
        Some(_) => ErrorKind::Backend,
        None => match err {
            SdkError::TimeoutError(_) => ErrorKind::Unavailable,
            SdkError::DispatchFailure(d) if !d.is_user() => ErrorKind::Unavailable,
            _ => ErrorKind::Backend,
        },
    }
}

/// An error and its sources, `: `-separated (SDK errors say little on their
/// own: "dispatch failure").
pub(super) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// Converts an SDK error into an [`Error`] whose message starts with `what`.
pub(super) fn sdk_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let kind = category(&err, code.as_deref());
    let detail = match (code.as_deref(), status(&err)) {
        (Some("NoSuchKey"), _) => "no such object".to_owned(),
        (Some("NoSuchUpload"), _) => "no such multipart upload".to_owned(),
        (None | Some("NotFound"), Some(404)) => "no such object".to_owned(),
        (Some(code), status) => {
            let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
            match err.message() {
                Some(m) => format!("{code}{status}: {m}"),
                None => format!("{code}{status}"),
            }
        }
        // A HEAD's error has no body, so no code to tell.
        (None, Some(403)) if matches!(err, SdkError::ServiceError(_)) => {
            "HTTP 403: access denied (check the credentials, the region and the bucket's permissions)"
                .to_owned()
        }
        (None, Some(status)) if matches!(err, SdkError::ServiceError(_)) => {
            format!("HTTP {status}")
        }
        (None, Some(status)) => format!("HTTP {status}: {}", chain(&err)),
        (None, None) => chain(&err),
    };
    match kind {
        ErrorKind::NotFound => Error::not_found(format!("{what}: {detail}")),
        ErrorKind::InvalidInput => Error::invalid_input(format!("{what}: {detail}")),
        ErrorKind::Precondition => Error::precondition(format!("{what}: {detail}")),
        ErrorKind::NotModified => Error::not_modified(format!("{what}: not modified")),
        ErrorKind::PermissionDenied => Error::permission_denied(format!("{what}: {detail}")),
        ErrorKind::Unavailable => Error::unavailable(
            what,
            S3Failure {
                detail,
                source: Box::new(err),
            },
        ),
        _ => Error::backend(
            what,
            S3Failure {
                detail,
                source: Box::new(err),
            },
        ),
    }
}
