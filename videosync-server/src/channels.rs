//! Channels: create, read, update, delete, list; members and roles; the
//! permission matrix; invites; join and leave; kick, ban and unban.
//!
//! Every handler loads the caller's [`Access`] to the channel once
//! ([`load`]) and asks the rules in [`crate::policy`].

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::db::{
    Ban, Bans, Channel, ChannelUpdate, Channels, Invite, Invites, Member, Members, NewBan,
    NewChannel, NewInvite, Permission, PermissionMatrix, Role, Videos, Visibility,
};
use videosync_core::page::PageRequest;
use videosync_core::{ChannelId, ErrorKind, UserId};

use crate::auth::{Authed, Caller, Identified};
use crate::dto::{rfc3339, PageOf, PageParams, PersonView};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::policy::{access, Access, Who};
use crate::state::{App, AppState};

/// The routes of this capability.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_public, create))
        .routes(routes!(list_mine))
        .routes(routes!(get_channel, update, delete))
        .routes(routes!(get_permissions, patch_permissions))
        .routes(routes!(members))
        .routes(routes!(set_role, kick))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(list_invites, create_invite))
        .routes(routes!(revoke_invite))
        .routes(routes!(preview_invite))
        .routes(routes!(accept_invite))
        .routes(routes!(list_bans))
        .routes(routes!(ban, unban))
}

// ---------------------------------------------------------------- views

/// A channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelView {
    /// Channel id.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The owner's user id.
    #[schema(value_type = String, format = Uuid)]
    pub owner_id: String,
    /// Who may find and watch it.
    #[schema(schema_with = crate::dto::schema::visibility)]
    pub visibility: String,
    /// Whether guests (no account) may join its room.
    pub allow_guests: bool,
    /// Free-form settings (a JSON object).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Changes with every update; send it back as `expected_version`.
    pub version: u64,
    /// Made at (RFC 3339).
    pub created_at: String,
    /// Last changed at (RFC 3339).
    pub updated_at: String,
    /// The caller's role, if a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::dto::schema::role)]
    pub my_role: Option<String>,
    /// What the caller may do here.
    #[schema(schema_with = permission_list)]
    pub my_permissions: Vec<String>,
}

fn permission_list() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(crate::dto::schema::permission())
        .into()
}

impl ChannelView {
    /// The view of `c` for a caller with `access` under `matrix`.
    pub fn new(c: &Channel, access: &Access, matrix: &PermissionMatrix) -> Self {
        ChannelView {
            id: c.id.to_string(),
            name: c.name.clone(),
            description: c.description.clone(),
            owner_id: c.owner_id.to_string(),
            visibility: c.visibility.to_string(),
            allow_guests: c.allow_guests,
            settings: c.settings.clone(),
            version: c.version,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            my_role: access.role.map(|r| r.to_string()),
            my_permissions: Permission::ALL
                .iter()
                .filter(|&&p| access.allows(matrix, p))
                .map(|p| p.to_string())
                .collect(),
        }
    }
}

/// A member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    /// Who.
    pub user: PersonView,
    /// Their role.
    #[schema(schema_with = crate::dto::schema::role)]
    pub role: String,
    /// Joined at (RFC 3339).
    pub joined_at: String,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        MemberView {
            user: PersonView {
                id: m.user_id.to_string(),
                username: m.username,
                display_name: m.display_name,
            },
            role: m.role.to_string(),
            joined_at: rfc3339(m.joined_at),
        }
    }
}

/// An invite.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InviteView {
    /// The code to share.
    pub code: String,
    /// A link to share (when the server knows its public URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The channel.
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: String,
    /// The role it gives.
    #[schema(schema_with = crate::dto::schema::role)]
    pub role: String,
    /// How many times it may be used (absent: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// How many times it was used.
    pub uses: u64,
    /// When it stops working (RFC 3339; absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Revoked.
    pub revoked: bool,
    /// Made at (RFC 3339).
    pub created_at: String,
}

impl InviteView {
    fn new(i: Invite, app: &App) -> Self {
        InviteView {
            link: app
                .public_url
                .as_ref()
                .map(|u| format!("{}/invite/{}", u.trim_end_matches('/'), i.code)),
            code: i.code,
            channel_id: i.channel_id.to_string(),
            role: i.role.to_string(),
            max_uses: i.max_uses,
            uses: i.uses,
            expires_at: i.expires_at.map(rfc3339),
            revoked: i.revoked,
            created_at: rfc3339(i.created_at),
        }
    }
}

/// What an invite leads to, shown before accepting it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvitePreview {
    /// The code.
    pub code: String,
    /// The channel's id.
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: String,
    /// The channel's name.
    pub channel_name: String,
    /// The channel's description.
    pub channel_description: String,
    /// The role it gives.
    #[schema(schema_with = crate::dto::schema::role)]
    pub role: String,
    /// When it stops working (RFC 3339; absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A ban.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BanView {
    /// Who is banned.
    #[schema(value_type = String, format = Uuid)]
    pub user_id: String,
    /// Who banned them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub banned_by: Option<String>,
    /// Why.
    pub reason: String,
    /// Since (RFC 3339).
    pub created_at: String,
    /// Until (RFC 3339; absent: for good).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl From<Ban> for BanView {
    fn from(b: Ban) -> Self {
        BanView {
            user_id: b.user_id.to_string(),
            banned_by: b.banned_by.map(|u| u.to_string()),
            reason: b.reason,
            created_at: rfc3339(b.created_at),
            expires_at: b.expires_at.map(rfc3339),
        }
    }
}

/// The permission matrix: for each role, each permission, allowed or not.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PermissionsView {
    /// role → permission → allowed.
    #[schema(value_type = Object)]
    pub matrix: BTreeMap<String, BTreeMap<String, bool>>,
}

impl From<&PermissionMatrix> for PermissionsView {
    fn from(m: &PermissionMatrix) -> Self {
        PermissionsView {
            matrix: m
                .table()
                .into_iter()
                .map(|(r, ps)| {
                    (
                        r.to_string(),
                        ps.into_iter().map(|(p, a)| (p.to_string(), a)).collect(),
                    )
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- requests

/// A new channel.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// 1 to 100 characters, not all white space, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Up to 5000 characters; no control characters but tab and newline.
    #[serde(default)]
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: String,
    /// public, unlisted or private.
    #[schema(schema_with = crate::dto::schema::visibility)]
    pub visibility: String,
    /// Let guests (no account) in.
    #[serde(default)]
    pub allow_guests: bool,
    /// Settings (a JSON object, at most 16 KiB). The rooms read
    /// `slow_mode_seconds` (0 to 3600; 0: off), `max_message_chars` (1 to
    /// 2000), `behind` (`wait`, `leave` or `skip`) and
    /// `wait_timeout_seconds` (1 to 120); other keys are kept for clients.
    #[serde(default)]
    #[schema(schema_with = crate::dto::schema::channel_settings_or_null)]
    pub settings: Option<serde_json::Value>,
}

/// Changes to a channel; absent fields stay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelRequest {
    /// New name (as in creation).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
    /// New description (as in creation).
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
    /// New visibility.
    #[schema(schema_with = crate::dto::schema::visibility)]
    pub visibility: Option<String>,
    /// Let guests in.
    pub allow_guests: Option<bool>,
    /// New settings (a JSON object, as in creation; replaces the old).
    #[schema(schema_with = crate::dto::schema::channel_settings_or_null)]
    pub settings: Option<serde_json::Value>,
    /// Apply only if the channel is still at this version (else 409
    /// `version_mismatch`).
    #[serde(default, deserialize_with = "crate::dto::whole_number")]
    pub expected_version: Option<u64>,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionChange {
    /// The role's row (not owner).
    #[schema(schema_with = crate::dto::schema::given_role)]
    pub role: String,
    /// The permission.
    #[schema(schema_with = crate::dto::schema::permission)]
    pub permission: String,
    /// Allowed or not; `null` goes back to the default.
    pub allowed: Option<bool>,
}

/// Changes to the matrix, applied together.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionsRequest {
    /// The cells to change (at most 64).
    #[schema(max_items = 64)]
    pub changes: Vec<PermissionChange>,
}

/// A role to give.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    /// admin, moderator or viewer.
    #[schema(schema_with = crate::dto::schema::given_role)]
    pub role: String,
}

/// A new invite.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// The role it gives (default viewer; below your own).
    #[schema(schema_with = crate::dto::schema::given_role_or_null)]
    pub role: Option<String>,
    /// How many times it may be used (1 to 100000; default: no limit).
    #[schema(minimum = 1, maximum = 100000)]
    #[serde(default, deserialize_with = "crate::dto::whole_number")]
    pub max_uses: Option<u64>,
    /// Seconds until it stops working (60 to 31536000; default: never).
    #[schema(minimum = 60, maximum = 31536000)]
    #[serde(default, deserialize_with = "crate::dto::whole_number")]
    pub expires_in_seconds: Option<u64>,
}

/// A ban.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// Why (up to 500 characters, no control characters).
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub reason: String,
    /// Seconds until it lifts (60 to 315360000; default: for good).
    #[schema(minimum = 60, maximum = 315360000)]
    #[serde(default, deserialize_with = "crate::dto::whole_number")]
    pub expires_in_seconds: Option<u64>,
}

/// Path of a channel.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChannelPath {
    /// Channel id.
    #[param(value_type = String, format = Uuid)]
    pub id: ChannelId,
}

/// Path of a member of a channel.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// Channel id.
    #[param(value_type = String, format = Uuid)]
    pub id: ChannelId,
    /// User id.
    #[param(value_type = String, format = Uuid)]
    pub user_id: UserId,
}

/// Path of an invite of a channel.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChannelInvitePath {
    /// Channel id.
    #[param(value_type = String, format = Uuid)]
    pub id: ChannelId,
    /// Invite code.
    pub code: String,
}

/// Path of an invite.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InvitePath {
    /// Invite code.
    pub code: String,
}

// ---------------------------------------------------------------- loading

/// A channel as the caller sees it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The channel.
    pub channel: Channel,
    /// Its permission matrix.
    pub matrix: PermissionMatrix,
    /// The caller's access.
    pub access: Access,
}

impl Loaded {
    /// 404 unless visible, 403 unless allowed.
    ///
    /// # Errors
    /// 404 or 403.
    pub fn require(&self, p: Permission) -> ApiResult<()> {
        self.access.require(&self.matrix, p, "channel")
    }
}

/// The rules' view of a caller.
pub fn who(caller: &Caller) -> Who {
    match caller {
        Caller::Anonymous => Who::Anonymous,
        Caller::Guest(_) => Who::Guest,
        Caller::User(u) => Who::User { admin: u.is_admin },
    }
}

/// Loads channel `id` for `caller`: 404 when it does not exist or the
/// caller may not see it (the same answer, so ids of private channels give
/// nothing away).
///
/// # Errors
/// 404, or a backend error.
pub async fn load(app: &App, caller: &Caller, id: ChannelId) -> ApiResult<Loaded> {
    let mut tx = app.backends.db.read().await?;
    let channel = match tx.channel(id).await {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ApiError::not_found("channel not found"))
        }
        Err(e) => return Err(e.into()),
    };
    let (role, banned) = match caller.user() {
        Some(u) => (
            tx.member(id, u.id).await?.map(|m| m.role),
            tx.ban_of(id, u.id).await?.is_some(),
        ),
        None => (None, false),
    };
    let matrix = tx.permissions(id).await?;
    tx.commit().await?;
    let access = access(&channel, who(caller), role, banned);
    access.see("channel")?;
    Ok(Loaded {
        channel,
        matrix,
        access,
    })
}

/// 404 "no such user" unless `user` exists.
pub(crate) async fn require_user(
    tx: &mut (impl videosync_core::db::Users + ?Sized),
    user: UserId,
) -> ApiResult<()> {
    match tx.user(user).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(ApiError::not_found("no such user")),
        Err(e) => Err(e.into()),
    }
}

/// The keys of `settings` the rooms read must hold good values (see
/// [`crate::realtime::settings`]).
fn check_room_settings(settings: &serde_json::Value) -> ApiResult<()> {
    crate::realtime::settings::RoomSettings::parse(settings)
        .map(|_| ())
        .map_err(ApiError::invalid)
}

fn parse<T: std::str::FromStr<Err = videosync_core::Error>>(s: &str) -> ApiResult<T> {
    s.parse::<T>().map_err(ApiError::from)
}

fn given_role(s: &str) -> ApiResult<Role> {
    match parse::<Role>(s)? {
        Role::Owner => Err(ApiError::invalid(
            "a channel has one owner; give admin, moderator or viewer",
        )),
        r => Ok(r),
    }
}

// ---------------------------------------------------------------- channels

/// Public channels, newest first.
#[utoipa::path(get, path = "/channels", tag = "channels", security(("bearer" = []), ()), params(PageParams),
    responses((status = 200, description = "A page of public channels", body = PageOf<ChannelView>)))]
async fn list_public(
    State(app): State<AppState>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<ChannelView>>> {
    let req = page.request()?;
    let mut tx = app.backends.db.read().await?;
    let page = tx.public_channels(req).await?;
    tx.commit().await?;
    let w = who(&caller);
    // The listing shows each channel as an outsider sees it; `my_role`
    // comes from the channel's own endpoint.
    Ok(Json(PageOf::from_page(page, |c| {
        let a = access(&c, w, None, false);
        ChannelView::new(&c, &a, &PermissionMatrix::default())
    })))
}

/// Make a channel; the caller owns it.
#[utoipa::path(post, path = "/channels", tag = "channels", security(("bearer" = [])),
    request_body = CreateChannelRequest,
    responses((status = 201, description = "The new channel", body = ChannelView)))]
async fn create(
    State(app): State<AppState>,
    Authed(user): Authed,
    Json(req): Json<CreateChannelRequest>,
) -> ApiResult<(StatusCode, Json<ChannelView>)> {
    let new = NewChannel {
        description: req.description,
        allow_guests: req.allow_guests,
        settings: req.settings.unwrap_or_else(|| serde_json::json!({})),
        ..NewChannel::new(user.id, req.name, parse(&req.visibility)?)
    };
    new.validate()?;
    check_room_settings(&new.settings)?;
    let mut tx = app.backends.db.begin().await?;
    let channel = tx.create_channel(new).await?;
    tx.commit().await?;
    let a = access(
        &channel,
        Who::User {
            admin: user.is_admin,
        },
        Some(Role::Owner),
        false,
    );
    Ok((
        StatusCode::CREATED,
        Json(ChannelView::new(&channel, &a, &PermissionMatrix::default())),
    ))
}

/// The channels the caller is a member of.
#[utoipa::path(get, path = "/me/channels", tag = "channels", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "A page of the caller's channels", body = PageOf<ChannelView>)))]
async fn list_mine(
    State(app): State<AppState>,
    Authed(user): Authed,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<ChannelView>>> {
    let req = page.request()?;
    let mut tx = app.backends.db.read().await?;
    let page = tx.channels_of(user.id, req).await?;
    let mut matrices = Vec::with_capacity(page.items.len());
    for (c, _) in &page.items {
        matrices.push(tx.permissions(c.id).await?);
    }
    tx.commit().await?;
    let w = Who::User {
        admin: user.is_admin,
    };
    let mut matrices = matrices.into_iter();
    Ok(Json(PageOf::from_page(page, |(c, role)| {
        let m = matrices.next().unwrap_or_default();
        ChannelView::new(&c, &access(&c, w, Some(role), false), &m)
    })))
}

/// One channel.
#[utoipa::path(get, path = "/channels/{id}", tag = "channels", security(("bearer" = []), ()), params(ChannelPath),
    responses((status = 200, description = "The channel", body = ChannelView)))]
async fn get_channel(
    State(app): State<AppState>,
    caller: Caller,
    Path(p): Path<ChannelPath>,
) -> ApiResult<Json<ChannelView>> {
    let l = load(&app, &caller, p.id).await?;
    Ok(Json(ChannelView::new(&l.channel, &l.access, &l.matrix)))
}

/// Change a channel (needs `edit_channel`).
#[utoipa::path(patch, path = "/channels/{id}", tag = "channels", security(("bearer" = [])),
    params(ChannelPath), request_body = UpdateChannelRequest,
    responses((status = 200, description = "The updated channel", body = ChannelView)))]
async fn update(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelPath>,
    Json(req): Json<UpdateChannelRequest>,
) -> ApiResult<Json<ChannelView>> {
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::EditChannel)?;
    if let Some(settings) = &req.settings {
        check_room_settings(settings)?;
    }
    let update = ChannelUpdate {
        name: req.name,
        description: req.description,
        visibility: req.visibility.as_deref().map(parse).transpose()?,
        allow_guests: req.allow_guests,
        settings: req.settings,
    };
    let mut tx = app.backends.db.begin().await?;
    let channel = tx
        .update_channel(p.id, req.expected_version, update)
        .await?;
    tx.commit().await?;
    app.realtime.channel_changed(p.id);
    Ok(Json(ChannelView::new(&channel, &l.access, &l.matrix)))
}

/// Delete a channel with its videos (owner or instance administrator).
#[utoipa::path(delete, path = "/channels/{id}", tag = "channels", security(("bearer" = [])),
    params(ChannelPath), responses((status = 204, description = "Deleted")))]
async fn delete(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelPath>,
) -> ApiResult<StatusCode> {
    let l = load(&app, &caller, p.id).await?;
    if !(l.access.admin || l.access.role == Some(Role::Owner)) {
        return Err(l.access.refuse("only the owner may delete a channel"));
    }
    delete_channel(&app, p.id).await?;
    app.realtime.channel_changed(p.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a channel: its videos' objects, then the records.
///
/// # Errors
/// A backend error (what was removed stays removed; a retry finishes).
pub async fn delete_channel(app: &App, id: ChannelId) -> ApiResult<()> {
    let mut page = PageRequest::first(200);
    loop {
        let mut tx = app.backends.db.read().await?;
        let videos = tx.channel_videos(id, page).await?;
        tx.commit().await?;
        for v in &videos.items {
            crate::videos::delete_video(app, v).await?;
        }
        match videos.next {
            Some(next) => page = PageRequest::after(next, 200),
            None => break,
        }
    }
    let mut tx = app.backends.db.begin().await?;
    match tx.delete_channel(id).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    tracing::info!(channel = %id, "channel deleted");
    Ok(())
}

/// Deletes every channel `user` owns (before the account goes).
///
/// # Errors
/// A backend error.
pub async fn delete_owned_channels(app: &App, user: UserId) -> ApiResult<()> {
    loop {
        let mut tx = app.backends.db.read().await?;
        let page = tx.channels_of(user, PageRequest::first(200)).await?;
        tx.commit().await?;
        let owned: Vec<ChannelId> = page
            .items
            .iter()
            .filter(|(_, r)| *r == Role::Owner)
            .map(|(c, _)| c.id)
            .collect();
        for id in &owned {
            delete_channel(app, *id).await?;
        }
        if page.next.is_none() || owned.is_empty() {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------- permissions

/// The channel's permission matrix (members only).
#[utoipa::path(get, path = "/channels/{id}/permissions", tag = "channels", security(("bearer" = []), ()),
    params(ChannelPath),
    responses((status = 200, description = "The matrix", body = PermissionsView)))]
async fn get_permissions(
    State(app): State<AppState>,
    caller: Caller,
    Path(p): Path<ChannelPath>,
) -> ApiResult<Json<PermissionsView>> {
    let l = load(&app, &caller, p.id).await?;
    Ok(Json(PermissionsView::from(&l.matrix)))
}

/// Change cells of the matrix (the owner only); `allowed: null` restores
/// the default.
#[utoipa::path(patch, path = "/channels/{id}/permissions", tag = "channels",
    security(("bearer" = [])), params(ChannelPath), request_body = PermissionsRequest,
    responses((status = 200, description = "The new matrix", body = PermissionsView)))]
async fn patch_permissions(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelPath>,
    Json(req): Json<PermissionsRequest>,
) -> ApiResult<Json<PermissionsView>> {
    let l = load(&app, &caller, p.id).await?;
    // Asked before the changes are looked at: an empty list must not tell
    // anyone else that they may edit the matrix.
    if !l.access.may_edit_matrix(Role::Viewer) {
        return Err(l
            .access
            .refuse("only the owner may change the permission matrix"));
    }
    if req.changes.len() > 64 {
        return Err(ApiError::invalid("at most 64 changes at once"));
    }
    let mut changes = Vec::with_capacity(req.changes.len());
    for c in &req.changes {
        let role: Role = parse(&c.role)?;
        if role == Role::Owner {
            return Err(ApiError::invalid("the owner may always do everything"));
        }
        if !l.access.may_edit_matrix(role) {
            return Err(l
                .access
                .refuse("only the owner may change the permission matrix"));
        }
        changes.push((role, parse::<Permission>(&c.permission)?, c.allowed));
    }
    let mut tx = app.backends.db.begin().await?;
    let mut matrix = l.matrix;
    for (role, permission, allowed) in changes {
        matrix = tx.set_permission(p.id, role, permission, allowed).await?;
    }
    tx.commit().await?;
    app.realtime.channel_changed(p.id);
    Ok(Json(PermissionsView::from(&matrix)))
}

// ---------------------------------------------------------------- members

/// The channel's members (members and instance administrators only).
#[utoipa::path(get, path = "/channels/{id}/members", tag = "members", security(("bearer" = [])),
    params(ChannelPath, PageParams),
    responses((status = 200, description = "A page of members", body = PageOf<MemberView>)))]
async fn members(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelPath>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<MemberView>>> {
    let req = page.request()?;
    let l = load(&app, &caller, p.id).await?;
    if !(l.access.admin || l.access.role.is_some()) {
        return Err(l.access.refuse("only members see who else is a member"));
    }
    let mut tx = app.backends.db.read().await?;
    let page = tx.members(p.id, req).await?;
    tx.commit().await?;
    Ok(Json(PageOf::from_page(page, MemberView::from)))
}

pub(crate) async fn member_role(
    app: &App,
    channel: ChannelId,
    user: UserId,
) -> ApiResult<Option<Role>> {
    let mut tx = app.backends.db.read().await?;
    let role = tx.member(channel, user).await?.map(|m| m.role);
    tx.commit().await?;
    Ok(role)
}

/// Give a member another role (needs `edit_channel` and a higher role than
/// both their old and new one).
#[utoipa::path(put, path = "/channels/{id}/members/{user_id}", tag = "members",
    security(("bearer" = [])), params(MemberPath), request_body = SetRoleRequest,
    responses((status = 200, description = "The member", body = MemberView)))]
async fn set_role(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<MemberPath>,
    Json(req): Json<SetRoleRequest>,
) -> ApiResult<Json<MemberView>> {
    let l = load(&app, &caller, p.id).await?;
    let role = given_role(&req.role)?;
    let Some(current) = member_role(&app, p.id, p.user_id).await? else {
        return Err(ApiError::not_found("no such member"));
    };
    if !l
        .access
        .may_act_on(&l.matrix, Permission::EditChannel, Some(current))
        || !l.access.may_grant(role)
    {
        return Err(l.access.refuse(
            "changing a role needs edit_channel and a role above both the old and the new one",
        ));
    }
    let mut tx = app.backends.db.begin().await?;
    let member = tx.set_role(p.id, p.user_id, role).await?;
    tx.commit().await?;
    app.realtime.channel_changed(p.id);
    Ok(Json(MemberView::from(member)))
}

/// Remove a member (needs `kick_ban` and a higher role). They may come
/// back through the channel's visibility or an invite; ban to keep them out.
#[utoipa::path(delete, path = "/channels/{id}/members/{user_id}", tag = "members",
    security(("bearer" = [])), params(MemberPath),
    responses((status = 204, description = "Removed")))]
async fn kick(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<MemberPath>,
) -> ApiResult<StatusCode> {
    let l = load(&app, &caller, p.id).await?;
    let Some(current) = member_role(&app, p.id, p.user_id).await? else {
        return Err(ApiError::not_found("no such member"));
    };
    if !l
        .access
        .may_act_on(&l.matrix, Permission::KickBan, Some(current))
    {
        return Err(l
            .access
            .refuse("removing a member needs kick_ban and a role above theirs"));
    }
    let mut tx = app.backends.db.begin().await?;
    tx.remove_member(p.id, p.user_id).await?;
    tx.commit().await?;
    app.realtime.kick(p.id, p.user_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Join a public or unlisted channel as a viewer.
#[utoipa::path(post, path = "/channels/{id}/join", tag = "members", security(("bearer" = [])),
    params(ChannelPath),
    responses((status = 200, description = "The membership", body = MemberView)))]
async fn join(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<ChannelPath>,
) -> ApiResult<Json<MemberView>> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    if l.access.banned {
        return Err(ApiError::banned());
    }
    let mut tx = app.backends.db.begin().await?;
    if let Some(m) = tx.member(p.id, user.id).await? {
        tx.commit().await?;
        return Ok(Json(MemberView::from(m)));
    }
    if l.channel.visibility == Visibility::Private {
        return Err(ApiError::forbidden("a private channel is joined by invite"));
    }
    let m = tx.add_member(p.id, user.id, Role::Viewer).await?;
    tx.commit().await?;
    // A visitor already in the room gets the member's rights at once.
    app.realtime.channel_changed(p.id);
    Ok(Json(MemberView::from(m)))
}

/// Leave a channel (the owner cannot; delete it instead).
#[utoipa::path(post, path = "/channels/{id}/leave", tag = "members", security(("bearer" = [])),
    params(ChannelPath), responses((status = 204, description = "Left")))]
async fn leave(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<ChannelPath>,
) -> ApiResult<StatusCode> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    match l.access.role {
        None => Err(ApiError::not_found("you are not a member of this channel")),
        Some(Role::Owner) => Err(ApiError::conflict(
            "the owner cannot leave; delete the channel instead",
        )),
        Some(_) => {
            let mut tx = app.backends.db.begin().await?;
            tx.remove_member(p.id, user.id).await?;
            tx.commit().await?;
            app.realtime.channel_changed(p.id);
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

// ---------------------------------------------------------------- invites

/// The channel's invites (needs `invite`).
#[utoipa::path(get, path = "/channels/{id}/invites", tag = "invites", security(("bearer" = [])),
    params(ChannelPath, PageParams),
    responses((status = 200, description = "A page of invites", body = PageOf<InviteView>)))]
async fn list_invites(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelPath>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<InviteView>>> {
    let req = page.request()?;
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::Invite)?;
    let mut tx = app.backends.db.read().await?;
    let page = tx.invites(p.id, req).await?;
    tx.commit().await?;
    Ok(Json(PageOf::from_page(page, |i| InviteView::new(i, &app))))
}

/// Letters of invite codes: no look-alikes (0/O, 1/l/I).
const CODE_ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
/// Length of an invite code (about 70 bits).
const CODE_LEN: usize = 12;

/// The instant `seconds` from now, when given; `seconds` must lie in `range`.
fn expiry(
    app: &App,
    seconds: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
    rule: &str,
) -> ApiResult<Option<videosync_core::Timestamp>> {
    match seconds {
        Some(s) if !range.contains(&s) => Err(ApiError::invalid(rule)),
        Some(s) => Ok(Some(
            app.backends
                .clock
                .now()
                .saturating_add(Duration::from_secs(s)),
        )),
        None => Ok(None),
    }
}

fn new_invite_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// Make an invite (needs `invite`; the role must be below your own).
#[utoipa::path(post, path = "/channels/{id}/invites", tag = "invites", security(("bearer" = [])),
    params(ChannelPath), request_body = CreateInviteRequest,
    responses((status = 201, description = "The invite", body = InviteView)))]
async fn create_invite(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<ChannelPath>,
    Json(req): Json<CreateInviteRequest>,
) -> ApiResult<(StatusCode, Json<InviteView>)> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::Invite)?;
    let role = match &req.role {
        Some(r) => given_role(r)?,
        None => Role::Viewer,
    };
    if !l.access.may_grant(role) {
        return Err(ApiError::forbidden("an invite gives a role below your own"));
    }
    if req.max_uses.is_some_and(|n| !(1..=100_000).contains(&n)) {
        return Err(ApiError::invalid("max_uses must be 1 to 100000"));
    }
    let expires_at = expiry(
        &app,
        req.expires_in_seconds,
        60..=31_536_000,
        "expires_in_seconds must be 60 to 31536000 (a year)",
    )?;
    let mut tx = app.backends.db.begin().await?;
    let invite = tx
        .create_invite(NewInvite {
            code: new_invite_code(),
            channel_id: p.id,
            created_by: user.id,
            role,
            max_uses: req.max_uses,
            expires_at,
        })
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(InviteView::new(invite, &app))))
}

/// Revoke an invite (needs `invite`).
#[utoipa::path(delete, path = "/channels/{id}/invites/{code}", tag = "invites",
    security(("bearer" = [])), params(ChannelInvitePath),
    responses((status = 204, description = "Revoked")))]
async fn revoke_invite(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelInvitePath>,
) -> ApiResult<StatusCode> {
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::Invite)?;
    let invite = usable_invite_record(&app, &p.code).await?;
    if invite.channel_id != p.id {
        return Err(ApiError::not_found("invite not found"));
    }
    let mut tx = app.backends.db.begin().await?;
    tx.revoke_invite(&p.code).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The invite record, or 404 for an unknown or malformed code.
async fn usable_invite_record(app: &App, code: &str) -> ApiResult<Invite> {
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::not_found("invite not found"));
    }
    let mut tx = app.backends.db.read().await?;
    let invite = match tx.invite(code).await {
        Ok(i) => i,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ApiError::not_found("invite not found"))
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(invite)
}

/// What an invite leads to (anyone with the code).
#[utoipa::path(get, path = "/invites/{code}", tag = "invites", params(InvitePath),
    responses((status = 200, description = "The invite's channel", body = InvitePreview)))]
async fn preview_invite(
    State(app): State<AppState>,
    Path(p): Path<InvitePath>,
) -> ApiResult<Json<InvitePreview>> {
    let invite = usable_invite_record(&app, &p.code).await?;
    let now = app.backends.clock.now();
    let spent = invite.max_uses.is_some_and(|m| invite.uses >= m);
    if invite.revoked || spent || invite.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::invite_gone());
    }
    let mut tx = app.backends.db.read().await?;
    let channel = tx.channel(invite.channel_id).await?;
    tx.commit().await?;
    Ok(Json(InvitePreview {
        code: invite.code,
        channel_id: channel.id.to_string(),
        channel_name: channel.name,
        channel_description: channel.description,
        role: invite.role.to_string(),
        expires_at: invite.expires_at.map(rfc3339),
    }))
}

/// Accept an invite: become a member with its role (an existing member
/// keeps the higher of the two roles).
#[utoipa::path(post, path = "/invites/{code}/accept", tag = "invites", security(("bearer" = [])),
    params(InvitePath),
    responses((status = 200, description = "The membership", body = MemberView)))]
async fn accept_invite(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<InvitePath>,
) -> ApiResult<Json<MemberView>> {
    let invite = usable_invite_record(&app, &p.code).await?;
    let mut tx = app.backends.db.begin().await?;
    if tx.ban_of(invite.channel_id, user.id).await?.is_some() {
        return Err(ApiError::banned());
    }
    if let Some(m) = tx.member(invite.channel_id, user.id).await? {
        if !invite.role.outranks(m.role) {
            tx.commit().await?;
            return Ok(Json(MemberView::from(m)));
        }
    }
    let invite = match tx.redeem_invite(&p.code).await {
        Ok(i) => i,
        Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Precondition) => {
            return Err(ApiError::invite_gone())
        }
        Err(e) => return Err(e.into()),
    };
    let member = match tx.member(invite.channel_id, user.id).await? {
        Some(_) => tx.set_role(invite.channel_id, user.id, invite.role).await?,
        None => {
            tx.add_member(invite.channel_id, user.id, invite.role)
                .await?
        }
    };
    tx.commit().await?;
    app.realtime.channel_changed(invite.channel_id);
    Ok(Json(MemberView::from(member)))
}

// ---------------------------------------------------------------- bans

/// The channel's bans (needs `kick_ban`).
#[utoipa::path(get, path = "/channels/{id}/bans", tag = "members", security(("bearer" = [])),
    params(ChannelPath, PageParams),
    responses((status = 200, description = "A page of bans", body = PageOf<BanView>)))]
async fn list_bans(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<ChannelPath>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<BanView>>> {
    let req = page.request()?;
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::KickBan)?;
    let mut tx = app.backends.db.read().await?;
    let page = tx.bans(p.id, req).await?;
    tx.commit().await?;
    Ok(Json(PageOf::from_page(page, BanView::from)))
}

/// Ban a user (needs `kick_ban` and a higher role than theirs); a member
/// is removed at once.
#[utoipa::path(put, path = "/channels/{id}/bans/{user_id}", tag = "members",
    security(("bearer" = [])), params(MemberPath), request_body = BanRequest,
    responses((status = 200, description = "The ban", body = BanView)))]
async fn ban(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<MemberPath>,
    Json(req): Json<BanRequest>,
) -> ApiResult<Json<BanView>> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    let target = member_role(&app, p.id, p.user_id).await?;
    l.require(Permission::KickBan)?;
    if p.user_id == user.id || !l.access.may_act_on(&l.matrix, Permission::KickBan, target) {
        return Err(ApiError::forbidden(
            "banning needs kick_ban and a role above theirs (and never the owner)",
        ));
    }
    if req.reason.chars().count() > 500 || req.reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "a reason is at most 500 characters, without control characters",
        ));
    }
    let expires_at = expiry(
        &app,
        req.expires_in_seconds,
        60..=315_360_000,
        "expires_in_seconds must be 60 to 315360000",
    )?;
    let mut tx = app.backends.db.begin().await?;
    // The user must exist: a ban on an unknown id is a 404.
    require_user(&mut tx, p.user_id).await?;
    let ban = tx
        .ban(NewBan {
            channel_id: p.id,
            user_id: p.user_id,
            banned_by: user.id,
            reason: req.reason,
            expires_at,
        })
        .await?;
    tx.commit().await?;
    app.realtime.channel_changed(p.id);
    Ok(Json(BanView::from(ban)))
}

/// Lift a ban (needs `kick_ban`).
#[utoipa::path(delete, path = "/channels/{id}/bans/{user_id}", tag = "members",
    security(("bearer" = [])), params(MemberPath),
    responses((status = 204, description = "Lifted")))]
async fn unban(
    State(app): State<AppState>,
    Identified(caller): Identified,
    Path(p): Path<MemberPath>,
) -> ApiResult<StatusCode> {
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::KickBan)?;
    let mut tx = app.backends.db.begin().await?;
    let lifted = tx.unban(p.id, p.user_id).await?;
    tx.commit().await?;
    if lifted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such ban"))
    }
}
