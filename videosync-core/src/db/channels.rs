//! Channels ([`Channels`]), their members and roles ([`Members`]), the
//! permission matrix, invites ([`Invites`]) and bans ([`Bans`]).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::check_text;
use crate::page::{Page, PageRequest};
use crate::{ChannelId, Error, Result, Timestamp, UserId};

/// Longest channel name, in characters.
pub const MAX_CHANNEL_NAME_CHARS: usize = 100;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::invalid_input(format!(
                        concat!("`{}` is not a ", $what, "; expected one of: {}"),
                        other.escape_debug(),
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}

text_enum!(
    /// Who may find and watch a channel.
    Visibility, "visibility" {
        /// Listed; anyone may watch.
        Public = "public",
        /// Not listed; anyone with the link may watch.
        Unlisted = "unlisted",
        /// Members only.
        Private = "private",
    }
);

text_enum!(
    /// A member's role in a channel, from most to least powerful.
    Role, "role" {
        /// Made the channel; can do everything and cannot be removed.
        Owner = "owner",
        /// Runs the channel beside the owner.
        Admin = "admin",
        /// Keeps order in chat and the room.
        Moderator = "moderator",
        /// Watches and talks.
        Viewer = "viewer",
    }
);

impl Role {
    /// Whether this role outranks `other` (may kick, ban or re-role it).
    pub fn outranks(self, other: Role) -> bool {
        self < other
    }
}

text_enum!(
    /// Something a member may be allowed to do in a channel.
    Permission, "permission" {
        /// Play, pause, seek and change the rate for the room.
        ControlPlayback = "control_playback",
        /// Add, remove and reorder the queue.
        ManageQueue = "manage_queue",
        /// Upload videos to the channel.
        Upload = "upload",
        /// Write in chat.
        Chat = "chat",
        /// Delete others' messages, mute, slow mode.
        ModerateChat = "moderate_chat",
        /// Make invites.
        Invite = "invite",
        /// Kick and ban members.
        KickBan = "kick_ban",
        /// Change the channel's name, visibility, settings and matrix.
        EditChannel = "edit_channel",
    }
);

/// What each role may do in one channel: the defaults, changed by the
/// channel's overrides. The owner may always do everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionMatrix {
    /// The channel's changes to the defaults.
    pub overrides: BTreeMap<Role, BTreeMap<Permission, bool>>,
}

impl PermissionMatrix {
    /// Whether `role` may do `permission` by default.
    pub fn default_allows(role: Role, permission: Permission) -> bool {
        use Permission::*;
        match role {
            Role::Owner | Role::Admin => true,
            Role::Moderator => !matches!(permission, EditChannel),
            Role::Viewer => matches!(permission, Chat),
        }
    }

    /// Whether `role` may do `permission` in this channel.
    pub fn allows(&self, role: Role, permission: Permission) -> bool {
        if role == Role::Owner {
            return true;
        }
        self.overrides
            .get(&role)
            .and_then(|p| p.get(&permission))
            .copied()
            .unwrap_or_else(|| Self::default_allows(role, permission))
    }

    /// The whole table: every role with every permission it has.
    pub fn table(&self) -> BTreeMap<Role, BTreeMap<Permission, bool>> {
        Role::ALL
            .iter()
            .map(|&r| {
                let perms = Permission::ALL
                    .iter()
                    .map(|&p| (p, self.allows(r, p)))
                    .collect();
                (r, perms)
            })
            .collect()
    }
}

/// A channel: a place where people watch together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    /// Its id.
    pub id: ChannelId,
    /// Its name.
    pub name: String,
    /// What it is about.
    pub description: String,
    /// Who made it.
    pub owner_id: UserId,
    /// Who may find and watch it.
    pub visibility: Visibility,
    /// Whether people without an account may join (public channels only).
    pub allow_guests: bool,
    /// Settings the server keeps for the channel (sync policy, slow mode,
    /// ...), as a JSON object.
    pub settings: serde_json::Value,
    /// Moves on every change, for compare-and-set.
    pub version: u64,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// What a channel is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChannel {
    /// Its id, or a fresh one.
    pub id: Option<ChannelId>,
    /// The owner (becomes a member with [`Role::Owner`]).
    pub owner_id: UserId,
    /// 1 to [`MAX_CHANNEL_NAME_CHARS`] characters.
    pub name: String,
    /// Up to 5000 characters.
    pub description: String,
    /// Who may find and watch it.
    pub visibility: Visibility,
    /// Whether guests may join.
    pub allow_guests: bool,
    /// Settings, a JSON object.
    pub settings: serde_json::Value,
}

impl NewChannel {
    /// A channel with this owner, name and visibility and defaults otherwise.
    pub fn new(owner_id: UserId, name: impl Into<String>, visibility: Visibility) -> Self {
        NewChannel {
            id: None,
            owner_id,
            name: name.into(),
            description: String::new(),
            visibility,
            allow_guests: false,
            settings: serde_json::json!({}),
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        check_text(
            "a channel description",
            &self.description,
            0,
            5000,
            &['\n', '\t'],
        )?;
        check_settings(&self.settings)
    }
}

fn check_name(name: &str) -> Result<()> {
    check_text("a channel name", name, 1, MAX_CHANNEL_NAME_CHARS, &[])?;
    if name.trim().is_empty() {
        return Err(Error::invalid_input("a channel name must not be blank"));
    }
    Ok(())
}

fn check_settings(settings: &serde_json::Value) -> Result<()> {
    if !settings.is_object() || settings.to_string().len() > 16 * 1024 {
        return Err(Error::invalid_input(
            "channel settings must be a JSON object of at most 16 KiB",
        ));
    }
    Ok(())
}

/// A change to a channel: each `Some` field is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelUpdate {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new visibility.
    pub visibility: Option<Visibility>,
    /// Guests allowed or not.
    pub allow_guests: Option<bool>,
    /// New settings (replacing the old object).
    pub settings: Option<serde_json::Value>,
}

/// A member of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The channel.
    pub channel_id: ChannelId,
    /// The user.
    pub user_id: UserId,
    /// Their username.
    pub username: String,
    /// Their shown name.
    pub display_name: String,
    /// Their role here.
    pub role: Role,
    /// When they joined.
    pub joined_at: Timestamp,
}

/// An invite to a channel, as a link or code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The code (the secret part of the link).
    pub code: String,
    /// Where it leads.
    pub channel_id: ChannelId,
    /// Who made it.
    pub created_by: Option<UserId>,
    /// The role it grants.
    pub role: Role,
    /// How often it may be used; `None` for no limit.
    pub max_uses: Option<u64>,
    /// How often it was used.
    pub uses: u64,
    /// When it stops working; `None` for never.
    pub expires_at: Option<Timestamp>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was made.
    pub created_at: Timestamp,
}

impl Invite {
    /// Whether it can still be used at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        !self.revoked
            && self.expires_at.is_none_or(|at| now < at)
            && self.max_uses.is_none_or(|max| self.uses < max)
    }
}

/// What an invite is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    /// The code: 8 to 64 of `A-Z a-z 0-9 _ -` (make it random and long).
    pub code: String,
    /// Where it leads.
    pub channel_id: ChannelId,
    /// Who makes it.
    pub created_by: UserId,
    /// The role it grants (never [`Role::Owner`]).
    pub role: Role,
    /// Use limit.
    pub max_uses: Option<u64>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

/// A ban from a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The channel.
    pub channel_id: ChannelId,
    /// Who is banned.
    pub user_id: UserId,
    /// Who banned them.
    pub banned_by: Option<UserId>,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: Timestamp,
    /// When it lifts; `None` for never.
    pub expires_at: Option<Timestamp>,
}

/// What a ban is made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBan {
    /// The channel.
    pub channel_id: ChannelId,
    /// Who is banned.
    pub user_id: UserId,
    /// Who bans.
    pub banned_by: UserId,
    /// Why (up to 500 characters).
    pub reason: String,
    /// When it lifts.
    pub expires_at: Option<Timestamp>,
}

/// Channels.
///
/// # Contract
/// - Creating a channel makes its owner a member with [`Role::Owner`] in the
///   same transaction.
/// - Updates with an expected version apply only when it matches, else
///   [`Error::Precondition`]; every update moves the version.
/// - Deleting a channel deletes its members, matrix, invites, bans and
///   messages (its videos are the caller's to delete: they have objects).
/// - Lists are newest first, paged by cursor.
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`].
#[async_trait]
pub trait Channels: Send {
    /// Creates a channel and its owner's membership.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::NotFound`] for an unknown owner.
    async fn create_channel(&mut self, new: NewChannel) -> Result<Channel>;

    /// One channel.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn channel(&mut self, id: ChannelId) -> Result<Channel>;

    /// Changes a channel, if `expected_version` (when given) still holds.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::NotFound`], [`Error::Precondition`].
    async fn update_channel(
        &mut self,
        id: ChannelId,
        expected_version: Option<u64>,
        update: ChannelUpdate,
    ) -> Result<Channel>;

    /// Deletes a channel and what hangs on it.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn delete_channel(&mut self, id: ChannelId) -> Result<()>;

    /// Public channels, newest first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor.
    async fn public_channels(&mut self, page: PageRequest) -> Result<Page<Channel>>;

    /// The channels `user` is a member of, with their role, newest membership first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor.
    async fn channels_of(
        &mut self,
        user: UserId,
        page: PageRequest,
    ) -> Result<Page<(Channel, Role)>>;

    /// The channel's permission matrix.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn permissions(&mut self, id: ChannelId) -> Result<PermissionMatrix>;

    /// Sets (or with `None`, clears back to the default) one cell of the
    /// matrix. The owner's row cannot change.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidInput`] for the owner's row.
    async fn set_permission(
        &mut self,
        id: ChannelId,
        role: Role,
        permission: Permission,
        allowed: Option<bool>,
    ) -> Result<PermissionMatrix>;
}

/// Memberships and roles.
///
/// # Contract
/// - One membership per user and channel; a second is [`Error::AlreadyExists`].
/// - Nobody becomes [`Role::Owner`] through [`Members::set_role`] or
///   [`Members::add_member`], and the owner's membership cannot be changed
///   or removed ([`Error::Conflict`]).
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`].
#[async_trait]
pub trait Members: Send {
    /// Adds a member.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::NotFound`] for an unknown channel or
    /// user, [`Error::Conflict`] for [`Role::Owner`].
    async fn add_member(&mut self, channel: ChannelId, user: UserId, role: Role) -> Result<Member>;

    /// The membership, if any.
    ///
    /// # Errors
    /// A backend error.
    async fn member(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Member>>;

    /// Changes a member's role.
    ///
    /// # Errors
    /// [`Error::NotFound`] when not a member, [`Error::Conflict`] for the owner.
    async fn set_role(&mut self, channel: ChannelId, user: UserId, role: Role) -> Result<Member>;

    /// Removes a member; `false` when they were not one.
    ///
    /// # Errors
    /// [`Error::Conflict`] for the owner.
    async fn remove_member(&mut self, channel: ChannelId, user: UserId) -> Result<bool>;

    /// Members in the order they joined.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor.
    async fn members(&mut self, channel: ChannelId, page: PageRequest) -> Result<Page<Member>>;
}

/// Invites.
///
/// # Contract
/// - [`Invites::redeem_invite`] is atomic: an invite with `max_uses = n` is
///   redeemed at most `n` times under any concurrency.
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`].
#[async_trait]
pub trait Invites: Send {
    /// Makes an invite.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::AlreadyExists`] for a code in use.
    async fn create_invite(&mut self, new: NewInvite) -> Result<Invite>;

    /// One invite, usable or not.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn invite(&mut self, code: &str) -> Result<Invite>;

    /// Counts one use of a usable invite and answers it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown code, [`Error::Conflict`] for one
    /// that expired, was used up or revoked.
    async fn redeem_invite(&mut self, code: &str) -> Result<Invite>;

    /// Revokes an invite.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn revoke_invite(&mut self, code: &str) -> Result<()>;

    /// A channel's invites, newest first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor.
    async fn invites(&mut self, channel: ChannelId, page: PageRequest) -> Result<Page<Invite>>;
}

/// Bans.
///
/// # Contract
/// - Banning removes the membership in the same step; a ban past its expiry
///   is as good as none.
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`].
#[async_trait]
pub trait Bans: Send {
    /// Bans a user (replacing an earlier ban) and removes their membership.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::NotFound`], [`Error::Conflict`] for the owner.
    async fn ban(&mut self, ban: NewBan) -> Result<Ban>;

    /// Lifts a ban; `false` when there was none.
    ///
    /// # Errors
    /// A backend error.
    async fn unban(&mut self, channel: ChannelId, user: UserId) -> Result<bool>;

    /// The ban in force, if any.
    ///
    /// # Errors
    /// A backend error.
    async fn ban_of(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Ban>>;

    /// A channel's bans in force, newest first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor.
    async fn bans(&mut self, channel: ChannelId, page: PageRequest) -> Result<Page<Ban>>;
}

#[cfg(feature = "sql")]
mod sql {
    use async_trait::async_trait;
    use sqlx::any::AnyRow;

    use super::*;
    use crate::db::rows::{count, flag, n, opt_parsed, opt_ts, parsed, ts};
    use crate::page::Cursor;
    use crate::sql::{col, convert, Tx};

    const CHANNEL: &str =
        "c.seq, c.id, c.name, c.description, c.owner_id, c.visibility, c.allow_guests, \
                           c.settings, c.version, c.created_at, c.updated_at";
    const CHANNEL_RET: &str = "seq, id, name, description, owner_id, visibility, allow_guests, \
                               settings, version, created_at, updated_at";
    const MEMBER: &str = "m.channel_id, m.user_id, u.username, u.display_name, m.role, m.joined_at";
    const INVITE: &str =
        "code, channel_id, created_by, role, max_uses, uses, expires_at, revoked, created_at";
    const BAN: &str = "channel_id, user_id, banned_by, reason, created_at, expires_at";

    fn channel(r: &AnyRow) -> Result<Channel> {
        let settings: String = col(r, "settings")?;
        Ok(Channel {
            id: parsed(r, "id")?,
            name: col(r, "name")?,
            description: col(r, "description")?,
            owner_id: parsed(r, "owner_id")?,
            visibility: parsed(r, "visibility")?,
            allow_guests: flag(r, "allow_guests")?,
            settings: serde_json::from_str(&settings)
                .map_err(|e| Error::backend("decoding channel settings", e))?,
            version: count(r, "version")?,
            created_at: ts(r, "created_at")?,
            updated_at: ts(r, "updated_at")?,
        })
    }

    fn member(r: &AnyRow) -> Result<Member> {
        Ok(Member {
            channel_id: parsed(r, "channel_id")?,
            user_id: parsed(r, "user_id")?,
            username: col(r, "username")?,
            display_name: col(r, "display_name")?,
            role: parsed(r, "role")?,
            joined_at: ts(r, "joined_at")?,
        })
    }

    fn invite(r: &AnyRow) -> Result<Invite> {
        Ok(Invite {
            code: col(r, "code")?,
            channel_id: parsed(r, "channel_id")?,
            created_by: opt_parsed(r, "created_by")?,
            role: parsed(r, "role")?,
            max_uses: col::<Option<i64>>(r, "max_uses")?.map(|v| u64::try_from(v).unwrap_or(0)),
            uses: count(r, "uses")?,
            expires_at: opt_ts(r, "expires_at")?,
            revoked: flag(r, "revoked")?,
            created_at: ts(r, "created_at")?,
        })
    }

    fn ban(r: &AnyRow) -> Result<Ban> {
        Ok(Ban {
            channel_id: parsed(r, "channel_id")?,
            user_id: parsed(r, "user_id")?,
            banned_by: opt_parsed(r, "banned_by")?,
            reason: col(r, "reason")?,
            created_at: ts(r, "created_at")?,
            expires_at: opt_ts(r, "expires_at")?,
        })
    }

    fn no_channel(id: ChannelId) -> Error {
        Error::not_found(format!("channel {id}: no such channel"))
    }

    /// A `(millis, id)` keyset cursor, for lists ordered by a time and an id.
    fn time_cursor(at: Timestamp, id: &str) -> Cursor {
        Cursor::from_fields(&[&at.as_millis().to_string(), id])
    }

    fn read_time_cursor(page: &PageRequest) -> Result<(i64, String)> {
        match &page.cursor {
            None => Ok((i64::MAX, String::new())),
            Some(c) => {
                let f = c.fields(2)?;
                let at = f
                    .first()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| Error::invalid_input("malformed cursor"))?;
                Ok((at, f.get(1).copied().unwrap_or_default().to_owned()))
            }
        }
    }

    fn seq_cursor(page: &PageRequest) -> Result<i64> {
        page.cursor.as_ref().map_or(Ok(i64::MAX), Cursor::number)
    }

    impl Tx {
        async fn owner_guard(
            &mut self,
            channel: ChannelId,
            user: UserId,
            what: &str,
        ) -> Result<()> {
            let c = Channels::channel(self, channel).await?;
            if c.owner_id == user {
                return Err(Error::conflict(format!(
                    "{what}: user {user} owns channel {channel}"
                )));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Channels for Tx {
        async fn create_channel(&mut self, new: NewChannel) -> Result<Channel> {
            new.validate()?;
            let id = new.id.unwrap_or_default();
            let now = self.now().as_millis();
            let sql = format!(
                "INSERT INTO vs_channels (id, name, description, owner_id, visibility, allow_guests, \
                 settings, created_at, updated_at) \
                 SELECT $1, $2, $3, id, $5, $6, $7, $8, $8 FROM vs_users WHERE id = $4 RETURNING {CHANNEL_RET}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(&new.name)
                .bind(&new.description)
                .bind(new.owner_id.to_string())
                .bind(new.visibility.as_str())
                .bind(i64::from(new.allow_guests))
                .bind(new.settings.to_string())
                .bind(now)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("creating channel {id}"), e))?
                .ok_or_else(|| {
                    Error::not_found(format!("creating channel {id}: no user {}", new.owner_id))
                })?;
            let channel = channel(&row)?;
            sqlx::query("INSERT INTO vs_members (channel_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)")
                .bind(id.to_string())
                .bind(new.owner_id.to_string())
                .bind(now)
                .execute(self.conn())
                .await
                .map_err(|e| convert(&format!("adding the owner of channel {id}"), e))?;
            Ok(channel)
        }

        async fn channel(&mut self, id: ChannelId) -> Result<Channel> {
            let sql = format!("SELECT {CHANNEL} FROM vs_channels c WHERE c.id = $1");
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("reading channel {id}"), e))?;
            row.map(|r| channel(&r))
                .transpose()?
                .ok_or_else(|| no_channel(id))
        }

        async fn update_channel(
            &mut self,
            id: ChannelId,
            expected_version: Option<u64>,
            update: ChannelUpdate,
        ) -> Result<Channel> {
            if let Some(name) = &update.name {
                check_name(name)?;
            }
            if let Some(d) = &update.description {
                check_text("a channel description", d, 0, 5000, &['\n', '\t'])?;
            }
            if let Some(s) = &update.settings {
                check_settings(s)?;
            }
            let now = self.now().as_millis();
            let sql = format!(
                "UPDATE vs_channels SET name = COALESCE($3, name), description = COALESCE($4, description), \
                 visibility = COALESCE($5, visibility), allow_guests = COALESCE($6, allow_guests), \
                 settings = COALESCE($7, settings), version = version + 1, updated_at = $8 \
                 WHERE id = $1 AND ($2 IS NULL OR version = $2) RETURNING {CHANNEL_RET}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(expected_version.map(n))
                .bind(update.name)
                .bind(update.description)
                .bind(update.visibility.map(|v| v.as_str()))
                .bind(update.allow_guests.map(i64::from))
                .bind(update.settings.map(|s| s.to_string()))
                .bind(now)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("updating channel {id}"), e))?;
            match row {
                Some(r) => channel(&r),
                None => {
                    let current = Channels::channel(self, id).await?;
                    Err(Error::precondition(format!(
                        "updating channel {id}: expected version {}, it is at {}",
                        expected_version.unwrap_or_default(),
                        current.version
                    )))
                }
            }
        }

        async fn delete_channel(&mut self, id: ChannelId) -> Result<()> {
            let done = sqlx::query("DELETE FROM vs_channels WHERE id = $1")
                .bind(id.to_string())
                .execute(self.conn())
                .await
                .map_err(|e| convert(&format!("deleting channel {id}"), e))?;
            if done.rows_affected() == 0 {
                return Err(no_channel(id));
            }
            Ok(())
        }

        async fn public_channels(&mut self, page: PageRequest) -> Result<Page<Channel>> {
            let before = seq_cursor(&page)?;
            let limit = page.limit();
            let sql = format!(
                "SELECT {CHANNEL} FROM vs_channels c WHERE c.visibility = 'public' AND c.seq < $1 \
                 ORDER BY c.seq DESC LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(before)
                .bind(n(limit + 1))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert("listing public channels", e))?;
            let items = rows
                .iter()
                .map(|r| Ok((col::<i64>(r, "seq")?, channel(r)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, limit, |(seq, _)| {
                Cursor::from_fields(&[&seq.to_string()])
            })
            .map(|(_, c)| c))
        }

        async fn channels_of(
            &mut self,
            user: UserId,
            page: PageRequest,
        ) -> Result<Page<(Channel, Role)>> {
            let (at, after_id) = read_time_cursor(&page)?;
            let limit = page.limit();
            let sql = format!(
                "SELECT {CHANNEL}, m.role, m.joined_at FROM vs_members m JOIN vs_channels c ON c.id = m.channel_id \
                 WHERE m.user_id = $1 AND (m.joined_at < $2 OR (m.joined_at = $2 AND c.id < $3)) \
                 ORDER BY m.joined_at DESC, c.id DESC LIMIT $4"
            );
            let rows = sqlx::query(&sql)
                .bind(user.to_string())
                .bind(at)
                .bind(if after_id.is_empty() {
                    "~".to_owned()
                } else {
                    after_id
                })
                .bind(n(limit + 1))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert(&format!("listing the channels of user {user}"), e))?;
            let items = rows
                .iter()
                .map(|r| Ok((ts(r, "joined_at")?, channel(r)?, parsed::<Role>(r, "role")?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, limit, |(at, c, _)| {
                time_cursor(*at, &c.id.to_string())
            })
            .map(|(_, c, r)| (c, r)))
        }

        async fn permissions(&mut self, id: ChannelId) -> Result<PermissionMatrix> {
            Channels::channel(self, id).await?;
            let rows = sqlx::query(
                "SELECT role, permission, allowed FROM vs_channel_permissions WHERE channel_id = $1",
            )
            .bind(id.to_string())
            .fetch_all(self.conn())
            .await
            .map_err(|e| convert(&format!("reading the permissions of channel {id}"), e))?;
            let mut matrix = PermissionMatrix::default();
            for r in &rows {
                matrix
                    .overrides
                    .entry(parsed(r, "role")?)
                    .or_default()
                    .insert(parsed(r, "permission")?, flag(r, "allowed")?);
            }
            Ok(matrix)
        }

        async fn set_permission(
            &mut self,
            id: ChannelId,
            role: Role,
            permission: Permission,
            allowed: Option<bool>,
        ) -> Result<PermissionMatrix> {
            if role == Role::Owner {
                return Err(Error::invalid_input("the owner may always do everything"));
            }
            Channels::channel(self, id).await?;
            let what = format!("setting {role}/{permission} in channel {id}");
            match allowed {
                Some(allowed) => sqlx::query(
                    "INSERT INTO vs_channel_permissions (channel_id, role, permission, allowed) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (channel_id, role, permission) DO UPDATE SET allowed = excluded.allowed",
                )
                .bind(id.to_string())
                .bind(role.as_str())
                .bind(permission.as_str())
                .bind(i64::from(allowed)),
                None => sqlx::query(
                    "DELETE FROM vs_channel_permissions WHERE channel_id = $1 AND role = $2 AND permission = $3",
                )
                .bind(id.to_string())
                .bind(role.as_str())
                .bind(permission.as_str()),
            }
            .execute(self.conn())
            .await
            .map_err(|e| convert(&what, e))?;
            sqlx::query(
                "UPDATE vs_channels SET version = version + 1, updated_at = $2 WHERE id = $1",
            )
            .bind(id.to_string())
            .bind(self.now().as_millis())
            .execute(self.conn())
            .await
            .map_err(|e| convert(&what, e))?;
            Channels::permissions(self, id).await
        }
    }

    #[async_trait]
    impl Members for Tx {
        async fn add_member(
            &mut self,
            channel: ChannelId,
            user: UserId,
            role: Role,
        ) -> Result<Member> {
            if role == Role::Owner {
                return Err(Error::conflict(format!(
                    "adding user {user} to channel {channel}: a channel has one owner"
                )));
            }
            let now = self.now().as_millis();
            let what = format!("adding user {user} to channel {channel}");
            let done = sqlx::query(
                "INSERT INTO vs_members (channel_id, user_id, role, joined_at) \
                 SELECT c.id, u.id, $3, $4 FROM vs_channels c, vs_users u WHERE c.id = $1 AND u.id = $2",
            )
            .bind(channel.to_string())
            .bind(user.to_string())
            .bind(role.as_str())
            .bind(now)
            .execute(self.conn())
            .await
            .map_err(|e| match convert(&what, e) {
                Error::AlreadyExists { .. } => Error::already_exists(format!("{what}: already a member")),
                other => other,
            })?;
            if done.rows_affected() == 0 {
                return Err(Error::not_found(format!("{what}: no such channel or user")));
            }
            Members::member(self, channel, user)
                .await?
                .ok_or_else(|| Error::not_found(what))
        }

        async fn member(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Member>> {
            let sql = format!(
                "SELECT {MEMBER} FROM vs_members m JOIN vs_users u ON u.id = m.user_id \
                 WHERE m.channel_id = $1 AND m.user_id = $2"
            );
            let row = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(user.to_string())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| {
                    convert(&format!("reading the membership of {user} in {channel}"), e)
                })?;
            row.map(|r| member(&r)).transpose()
        }

        async fn set_role(
            &mut self,
            channel: ChannelId,
            user: UserId,
            role: Role,
        ) -> Result<Member> {
            let what = format!("changing the role of {user} in channel {channel}");
            if role == Role::Owner {
                return Err(Error::conflict(format!("{what}: a channel has one owner")));
            }
            self.owner_guard(channel, user, &what).await?;
            let done = sqlx::query(
                "UPDATE vs_members SET role = $3 WHERE channel_id = $1 AND user_id = $2",
            )
            .bind(channel.to_string())
            .bind(user.to_string())
            .bind(role.as_str())
            .execute(self.conn())
            .await
            .map_err(|e| convert(&what, e))?;
            if done.rows_affected() == 0 {
                return Err(Error::not_found(format!("{what}: not a member")));
            }
            Members::member(self, channel, user)
                .await?
                .ok_or_else(|| Error::not_found(what))
        }

        async fn remove_member(&mut self, channel: ChannelId, user: UserId) -> Result<bool> {
            let what = format!("removing {user} from channel {channel}");
            self.owner_guard(channel, user, &what).await?;
            let done = sqlx::query("DELETE FROM vs_members WHERE channel_id = $1 AND user_id = $2")
                .bind(channel.to_string())
                .bind(user.to_string())
                .execute(self.conn())
                .await
                .map_err(|e| convert(&what, e))?;
            Ok(done.rows_affected() == 1)
        }

        async fn members(&mut self, channel: ChannelId, page: PageRequest) -> Result<Page<Member>> {
            let (at, after) = match &page.cursor {
                None => (i64::MIN, String::new()),
                Some(_) => read_time_cursor(&page)?,
            };
            let limit = page.limit();
            let sql = format!(
                "SELECT {MEMBER} FROM vs_members m JOIN vs_users u ON u.id = m.user_id \
                 WHERE m.channel_id = $1 AND (m.joined_at > $2 OR (m.joined_at = $2 AND m.user_id > $3)) \
                 ORDER BY m.joined_at, m.user_id LIMIT $4"
            );
            let rows = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(at)
                .bind(after)
                .bind(n(limit + 1))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert(&format!("listing the members of channel {channel}"), e))?;
            let items = rows.iter().map(member).collect::<Result<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, limit, |m| {
                time_cursor(m.joined_at, &m.user_id.to_string())
            }))
        }
    }

    #[async_trait]
    impl Invites for Tx {
        async fn create_invite(&mut self, new: NewInvite) -> Result<Invite> {
            let ok = (8..=64).contains(&new.code.len())
                && new
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
            if !ok {
                return Err(Error::invalid_input(
                    "an invite code must be 8 to 64 characters of A-Z, a-z, 0-9, `_` and `-`",
                ));
            }
            if new.role == Role::Owner {
                return Err(Error::invalid_input("an invite cannot make an owner"));
            }
            if new.max_uses == Some(0) {
                return Err(Error::invalid_input(
                    "an invite must allow at least one use",
                ));
            }
            let now = self.now().as_millis();
            let what = format!("creating an invite to channel {}", new.channel_id);
            let sql = format!(
                "INSERT INTO vs_invites ({INVITE}) SELECT $1, id, $3, $4, $5, 0, $6, 0, $7 \
                 FROM vs_channels WHERE id = $2 RETURNING {INVITE}"
            );
            let row = sqlx::query(&sql)
                .bind(&new.code)
                .bind(new.channel_id.to_string())
                .bind(new.created_by.to_string())
                .bind(new.role.as_str())
                .bind(new.max_uses.map(n))
                .bind(new.expires_at.map(Timestamp::as_millis))
                .bind(now)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&what, e))?
                .ok_or_else(|| Error::not_found(format!("{what}: no such channel")))?;
            invite(&row)
        }

        async fn invite(&mut self, code: &str) -> Result<Invite> {
            let sql = format!("SELECT {INVITE} FROM vs_invites WHERE code = $1");
            let row = sqlx::query(&sql)
                .bind(code)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert("reading an invite", e))?;
            row.map(|r| invite(&r))
                .transpose()?
                .ok_or_else(|| Error::not_found("no such invite"))
        }

        async fn redeem_invite(&mut self, code: &str) -> Result<Invite> {
            let now = self.now().as_millis();
            let sql = format!(
                "UPDATE vs_invites SET uses = uses + 1 WHERE code = $1 AND revoked = 0 \
                 AND (expires_at IS NULL OR expires_at > $2) AND (max_uses IS NULL OR uses < max_uses) \
                 RETURNING {INVITE}"
            );
            let row = sqlx::query(&sql)
                .bind(code)
                .bind(now)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert("redeeming an invite", e))?;
            match row {
                Some(r) => invite(&r),
                None => {
                    Invites::invite(self, code).await?;
                    Err(Error::conflict(
                        "the invite expired, was used up or was revoked",
                    ))
                }
            }
        }

        async fn revoke_invite(&mut self, code: &str) -> Result<()> {
            let done = sqlx::query("UPDATE vs_invites SET revoked = 1 WHERE code = $1")
                .bind(code)
                .execute(self.conn())
                .await
                .map_err(|e| convert("revoking an invite", e))?;
            if done.rows_affected() == 0 {
                return Err(Error::not_found("no such invite"));
            }
            Ok(())
        }

        async fn invites(&mut self, channel: ChannelId, page: PageRequest) -> Result<Page<Invite>> {
            let (at, after) = read_time_cursor(&page)?;
            let limit = page.limit();
            let sql = format!(
                "SELECT {INVITE} FROM vs_invites WHERE channel_id = $1 \
                 AND (created_at < $2 OR (created_at = $2 AND code < $3)) \
                 ORDER BY created_at DESC, code DESC LIMIT $4"
            );
            let rows = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(at)
                .bind(if after.is_empty() {
                    "~".to_owned()
                } else {
                    after
                })
                .bind(n(limit + 1))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert(&format!("listing the invites of channel {channel}"), e))?;
            let items = rows.iter().map(invite).collect::<Result<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, limit, |i| {
                time_cursor(i.created_at, &i.code)
            }))
        }
    }

    #[async_trait]
    impl Bans for Tx {
        async fn ban(&mut self, new: NewBan) -> Result<Ban> {
            check_text("a ban reason", &new.reason, 0, 500, &[])?;
            let what = format!("banning {} from channel {}", new.user_id, new.channel_id);
            self.owner_guard(new.channel_id, new.user_id, &what).await?;
            let now = self.now().as_millis();
            sqlx::query("DELETE FROM vs_members WHERE channel_id = $1 AND user_id = $2")
                .bind(new.channel_id.to_string())
                .bind(new.user_id.to_string())
                .execute(self.conn())
                .await
                .map_err(|e| convert(&what, e))?;
            let sql = format!(
                "INSERT INTO vs_bans ({BAN}) SELECT $1, id, $3, $4, $5, $6 FROM vs_users WHERE id = $2 \
                 ON CONFLICT (channel_id, user_id) DO UPDATE SET banned_by = excluded.banned_by, \
                 reason = excluded.reason, created_at = excluded.created_at, expires_at = excluded.expires_at \
                 RETURNING {BAN}"
            );
            let row = sqlx::query(&sql)
                .bind(new.channel_id.to_string())
                .bind(new.user_id.to_string())
                .bind(new.banned_by.to_string())
                .bind(&new.reason)
                .bind(now)
                .bind(new.expires_at.map(Timestamp::as_millis))
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&what, e))?
                .ok_or_else(|| Error::not_found(format!("{what}: no such user")))?;
            ban(&row)
        }

        async fn unban(&mut self, channel: ChannelId, user: UserId) -> Result<bool> {
            let done = sqlx::query("DELETE FROM vs_bans WHERE channel_id = $1 AND user_id = $2")
                .bind(channel.to_string())
                .bind(user.to_string())
                .execute(self.conn())
                .await
                .map_err(|e| convert(&format!("unbanning {user} in channel {channel}"), e))?;
            Ok(done.rows_affected() == 1)
        }

        async fn ban_of(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Ban>> {
            let sql = format!(
                "SELECT {BAN} FROM vs_bans WHERE channel_id = $1 AND user_id = $2 \
                 AND (expires_at IS NULL OR expires_at > $3)"
            );
            let row = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(user.to_string())
                .bind(self.now().as_millis())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| {
                    convert(
                        &format!("reading the ban of {user} in channel {channel}"),
                        e,
                    )
                })?;
            row.map(|r| ban(&r)).transpose()
        }

        async fn bans(&mut self, channel: ChannelId, page: PageRequest) -> Result<Page<Ban>> {
            let (at, after) = read_time_cursor(&page)?;
            let limit = page.limit();
            let sql = format!(
                "SELECT {BAN} FROM vs_bans WHERE channel_id = $1 AND (expires_at IS NULL OR expires_at > $5) \
                 AND (created_at < $2 OR (created_at = $2 AND user_id < $3)) \
                 ORDER BY created_at DESC, user_id DESC LIMIT $4"
            );
            let rows = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(at)
                .bind(if after.is_empty() {
                    "~".to_owned()
                } else {
                    after
                })
                .bind(n(limit + 1))
                .bind(self.now().as_millis())
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert(&format!("listing the bans of channel {channel}"), e))?;
            let items = rows.iter().map(ban).collect::<Result<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, limit, |b| {
                time_cursor(b.created_at, &b.user_id.to_string())
            }))
        }
    }
}
