//! Chat messages ([`Messages`]): ordered per channel by a sequence number,
//! with edits, deletes and reactions.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::check_text;
use crate::page::{Page, PageRequest};
use crate::{ChannelId, Error, Result, Timestamp, UserId};

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Longest reaction (an emoji or a short name), in characters.
#[cfg_attr(not(feature = "sql"), allow(dead_code))] // Used by the SQL backend.
const MAX_REACTION_CHARS: usize = 32;

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The channel.
    pub channel_id: ChannelId,
    /// Its place in the channel: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// The author's account, `None` for a guest or a deleted account.
    pub author_id: Option<UserId>,
    /// The author's name as shown when it was written.
    pub author_name: String,
    /// The text (empty once deleted). Plain text: never render it as HTML.
    pub body: String,
    /// When it was written.
    pub created_at: Timestamp,
    /// When it was last edited.
    pub edited_at: Option<Timestamp>,
    /// When it was deleted.
    pub deleted_at: Option<Timestamp>,
    /// Reactions, one entry per emoji, in first-reaction order.
    pub reactions: Vec<Reaction>,
}

/// How many people reacted with one emoji, and who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
    /// Who reacted with it.
    pub users: Vec<UserId>,
}

/// What a message is posted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The channel.
    pub channel_id: ChannelId,
    /// The author's account, if any.
    pub author_id: Option<UserId>,
    /// The shown name (1 to 64 characters).
    pub author_name: String,
    /// 1 to [`MAX_MESSAGE_CHARS`] characters; newlines and tabs allowed.
    pub body: String,
}

#[cfg_attr(not(feature = "sql"), allow(dead_code))] // Used by the SQL backend.
fn check_body(body: &str) -> Result<()> {
    check_text("a message", body, 1, MAX_MESSAGE_CHARS, &['\n', '\t'])?;
    if body.trim().is_empty() {
        return Err(Error::invalid_input("a message must not be blank"));
    }
    Ok(())
}

/// Chat messages.
///
/// # Contract
/// - [`Messages::post_message`] stores the message before it answers and
///   gives it the channel's next `seq`: no gaps, no duplicates, in commit
///   order, under any concurrency.
/// - A deleted message keeps its `seq` (history stays dense), loses its body
///   and reactions, and cannot be edited or reacted to ([`Error::Conflict`]).
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`].
#[async_trait]
pub trait Messages: Send {
    /// Stores a message.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::NotFound`] for an unknown channel.
    async fn post_message(&mut self, new: NewMessage) -> Result<Message>;

    /// One message.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn message(&mut self, channel: ChannelId, seq: u64) -> Result<Message>;

    /// Replaces a message's text.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::NotFound`], [`Error::Conflict`] when deleted.
    async fn edit_message(&mut self, channel: ChannelId, seq: u64, body: &str) -> Result<Message>;

    /// Deletes a message's text and reactions; idempotent.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn delete_message(&mut self, channel: ChannelId, seq: u64) -> Result<Message>;

    /// Adds a reaction; `false` when it was there already.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::NotFound`], [`Error::Conflict`] when deleted.
    async fn react(
        &mut self,
        channel: ChannelId,
        seq: u64,
        user: UserId,
        emoji: &str,
    ) -> Result<bool>;

    /// Removes a reaction; `false` when it was not there.
    ///
    /// # Errors
    /// A backend error.
    async fn unreact(
        &mut self,
        channel: ChannelId,
        seq: u64,
        user: UserId,
        emoji: &str,
    ) -> Result<bool>;

    /// History, newest first: the page before the cursor (the first page is
    /// the newest messages).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor.
    async fn messages(&mut self, channel: ChannelId, page: PageRequest) -> Result<Page<Message>>;

    /// Messages after `seq`, oldest first, at most `limit` (catching up).
    ///
    /// # Errors
    /// A backend error.
    async fn messages_after(
        &mut self,
        channel: ChannelId,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>>;
}

#[cfg(feature = "sql")]
mod sql {
    use std::collections::BTreeMap;

    use async_trait::async_trait;
    use sqlx::any::AnyRow;

    use super::*;
    use crate::db::rows::{count, n, opt_parsed, opt_ts, parsed, ts};
    use crate::page::Cursor;
    use crate::sql::{col, convert, Tx};

    const MESSAGE: &str =
        "channel_id, seq, author_id, author_name, body, created_at, edited_at, deleted_at";

    fn message(r: &AnyRow) -> Result<Message> {
        Ok(Message {
            channel_id: parsed(r, "channel_id")?,
            seq: count(r, "seq")?,
            author_id: opt_parsed(r, "author_id")?,
            author_name: col(r, "author_name")?,
            body: col(r, "body")?,
            created_at: ts(r, "created_at")?,
            edited_at: opt_ts(r, "edited_at")?,
            deleted_at: opt_ts(r, "deleted_at")?,
            reactions: Vec::new(),
        })
    }

    fn no_message(channel: ChannelId, seq: u64) -> Error {
        Error::not_found(format!(
            "message {seq} of channel {channel}: no such message"
        ))
    }

    impl Tx {
        /// Fills in the reactions of `messages` (all of one channel) in one query.
        async fn with_reactions(&mut self, mut messages: Vec<Message>) -> Result<Vec<Message>> {
            let (Some(lo), Some(hi), Some(channel)) = (
                messages.iter().map(|m| m.seq).min(),
                messages.iter().map(|m| m.seq).max(),
                messages.first().map(|m| m.channel_id),
            ) else {
                return Ok(messages);
            };
            let rows = sqlx::query(
                "SELECT seq, emoji, user_id FROM vs_reactions WHERE channel_id = $1 AND seq BETWEEN $2 AND $3 \
                 ORDER BY seq, created_at, emoji, user_id",
            )
            .bind(channel.to_string())
            .bind(n(lo))
            .bind(n(hi))
            .fetch_all(self.conn())
            .await
            .map_err(|e| convert(&format!("reading reactions in channel {channel}"), e))?;
            let mut by_seq: BTreeMap<u64, Vec<Reaction>> = BTreeMap::new();
            for r in &rows {
                let list = by_seq.entry(count(r, "seq")?).or_default();
                let emoji: String = col(r, "emoji")?;
                let user: UserId = parsed(r, "user_id")?;
                match list.iter_mut().find(|x| x.emoji == emoji) {
                    Some(x) => x.users.push(user),
                    None => list.push(Reaction {
                        emoji,
                        users: vec![user],
                    }),
                }
            }
            for m in &mut messages {
                m.reactions = by_seq.remove(&m.seq).unwrap_or_default();
            }
            Ok(messages)
        }

        async fn live_message(&mut self, channel: ChannelId, seq: u64, what: &str) -> Result<()> {
            let m = Messages::message(self, channel, seq).await?;
            if m.deleted_at.is_some() {
                return Err(Error::conflict(format!("{what}: the message was deleted")));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Messages for Tx {
        async fn post_message(&mut self, new: NewMessage) -> Result<Message> {
            check_body(&new.body)?;
            check_text("an author name", &new.author_name, 1, 64, &[])?;
            let channel = new.channel_id;
            let what = format!("posting to channel {channel}");
            // Taking the next seq from the channel row locks it (Postgres row
            // lock, SQLite write lock) until commit: seqs are dense and in
            // commit order.
            let row = sqlx::query(
                "UPDATE vs_channels SET message_seq = message_seq + 1 WHERE id = $1 RETURNING message_seq",
            )
            .bind(channel.to_string())
            .fetch_optional(self.conn())
            .await
            .map_err(|e| convert(&what, e))?
            .ok_or_else(|| Error::not_found(format!("{what}: no such channel")))?;
            let seq: i64 = col(&row, "message_seq")?;
            let now = self.now().as_millis();
            let sql = format!(
                "INSERT INTO vs_messages ({MESSAGE}) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL) RETURNING {MESSAGE}"
            );
            let row = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(seq)
                .bind(new.author_id.map(|a| a.to_string()))
                .bind(&new.author_name)
                .bind(&new.body)
                .bind(now)
                .fetch_one(self.conn())
                .await
                .map_err(|e| convert(&what, e))?;
            message(&row)
        }

        async fn message(&mut self, channel: ChannelId, seq: u64) -> Result<Message> {
            let sql =
                format!("SELECT {MESSAGE} FROM vs_messages WHERE channel_id = $1 AND seq = $2");
            let row = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(n(seq))
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("reading message {seq} of channel {channel}"), e))?
                .ok_or_else(|| no_message(channel, seq))?;
            let m = message(&row)?;
            self.with_reactions(vec![m])
                .await?
                .pop()
                .ok_or_else(|| no_message(channel, seq))
        }

        async fn edit_message(
            &mut self,
            channel: ChannelId,
            seq: u64,
            body: &str,
        ) -> Result<Message> {
            check_body(body)?;
            let what = format!("editing message {seq} of channel {channel}");
            self.live_message(channel, seq, &what).await?;
            sqlx::query("UPDATE vs_messages SET body = $3, edited_at = $4 WHERE channel_id = $1 AND seq = $2")
                .bind(channel.to_string())
                .bind(n(seq))
                .bind(body)
                .bind(self.now().as_millis())
                .execute(self.conn())
                .await
                .map_err(|e| convert(&what, e))?;
            Messages::message(self, channel, seq).await
        }

        async fn delete_message(&mut self, channel: ChannelId, seq: u64) -> Result<Message> {
            let what = format!("deleting message {seq} of channel {channel}");
            let done = sqlx::query(
                "UPDATE vs_messages SET body = '', deleted_at = COALESCE(deleted_at, $3) \
                 WHERE channel_id = $1 AND seq = $2",
            )
            .bind(channel.to_string())
            .bind(n(seq))
            .bind(self.now().as_millis())
            .execute(self.conn())
            .await
            .map_err(|e| convert(&what, e))?;
            if done.rows_affected() == 0 {
                return Err(no_message(channel, seq));
            }
            sqlx::query("DELETE FROM vs_reactions WHERE channel_id = $1 AND seq = $2")
                .bind(channel.to_string())
                .bind(n(seq))
                .execute(self.conn())
                .await
                .map_err(|e| convert(&what, e))?;
            Messages::message(self, channel, seq).await
        }

        async fn react(
            &mut self,
            channel: ChannelId,
            seq: u64,
            user: UserId,
            emoji: &str,
        ) -> Result<bool> {
            check_text("a reaction", emoji, 1, MAX_REACTION_CHARS, &[])?;
            if emoji.chars().any(char::is_whitespace) {
                return Err(Error::invalid_input("a reaction must not contain spaces"));
            }
            let what = format!("reacting to message {seq} of channel {channel}");
            self.live_message(channel, seq, &what).await?;
            let done = sqlx::query(
                "INSERT INTO vs_reactions (channel_id, seq, user_id, emoji, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (channel_id, seq, user_id, emoji) DO NOTHING",
            )
            .bind(channel.to_string())
            .bind(n(seq))
            .bind(user.to_string())
            .bind(emoji)
            .bind(self.now().as_millis())
            .execute(self.conn())
            .await
            .map_err(|e| convert(&what, e))?;
            Ok(done.rows_affected() == 1)
        }

        async fn unreact(
            &mut self,
            channel: ChannelId,
            seq: u64,
            user: UserId,
            emoji: &str,
        ) -> Result<bool> {
            let done = sqlx::query(
                "DELETE FROM vs_reactions WHERE channel_id = $1 AND seq = $2 AND user_id = $3 AND emoji = $4",
            )
            .bind(channel.to_string())
            .bind(n(seq))
            .bind(user.to_string())
            .bind(emoji)
            .execute(self.conn())
            .await
            .map_err(|e| convert(&format!("removing a reaction in channel {channel}"), e))?;
            Ok(done.rows_affected() == 1)
        }

        async fn messages(
            &mut self,
            channel: ChannelId,
            page: PageRequest,
        ) -> Result<Page<Message>> {
            let before = page.cursor.as_ref().map_or(Ok(i64::MAX), Cursor::number)?;
            let limit = page.limit();
            let sql = format!(
                "SELECT {MESSAGE} FROM vs_messages WHERE channel_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(before)
                .bind(n(limit + 1))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert(&format!("reading the history of channel {channel}"), e))?;
            let items = rows.iter().map(message).collect::<Result<Vec<_>>>()?;
            let page =
                Page::from_overfetch(items, limit, |m| Cursor::from_fields(&[&m.seq.to_string()]));
            Ok(Page {
                items: self.with_reactions(page.items).await?,
                next: page.next,
            })
        }

        async fn messages_after(
            &mut self,
            channel: ChannelId,
            seq: u64,
            limit: usize,
        ) -> Result<Vec<Message>> {
            let limit = limit.clamp(1, crate::page::MAX_PAGE);
            let sql = format!(
                "SELECT {MESSAGE} FROM vs_messages WHERE channel_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(n(seq))
                .bind(n(limit))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert(&format!("reading the history of channel {channel}"), e))?;
            let items = rows.iter().map(message).collect::<Result<Vec<_>>>()?;
            self.with_reactions(items).await
        }
    }
}
