//! Accounts: register, log in, refresh, log out, guests, and the signed-in
//! user's own record (`/me`).
//!
//! Access tokens are short-lived JWTs; refresh tokens rotate: each use
//! issues the next one in the same family, and presenting a used one again
//! (a stolen copy) revokes the whole family.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::db::{NewSession, NewUser, Sessions, User, Users};
use videosync_core::kv::PutOptions;
use videosync_core::sql::Tx;
use videosync_core::ErrorKind;

use crate::auth::password::Passwords;
use crate::auth::ratelimit::{self, ClientIp};
use crate::auth::tokens::{new_guest_id, new_refresh_token, refresh_token_hash, TokenKind};
use crate::auth::Authed;
use crate::config::Registration;
use crate::dto::rfc3339;
use crate::error::{code, ApiError, ApiResult};
use crate::extract::Json;
use crate::state::{App, AppState};

/// The routes of this capability.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(guest))
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(change_password))
}

/// A user as they see themselves.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// Login name.
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// E-mail address, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Instance administrator.
    pub is_admin: bool,
    /// When the account was made (RFC 3339).
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.to_string(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            is_admin: u.is_admin,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// A new account.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3 to 32 of `A-Z a-z 0-9 _ . -`; unique, case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9_.-]+$",
        example = "ada"
    )]
    pub username: String,
    /// At least 8 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// Optional e-mail address (also a login): `name@example.org`, up to
    /// 254 bytes, no white space; empty is none.
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = "^$|^[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000@]+@[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000@]*\\.[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000@]*$"
    )]
    pub email: Option<String>,
    /// Optional name shown to others (default: the username); 1 to 64
    /// characters, no control characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub display_name: Option<String>,
}

/// Credentials.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or e-mail address.
    pub login: String,
    /// The password.
    pub password: String,
}

/// A refresh token to use or revoke.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last token answer.
    pub refresh_token: String,
}

/// What to log out.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The refresh token of this login.
    pub refresh_token: String,
    /// Log out every login of the account, not only this one.
    #[serde(default)]
    pub everywhere: bool,
}

/// Tokens for a signed-in user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Trade for new tokens at `/auth/refresh` (once).
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: u64,
    /// Who signed in.
    pub user: UserView,
}

/// A guest's chosen name.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestRequest {
    /// 1 to 64 characters, not all white space, no control characters
    /// (kept without the white space around it).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub display_name: String,
}

/// A guest token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuestResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the token lives.
    pub expires_in: u64,
    /// The guest's id (`guest-...`).
    pub guest_id: String,
    /// The name others see.
    pub display_name: String,
}

/// Changes to the signed-in user.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// New display name: 1 to 64 characters, not all white space, no
    /// control characters (kept without the white space around it).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub display_name: String,
}

/// A password change.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The current password.
    pub current_password: String,
    /// The new one (at least 8 characters).
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

/// Confirmation of an account deletion.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMeRequest {
    /// The password.
    pub password: String,
}

/// The key that names the instance's first administrator: claimed once,
/// atomically, so two first registrations on a new fleet cannot both win.
const FIRST_ADMIN_KEY: &str = "instance:first-admin";

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().filter(|c| !c.is_control()).take(256).collect())
}

/// A new refresh token in `family` (a new family when `None`) and an access
/// token, for `user`.
async fn issue(
    app: &App,
    tx: &mut Tx,
    user: &User,
    family: Option<videosync_core::SessionId>,
    agent: Option<String>,
) -> ApiResult<TokenResponse> {
    let a = &app.auth;
    let now = app.backends.clock.now();
    let refresh = new_refresh_token();
    tx.create_session(NewSession {
        user_id: user.id,
        family,
        token_hash: refresh_token_hash(&refresh),
        user_agent: agent,
        expires_at: now.saturating_add(Duration::from_secs(a.refresh_ttl_s)),
    })
    .await?;
    Ok(TokenResponse {
        access_token: a.keys.issue(
            TokenKind::User,
            &user.id.to_string(),
            "",
            now,
            a.access_ttl_s,
        )?,
        token_type: "Bearer".to_owned(),
        expires_in: a.access_ttl_s,
        refresh_token: refresh,
        refresh_expires_in: a.refresh_ttl_s,
        user: UserView::from(user),
    })
}

/// Sign up. The first account on an empty instance is its administrator.
#[utoipa::path(post, path = "/auth/register", tag = "accounts",
    request_body = RegisterRequest,
    responses((status = 201, description = "Signed up and in", body = TokenResponse)))]
async fn register(
    State(app): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    ratelimit::check(
        &app,
        &format!("register-ip:{ip}"),
        app.limits.register_per_ip_per_hour,
        Duration::from_secs(3600),
    )
    .await?;
    Passwords::check_rules(&req.password)?;
    let mut new = NewUser::new(req.username, String::from("-"));
    new.email = req.email.filter(|e| !e.is_empty());
    new.display_name = req.display_name;
    new.validate()?;
    let first = {
        let mut tx = app.backends.db.read().await?;
        let n = tx.count_users().await?;
        tx.commit().await?;
        n == 0
    };
    if app.auth.registration == Registration::Closed && !first {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code::REGISTRATION_CLOSED,
            "registration is closed on this instance; ask an administrator for an account",
        ));
    }
    new.password_hash = app.auth.passwords.hash(&req.password).await?;
    // The first account administers the instance. The claim is one atomic
    // create in the shared key-value store, made before the transaction
    // (the store may share the database, whose write lock the transaction
    // holds), so of two first sign-ups on a new fleet only one wins.
    let key = app.kv_key(FIRST_ADMIN_KEY)?;
    let claimed = first
        && match app
            .backends
            .kv
            .put(&key, new.username.clone().into(), PutOptions::create())
            .await
        {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e.into()),
        };
    new.is_admin = claimed;
    let created = async {
        let mut tx = app.backends.db.begin().await?;
        let user = tx.create_user(new).await?;
        let tokens = issue(&app, &mut tx, &user, None, user_agent(&headers)).await?;
        tx.commit().await?;
        Ok::<_, ApiError>((user, tokens))
    }
    .await;
    let (user, tokens) = match created {
        Ok(done) => done,
        Err(e) => {
            if claimed {
                // Give the claim back, so the next sign-up can take it.
                let _ = app.backends.kv.delete(&key, None).await;
            }
            return Err(e);
        }
    };
    tracing::info!(user = %user.id, admin = user.is_admin, "account registered");
    Ok((StatusCode::CREATED, Json(tokens)))
}

/// Log in with a username (or e-mail) and password.
#[utoipa::path(post, path = "/auth/login", tag = "accounts",
    request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = TokenResponse)))]
async fn login(
    State(app): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let l = &app.limits;
    let minute = Duration::from_secs(60);
    ratelimit::check(
        &app,
        &format!("login-ip:{ip}"),
        l.login_per_ip_per_minute,
        minute,
    )
    .await?;
    ratelimit::check(
        &app,
        &format!("login-account:{}", req.login.to_lowercase()),
        l.login_per_account_per_minute,
        minute,
    )
    .await?;
    let denied = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::INVALID_CREDENTIALS,
            "the login or the password is wrong",
        )
    };
    let found = if req.login.len() > 254 {
        None
    } else {
        let mut tx = app.backends.db.read().await?;
        let found = tx.user_by_login(&req.login).await?;
        tx.commit().await?;
        found
    };
    let Some(user) = found else {
        app.auth.passwords.waste_one_check(&req.password).await?;
        return Err(denied());
    };
    if !app
        .auth
        .passwords
        .verify(&req.password, &user.password_hash)
        .await?
    {
        return Err(denied());
    }
    let mut tx = app.backends.db.begin().await?;
    let tokens = issue(&app, &mut tx, &user, None, user_agent(&headers)).await?;
    tx.commit().await?;
    Ok(Json(tokens))
}

/// Trade a refresh token for new tokens. Each refresh token works once;
/// a reused one revokes every token of that login.
#[utoipa::path(post, path = "/auth/refresh", tag = "accounts",
    request_body = RefreshRequest,
    responses((status = 200, description = "New tokens", body = TokenResponse)))]
async fn refresh(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let invalid = || ApiError::unauthenticated("the refresh token is not valid; sign in again");
    let mut tx = app.backends.db.begin().await?;
    let Some(session) = tx
        .session_by_token(&refresh_token_hash(&req.refresh_token))
        .await?
    else {
        return Err(invalid());
    };
    let now = app.backends.clock.now();
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Err(invalid());
    }
    if session.used_at.is_some() || !tx.use_session(session.id).await? {
        // A used token came back: someone holds a copy. End the login.
        tx.revoke_family(session.family).await?;
        tx.commit().await?;
        tracing::warn!(user = %session.user_id, "refresh token reused; login revoked");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::REFRESH_REUSED,
            "this refresh token was already used; the login is revoked, sign in again",
        ));
    }
    let user = match tx.user(session.user_id).await {
        Ok(u) => u,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(invalid()),
        Err(e) => return Err(e.into()),
    };
    let tokens = issue(
        &app,
        &mut tx,
        &user,
        Some(session.family),
        user_agent(&headers),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(tokens))
}

/// Log out: revoke this login's refresh tokens (or every login's).
/// Access tokens already issued live out their short lifetime.
#[utoipa::path(post, path = "/auth/logout", tag = "accounts",
    request_body = LogoutRequest,
    responses((status = 204, description = "Logged out")))]
async fn logout(
    State(app): State<AppState>,
    Json(req): Json<LogoutRequest>,
) -> ApiResult<StatusCode> {
    let mut tx = app.backends.db.begin().await?;
    // An unknown token is already logged out: the answer is the same, so it
    // tells nothing about which tokens exist.
    if let Some(session) = tx
        .session_by_token(&refresh_token_hash(&req.refresh_token))
        .await?
    {
        if req.everywhere {
            tx.revoke_user_sessions(session.user_id).await?;
        } else {
            tx.revoke_family(session.family).await?;
        }
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A guest token: a name for one visit, no account. Guests may watch and
/// talk in public channels that allow guests.
#[utoipa::path(post, path = "/auth/guest", tag = "accounts",
    request_body = GuestRequest,
    responses((status = 201, description = "A guest token", body = GuestResponse)))]
async fn guest(
    State(app): State<AppState>,
    ip: ClientIp,
    Json(req): Json<GuestRequest>,
) -> ApiResult<(StatusCode, Json<GuestResponse>)> {
    ratelimit::check(
        &app,
        &format!("guest-ip:{ip}"),
        app.limits.register_per_ip_per_hour.saturating_mul(10),
        Duration::from_secs(3600),
    )
    .await?;
    let name = crate::policy::trimmed_display_name(&req.display_name)?;
    let id = new_guest_id();
    let a = &app.auth;
    let token = a.keys.issue(
        TokenKind::Guest,
        &id,
        name,
        app.backends.clock.now(),
        a.guest_ttl_s,
    )?;
    Ok((
        StatusCode::CREATED,
        Json(GuestResponse {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: a.guest_ttl_s,
            guest_id: id,
            display_name: name.to_owned(),
        }),
    ))
}

/// The signed-in user.
#[utoipa::path(get, path = "/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The signed-in user", body = UserView)))]
async fn me(Authed(user): Authed) -> Json<UserView> {
    Json(UserView::from(&user))
}

/// Change the display name.
#[utoipa::path(patch, path = "/me", tag = "accounts", security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses((status = 200, description = "The updated user", body = UserView)))]
async fn update_me(
    State(app): State<AppState>,
    Authed(user): Authed,
    Json(req): Json<UpdateMeRequest>,
) -> ApiResult<Json<UserView>> {
    let name = crate::policy::trimmed_display_name(&req.display_name)?;
    let mut tx = app.backends.db.begin().await?;
    let user = tx.set_display_name(user.id, name).await?;
    tx.commit().await?;
    Ok(Json(UserView::from(&user)))
}

/// Change the password. Every login is ended; the answer holds fresh
/// tokens for this one.
#[utoipa::path(put, path = "/me/password", tag = "accounts", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 200, description = "Changed; new tokens", body = TokenResponse)))]
async fn change_password(
    State(app): State<AppState>,
    Authed(user): Authed,
    headers: HeaderMap,
    Json(req): Json<ChangePasswordRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Passwords::check_rules(&req.new_password)?;
    if !app
        .auth
        .passwords
        .verify(&req.current_password, &user.password_hash)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code::INVALID_CREDENTIALS,
            "the current password is wrong",
        ));
    }
    let hash = app.auth.passwords.hash(&req.new_password).await?;
    let mut tx = app.backends.db.begin().await?;
    let user = tx.set_password(user.id, &hash).await?;
    tx.revoke_user_sessions(user.id).await?;
    let tokens = issue(&app, &mut tx, &user, None, user_agent(&headers)).await?;
    tx.commit().await?;
    Ok(Json(tokens))
}

/// Delete the account, its sessions and the channels it owns (with their
/// videos).
#[utoipa::path(delete, path = "/me", tag = "accounts", security(("bearer" = [])),
    request_body = DeleteMeRequest,
    responses((status = 204, description = "Deleted")))]
async fn delete_me(
    State(app): State<AppState>,
    Authed(user): Authed,
    Json(req): Json<DeleteMeRequest>,
) -> ApiResult<StatusCode> {
    if !app
        .auth
        .passwords
        .verify(&req.password, &user.password_hash)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code::INVALID_CREDENTIALS,
            "the password is wrong",
        ));
    }
    crate::channels::delete_owned_channels(&app, user.id).await?;
    let mut tx = app.backends.db.begin().await?;
    tx.delete_user(user.id).await?;
    tx.commit().await?;
    tracing::info!(user = %user.id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a user outside HTTP (the `admin create-user` command).
///
/// # Errors
/// As registration: the rules, a taken name.
pub async fn create_user(
    app: &App,
    username: &str,
    password: &str,
    is_admin: bool,
) -> ApiResult<User> {
    Passwords::check_rules(password)?;
    let new = NewUser {
        is_admin,
        ..NewUser::new(username, app.auth.passwords.hash(password).await?)
    };
    new.validate()?;
    let mut tx = app.backends.db.begin().await?;
    let user = tx.create_user(new).await?;
    tx.commit().await?;
    Ok(user)
}
