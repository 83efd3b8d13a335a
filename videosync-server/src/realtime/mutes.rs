//! Mutes: a moderator silences a user in a channel's chat for a while (a
//! timeout). A muted user still watches with the room; their chat,
//! reactions and typing are refused until the mute ends or is lifted.
//!
//! Mutes live in the shared key-value store, one set per channel whose
//! members (user ids) expire with their mutes, so every instance sees the
//! same ones and an ended mute needs no clean-up. A key-value store that
//! keeps nothing across a restart (Redis without persistence) lifts the
//! mutes of that moment; bans, which must outlast anything, are in the
//! database.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use videosync_core::db::Permission;
use videosync_core::{ChannelId, Timestamp, UserId};

use crate::auth::Authed;
use crate::auth::Caller;
use crate::channels::{load, member_role, require_user, ChannelPath, MemberPath};
use crate::dto::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// Longest mute: a week.
pub const MAX_MUTE_SECONDS: u64 = 7 * 24 * 3600;

fn mutes_key(app: &AppState, channel: ChannelId) -> ApiResult<videosync_core::kv::Key> {
    app.kv_key(&format!("channel.{channel}.mutes"))
}

/// The users muted in `channel` now, with when each mute ends.
///
/// # Errors
/// The key-value store's.
pub(crate) async fn muted(
    app: &AppState,
    channel: ChannelId,
) -> ApiResult<HashMap<UserId, Timestamp>> {
    let members = app
        .backends
        .kv
        .set_members(&mutes_key(app, channel)?)
        .await?;
    Ok(members
        .into_iter()
        .filter_map(|m| Some((m.name.parse().ok()?, m.expires_at)))
        .collect())
}

/// A mute in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MuteView {
    /// Who is muted.
    pub user_id: String,
    /// When the mute ends (RFC 3339).
    pub expires_at: String,
}

/// The channel's mutes in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MuteList {
    /// Soonest to end first.
    pub items: Vec<MuteView>,
}

/// How long to mute.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    /// 1 to 604800 seconds (a week).
    #[schema(minimum = 1, maximum = 604800)]
    #[serde(deserialize_with = "crate::dto::required_whole_number")]
    pub seconds: u64,
}

/// The mutes in force in a channel (needs `moderate_chat`).
#[utoipa::path(get, path = "/channels/{id}/mutes", tag = "realtime", security(("bearer" = [])),
    params(ChannelPath),
    responses((status = 200, description = "The mutes in force", body = MuteList)))]
async fn list_mutes(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<ChannelPath>,
) -> ApiResult<Json<MuteList>> {
    let l = load(&app, &Caller::User(Box::new(user)), p.id).await?;
    l.require(Permission::ModerateChat)?;
    let mut items: Vec<(UserId, Timestamp)> = muted(&app, p.id).await?.into_iter().collect();
    items.sort_by_key(|(u, at)| (*at, *u));
    Ok(Json(MuteList {
        items: items
            .into_iter()
            .map(|(u, at)| MuteView {
                user_id: u.to_string(),
                expires_at: rfc3339(at),
            })
            .collect(),
    }))
}

/// Mute a user in the channel's chat for `seconds` (needs `moderate_chat`
/// and a role above theirs; muting again sets the end anew). They stay in
/// the room; their chat, reactions and typing are refused until then.
#[utoipa::path(put, path = "/channels/{id}/mutes/{user_id}", tag = "realtime",
    security(("bearer" = [])), params(MemberPath), request_body = MuteRequest,
    responses((status = 200, description = "The mute", body = MuteView)))]
async fn mute(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<MemberPath>,
    Json(req): Json<MuteRequest>,
) -> ApiResult<Json<MuteView>> {
    let caller = Caller::User(Box::new(user.clone()));
    let l = load(&app, &caller, p.id).await?;
    l.require(Permission::ModerateChat)?;
    let target = member_role(&app, p.id, p.user_id).await?;
    if p.user_id == user.id
        || !l
            .access
            .may_act_on(&l.matrix, Permission::ModerateChat, target)
    {
        return Err(ApiError::forbidden(
            "muting needs moderate_chat and a role above theirs (and never the owner)",
        ));
    }
    if !(1..=MAX_MUTE_SECONDS).contains(&req.seconds) {
        return Err(ApiError::invalid(format!(
            "seconds must be 1 to {MAX_MUTE_SECONDS}"
        )));
    }
    let mut tx = app.backends.db.read().await?;
    require_user(&mut tx, p.user_id).await?;
    tx.commit().await?;
    let key = mutes_key(&app, p.id)?;
    app.backends
        .kv
        .set_add(
            &key,
            &p.user_id.to_string(),
            Duration::from_secs(req.seconds),
        )
        .await?;
    // The end as the store keeps it (its clock, for Redis).
    let expires_at = muted(&app, p.id)
        .await?
        .get(&p.user_id)
        .copied()
        .ok_or_else(|| ApiError::conflict("the mute ended at once; try again"))?;
    app.realtime.channel_changed(p.id);
    Ok(Json(MuteView {
        user_id: p.user_id.to_string(),
        expires_at: rfc3339(expires_at),
    }))
}

/// Lift a mute (needs `moderate_chat`).
#[utoipa::path(delete, path = "/channels/{id}/mutes/{user_id}", tag = "realtime",
    security(("bearer" = [])), params(MemberPath),
    responses((status = 204, description = "Lifted")))]
async fn unmute(
    State(app): State<AppState>,
    Authed(user): Authed,
    Path(p): Path<MemberPath>,
) -> ApiResult<StatusCode> {
    let l = load(&app, &Caller::User(Box::new(user)), p.id).await?;
    l.require(Permission::ModerateChat)?;
    let lifted = app
        .backends
        .kv
        .set_remove(&mutes_key(&app, p.id)?, &p.user_id.to_string())
        .await?;
    if !lifted {
        return Err(ApiError::not_found("no such mute"));
    }
    app.realtime.channel_changed(p.id);
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of mutes.
pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_mutes))
        .routes(routes!(mute, unmute))
}
