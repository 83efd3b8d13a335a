//! One error shape for every endpoint: an HTTP status and a JSON body with a
//! stable machine-readable code.
//!
//! ```json
//! {"error": {"code": "not_found", "message": "channel 1f0c... not found"}}
//! ```
//!
//! Handlers return [`ApiError`]; the core's [`videosync_core::Error`]
//! converts by category, and axum's own rejections (bad JSON, a wrong
//! content type, a body over the limit, an unknown route) are rewritten into
//! the same shape, so a client parses one thing. A 500 means a bug or a
//! backend fault, never bad input: it is logged with its cause, and the
//! client sees only that something failed on the server.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use videosync_core::ErrorKind;

/// The machine-readable error codes. Stable: clients match on them.
pub mod code {
    /// The request is malformed: not JSON, a bad path or query parameter.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The request parsed but a field is not acceptable.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// No credentials, or credentials that are not valid.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// The access token has expired; refresh it.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// Login or password check failed.
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    /// A refresh token that was already used: its whole family is revoked.
    pub const REFRESH_REUSED: &str = "refresh_token_reused";
    /// Authenticated, but not allowed to do this.
    pub const FORBIDDEN: &str = "forbidden";
    /// Banned from the channel.
    pub const BANNED: &str = "banned";
    /// Registration is closed on this instance.
    pub const REGISTRATION_CLOSED: &str = "registration_closed";
    /// Nothing there (or nothing the caller may see).
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// Already exists (a username, a membership).
    pub const ALREADY_EXISTS: &str = "already_exists";
    /// The request conflicts with the current state.
    pub const CONFLICT: &str = "conflict";
    /// The expected version did not match: reload and retry.
    pub const VERSION_MISMATCH: &str = "version_mismatch";
    /// The body is over the size limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// The body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// Too many requests; `Retry-After` says when to try again.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A backend is down or overloaded; try again.
    pub const UNAVAILABLE: &str = "unavailable";
    /// A fault on the server (logged there).
    pub const INTERNAL: &str = "internal";
    /// A tus request without the protocol version this server speaks.
    pub const TUS_VERSION: &str = "tus_version";
    /// An upload chunk whose checksum does not match its bytes (tus 460).
    pub const CHECKSUM_MISMATCH: &str = "checksum_mismatch";
    /// An upload that expired or was terminated.
    pub const GONE: &str = "gone";
    /// A byte range outside the object.
    pub const RANGE_NOT_SATISFIABLE: &str = "range_not_satisfiable";
    /// A media URL whose signature is missing, forged or expired.
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// An upload that would take its owner over their storage quota.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
}

/// The JSON error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`not_found`, `invalid_input`, ...).
    #[schema(example = "not_found")]
    pub code: String,
    /// One sentence for people.
    pub message: String,
}

/// An error answer: status, code, message (and `Retry-After` for 429).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code (one of [`code`]).
    pub code: &'static str,
    /// The message for people.
    pub message: String,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
    }

    /// 422 `invalid_input`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code::INVALID_INPUT,
            message,
        )
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code::FORBIDDEN, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    /// 403 `banned`.
    pub fn banned() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            code::BANNED,
            "you are banned from this channel",
        )
    }

    /// 410 for an invite that can no longer be used.
    pub fn invite_gone() -> Self {
        Self::new(
            StatusCode::GONE,
            code::NOT_FOUND,
            "this invite has expired, was used up or revoked",
        )
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code::CONFLICT, message)
    }

    /// 429 `rate_limited`, retry after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        ApiError {
            retry_after: Some(seconds.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::RATE_LIMITED,
                format!("too many attempts; try again in {} s", seconds.max(1)),
            )
        }
    }

    /// 500 `internal`: logs `cause` and tells the client only that the
    /// server failed.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "the server failed to answer; the fault is logged",
        )
    }
}

impl From<videosync_core::Error> for ApiError {
    fn from(e: videosync_core::Error) -> Self {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::NotFound => Self::not_found(message),
            ErrorKind::AlreadyExists => {
                Self::new(StatusCode::CONFLICT, code::ALREADY_EXISTS, message)
            }
            ErrorKind::Conflict => Self::conflict(message),
            ErrorKind::Precondition | ErrorKind::NotModified => {
                Self::new(StatusCode::CONFLICT, code::VERSION_MISMATCH, message)
            }
            ErrorKind::PermissionDenied => Self::forbidden(message),
            ErrorKind::InvalidInput => Self::invalid(message),
            ErrorKind::NotSupported => Self::invalid(message),
            ErrorKind::Unavailable => {
                tracing::warn!(error = %message, "backend unavailable");
                ApiError {
                    retry_after: Some(1),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        code::UNAVAILABLE,
                        "a backend is unavailable; try again",
                    )
                }
            }
            _ => Self::internal(message),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::PAYLOAD_TOO_LARGE,
                "the request body is over the size limit",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON (Content-Type: application/json)",
            ),
            // A body that is JSON but has the wrong fields or types.
            StatusCode::UNPROCESSABLE_ENTITY => Self::invalid(r.body_text()),
            _ => Self::bad_request(r.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What handlers return.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// The answer to a route that does not exist.
pub(crate) async fn not_found_fallback() -> ApiError {
    ApiError::not_found("no such route")
}

/// The answer to a method a route does not take.
pub(crate) async fn method_not_allowed_fallback() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        code::METHOD_NOT_ALLOWED,
        "the route does not take this method",
    )
}
