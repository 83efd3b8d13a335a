//! The platform's records: accounts and their sessions, channels with roles,
//! a permission matrix, invites and bans, chat messages, and videos with
//! their metadata and full-text search.
//!
//! Each entity has a small repository trait ([`Users`], [`Sessions`],
//! [`Channels`], [`Members`], [`Invites`], [`Bans`], [`Messages`],
//! [`Videos`]) implemented for a database transaction
//! ([`Tx`](crate::sql::Tx)), so one unit of work spans as many as it needs:
//!
//! ```no_run
//! # async fn demo(db: videosync_core::sql::Database) -> videosync_core::Result<()> {
//! use videosync_core::db::{Channels, NewChannel, NewUser, Users, Visibility};
//! let mut tx = db.begin().await?;
//! let owner = tx.create_user(NewUser::new("ada", "$argon2id$...")).await?;
//! let channel = tx.create_channel(NewChannel::new(owner.id, "Film club", Visibility::Public)).await?;
//! tx.commit().await?; // the user, the channel and the owner's membership, or none
//! # let _ = channel; Ok(()) }
//! ```
//!
//! Lists that can grow answer a [`Page`](crate::page::Page) with a cursor.
//! Both dialects run the same statements wherever one text serves both; the
//! few that differ (full-text search) are written once per dialect.

mod channels;
mod messages;
mod users;
mod videos;

pub use channels::{
    Ban, Bans, Channel, ChannelUpdate, Channels, Invite, Invites, Member, Members, NewBan,
    NewChannel, NewInvite, Permission, PermissionMatrix, Role, Visibility, MAX_CHANNEL_NAME_CHARS,
};
pub use messages::{Message, Messages, NewMessage, Reaction, MAX_MESSAGE_CHARS};
pub use users::{NewSession, NewUser, Session, Sessions, User, Users};
pub use videos::{SearchHit, VideoUpdate, Videos, Viewer};

use crate::{Error, Result};

/// Checks a free-text field: `min..=max` characters, none of them control
/// characters except those in `allowed_controls`.
pub(crate) fn check_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    allowed_controls: &[char],
) -> Result<()> {
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(Error::invalid_input(format!(
            "{field} must be {min} to {max} characters (got {chars})"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !allowed_controls.contains(&c))
    {
        return Err(Error::invalid_input(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

#[cfg(feature = "sql")]
pub(crate) mod rows {
    //! Column helpers shared by the repositories.
    use sqlx::any::AnyRow;

    use crate::sql::col;
    use crate::{Result, Timestamp};

    pub(crate) fn ts(r: &AnyRow, name: &str) -> Result<Timestamp> {
        Ok(Timestamp::from_millis(col(r, name)?))
    }

    pub(crate) fn opt_ts(r: &AnyRow, name: &str) -> Result<Option<Timestamp>> {
        Ok(col::<Option<i64>>(r, name)?.map(Timestamp::from_millis))
    }

    pub(crate) fn flag(r: &AnyRow, name: &str) -> Result<bool> {
        Ok(col::<i64>(r, name)? != 0)
    }

    pub(crate) fn count(r: &AnyRow, name: &str) -> Result<u64> {
        Ok(u64::try_from(col::<i64>(r, name)?).unwrap_or(0))
    }

    pub(crate) fn parsed<T: std::str::FromStr<Err = crate::Error>>(
        r: &AnyRow,
        name: &str,
    ) -> Result<T> {
        col::<String>(r, name)?.parse()
    }

    pub(crate) fn opt_parsed<T: std::str::FromStr<Err = crate::Error>>(
        r: &AnyRow,
        name: &str,
    ) -> Result<Option<T>> {
        col::<Option<String>>(r, name)?
            .map(|s| s.parse())
            .transpose()
    }

    /// An `i64` bind for a count or limit.
    pub(crate) fn n(v: impl TryInto<i64>) -> i64 {
        v.try_into().unwrap_or(i64::MAX)
    }
}
