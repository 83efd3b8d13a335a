//! Who is asking: the [`Caller`] extractor reads the bearer token (a user,
//! a guest, or nobody), [`Authed`] insists on a user. Token issue and checks
//! are in [`tokens`], password hashing in [`password`], rate limits in
//! [`ratelimit`].

pub mod password;
pub mod ratelimit;
pub mod tokens;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use videosync_core::db::{User, Users, Viewer};
use videosync_core::ErrorKind;

use crate::error::{ApiError, ApiResult};
use crate::state::{App, AppState};
use tokens::{user_of, Claims, TokenKind};

/// A guest: no account, a name for one visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// Random id, `guest-...`.
    pub id: String,
    /// The name they chose.
    pub name: String,
}

/// Who sent the request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// A guest token.
    Guest(Guest),
    /// A signed-in user (read fresh from the database on every request, so
    /// a deleted account or a revoked admin flag counts at once).
    User(Box<User>),
}

impl Caller {
    /// The user, when it is one.
    pub fn user(&self) -> Option<&User> {
        match self {
            Caller::User(u) => Some(u),
            _ => None,
        }
    }

    /// Whether the caller is an instance administrator.
    pub fn is_admin(&self) -> bool {
        self.user().is_some_and(|u| u.is_admin)
    }

    /// The caller as search sees it.
    pub fn viewer(&self) -> Viewer {
        Viewer {
            user: self.user().map(|u| u.id),
            is_admin: self.is_admin(),
        }
    }
}

/// The bearer token of a request, if it has one.
///
/// # Errors
/// 401 for an `Authorization` header that is not `Bearer <token>`.
fn bearer(parts: &Parts) -> ApiResult<Option<&str>> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("the Authorization header is not text"))?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthenticated(
            "the Authorization header must be `Bearer <access token>`",
        )),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Self> {
        // A request that sends a bad token is refused rather than served as
        // anonymous: the client should learn its token is wrong.
        let Some(token) = bearer(parts)? else {
            return Ok(Caller::Anonymous);
        };
        let claims = app.auth.keys.verify(token, app.backends.clock.now())?;
        Caller::from_claims(app, &claims).await
    }
}

impl Caller {
    /// The caller a verified token's `claims` stand for; a user is read
    /// fresh from the database.
    ///
    /// # Errors
    /// 401 when the account no longer exists; a backend error.
    pub async fn from_claims(app: &App, claims: &Claims) -> ApiResult<Caller> {
        match claims.kind {
            TokenKind::Guest => Ok(Caller::Guest(Guest {
                id: claims.sub.clone(),
                name: claims.name.clone(),
            })),
            TokenKind::User => {
                let id = user_of(claims)?;
                // One statement, on every authenticated request.
                let mut tx = app.backends.db.autocommit().await?;
                let user = match tx.user(id).await {
                    Ok(user) => user,
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Err(ApiError::unauthenticated("the account no longer exists"))
                    }
                    Err(e) => return Err(e.into()),
                };
                tx.commit().await?;
                Ok(Caller::User(Box::new(user)))
            }
        }
    }
}

/// A caller with credentials (a user or a guest); a request without any
/// gets 401 before anything is looked up. For the operations whose document
/// asks for a token: without one, the answer is "sign in", not a 404 for
/// what an anonymous caller cannot see.
#[derive(Debug, Clone)]
pub struct Identified(pub Caller);

impl FromRequestParts<AppState> for Identified {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Self> {
        match Caller::from_request_parts(parts, app).await? {
            Caller::Anonymous => Err(ApiError::unauthenticated("sign in first")),
            caller => Ok(Identified(caller)),
        }
    }
}

/// A signed-in user; anyone else gets 401.
#[derive(Debug, Clone)]
pub struct Authed(pub User);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Self> {
        match Caller::from_request_parts(parts, app).await? {
            Caller::User(u) => Ok(Authed(*u)),
            Caller::Guest(_) => Err(ApiError::forbidden("guests cannot do this; sign up")),
            Caller::Anonymous => Err(ApiError::unauthenticated("sign in first")),
        }
    }
}
