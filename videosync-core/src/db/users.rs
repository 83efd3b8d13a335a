//! Accounts ([`Users`]) and their refresh-token sessions ([`Sessions`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::check_text;
use crate::{Error, Result, SessionId, Timestamp, UserId};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The login name as chosen (unique without regard to case).
    pub username: String,
    /// The e-mail address, if one was given (unique without regard to case).
    pub email: Option<String>,
    /// The name shown to others.
    pub display_name: String,
    /// The password hash (a PHC string; never the password).
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// Whether the user administers the whole instance.
    pub is_admin: bool,
    /// Moves on every change, for compare-and-set.
    pub version: u64,
    /// When the account was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// What an account is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Its id, or a fresh one.
    pub id: Option<UserId>,
    /// 3 to 32 of `A-Z a-z 0-9 _ . -`.
    pub username: String,
    /// An e-mail address, optional.
    pub email: Option<String>,
    /// The shown name; the username when `None`.
    pub display_name: Option<String>,
    /// The password hash (a PHC string).
    pub password_hash: String,
    /// Instance administrator from the start.
    pub is_admin: bool,
}

impl NewUser {
    /// A user with this name and password hash and nothing else.
    pub fn new(username: impl Into<String>, password_hash: impl Into<String>) -> Self {
        NewUser {
            id: None,
            username: username.into(),
            email: None,
            display_name: None,
            password_hash: password_hash.into(),
            is_admin: false,
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field and the rule.
    pub fn validate(&self) -> Result<()> {
        check_username(&self.username)?;
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        if let Some(name) = &self.display_name {
            check_text("a display name", name, 1, 64, &[])?;
        }
        check_text("a password hash", &self.password_hash, 1, 512, &[])
    }
}

/// Checks a login name: 3 to 32 of `A-Z a-z 0-9 _ . -`.
///
/// # Errors
/// [`Error::InvalidInput`] naming the rule.
pub(crate) fn check_username(name: &str) -> Result<()> {
    let ok = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(
            "a username must be 3 to 32 characters of A-Z, a-z, 0-9, `_`, `.` and `-`",
        ))
    }
}

fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(
            "an e-mail address must look like name@example.org",
        ))
    }
}

/// One refresh token of a login. Tokens rotate: using one marks it used and
/// issues the next in the same family; a used token presented again means it
/// was stolen, and the whole family is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// The login this token belongs to (the first session's id).
    pub family: SessionId,
    /// The client that logged in, as it said.
    pub user_agent: Option<String>,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was exchanged for the next one.
    pub used_at: Option<Timestamp>,
    /// When it (or its family) was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl Session {
    /// Whether it may be exchanged at `now`: not used, not revoked, not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && now < self.expires_at
    }
}

/// What a session is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Whose.
    pub user_id: UserId,
    /// The family to join (a rotation), or `None` to start one (a login).
    pub family: Option<SessionId>,
    /// A hash of the token (never the token itself).
    pub token_hash: String,
    /// The client, as it said (clipped to 256 characters).
    pub user_agent: Option<String>,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Accounts.
///
/// # Contract
/// - Usernames and e-mail addresses are unique without regard to ASCII case;
///   a second one is [`Error::AlreadyExists`].
/// - Deleting a user deletes their sessions, memberships, bans, reactions and
///   the channels they own; their messages stay, without an author id.
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`]; `videosync_core::conformance::db` is the suite.
#[async_trait]
pub trait Users: Send {
    /// Creates an account.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad fields, [`Error::AlreadyExists`] for a
    /// taken username or e-mail.
    async fn create_user(&mut self, new: NewUser) -> Result<User>;

    /// One account.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn user(&mut self, id: UserId) -> Result<User>;

    /// The account with this username or e-mail (any case), if any.
    ///
    /// # Errors
    /// A backend error.
    async fn user_by_login(&mut self, login: &str) -> Result<Option<User>>;

    /// Replaces the password hash.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn set_password(&mut self, id: UserId, password_hash: &str) -> Result<User>;

    /// Makes a user an instance administrator, or not.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn set_admin(&mut self, id: UserId, is_admin: bool) -> Result<User>;

    /// Changes the shown name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::NotFound`].
    async fn set_display_name(&mut self, id: UserId, display_name: &str) -> Result<User>;

    /// Deletes an account and what hangs on it (see the contract).
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn delete_user(&mut self, id: UserId) -> Result<()>;

    /// How many accounts exist (the first one becomes instance admin).
    ///
    /// # Errors
    /// A backend error.
    async fn count_users(&mut self) -> Result<u64>;
}

/// Refresh-token sessions.
///
/// # Contract
/// - [`Sessions::use_session`] is atomic: of two concurrent uses of one
///   token, exactly one gets `true`.
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`].
#[async_trait]
pub trait Sessions: Send {
    /// Issues a session.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user, [`Error::AlreadyExists`] for a
    /// token hash in use.
    async fn create_session(&mut self, new: NewSession) -> Result<Session>;

    /// The session whose token hashes to `token_hash`, live or not.
    ///
    /// # Errors
    /// A backend error.
    async fn session_by_token(&mut self, token_hash: &str) -> Result<Option<Session>>;

    /// Marks a live session used; `false` when it was used, revoked or
    /// expired already (reuse: the caller revokes the family).
    ///
    /// # Errors
    /// A backend error.
    async fn use_session(&mut self, id: SessionId) -> Result<bool>;

    /// Revokes every session of a login; answers how many were live.
    ///
    /// # Errors
    /// A backend error.
    async fn revoke_family(&mut self, family: SessionId) -> Result<u64>;

    /// Revokes every session of a user (password change, logout everywhere).
    ///
    /// # Errors
    /// A backend error.
    async fn revoke_user_sessions(&mut self, user: UserId) -> Result<u64>;

    /// Deletes sessions that expired before `before`.
    ///
    /// # Errors
    /// A backend error.
    async fn delete_expired_sessions(&mut self, before: Timestamp) -> Result<u64>;
}

#[cfg(feature = "sql")]
mod sql {
    use async_trait::async_trait;
    use sqlx::any::AnyRow;

    use super::*;
    use crate::db::rows::{flag, opt_ts, parsed, ts};
    use crate::sql::{col, convert, Tx};

    const USER: &str = "id, username, email, display_name, password_hash, is_admin, version, created_at, updated_at";
    const SESSION: &str =
        "id, user_id, family, user_agent, created_at, expires_at, used_at, revoked_at";

    fn user(r: &AnyRow) -> Result<User> {
        Ok(User {
            id: parsed(r, "id")?,
            username: col(r, "username")?,
            email: col(r, "email")?,
            display_name: col(r, "display_name")?,
            password_hash: col(r, "password_hash")?,
            is_admin: flag(r, "is_admin")?,
            version: crate::db::rows::count(r, "version")?,
            created_at: ts(r, "created_at")?,
            updated_at: ts(r, "updated_at")?,
        })
    }

    fn session(r: &AnyRow) -> Result<Session> {
        Ok(Session {
            id: parsed(r, "id")?,
            user_id: parsed(r, "user_id")?,
            family: parsed(r, "family")?,
            user_agent: col(r, "user_agent")?,
            created_at: ts(r, "created_at")?,
            expires_at: ts(r, "expires_at")?,
            used_at: opt_ts(r, "used_at")?,
            revoked_at: opt_ts(r, "revoked_at")?,
        })
    }

    fn no_user(id: UserId) -> Error {
        Error::not_found(format!("user {id}: no such user"))
    }

    impl Tx {
        /// Revokes the live sessions whose `column` (a fixed name, never
        /// input) is `value`.
        async fn revoke_sessions(
            &mut self,
            column: &str,
            value: String,
            what: &str,
        ) -> Result<u64> {
            let now = self.now().as_millis();
            let sql = format!(
                "UPDATE vs_sessions SET revoked_at = $2 WHERE {column} = $1 AND revoked_at IS NULL"
            );
            let done = sqlx::query(&sql)
                .bind(value)
                .bind(now)
                .execute(self.conn())
                .await
                .map_err(|e| convert(&format!("revoking {what}"), e))?;
            Ok(done.rows_affected())
        }

        async fn update_user(&mut self, id: UserId, set: &str, value: String) -> Result<User> {
            let now = self.now().as_millis();
            let sql = format!(
                "UPDATE vs_users SET {set} = $2, version = version + 1, updated_at = $3 WHERE id = $1 RETURNING {USER}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(value)
                .bind(now)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("updating user {id}"), e))?;
            row.map(|r| user(&r))
                .transpose()?
                .ok_or_else(|| no_user(id))
        }
    }

    #[async_trait]
    impl Users for Tx {
        async fn create_user(&mut self, new: NewUser) -> Result<User> {
            new.validate()?;
            let id = new.id.unwrap_or_default();
            let now = self.now().as_millis();
            let sql = format!(
                "INSERT INTO vs_users (id, username, username_key, email, email_key, display_name, \
                 password_hash, is_admin, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {USER}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(&new.username)
                .bind(new.username.to_ascii_lowercase())
                .bind(new.email.clone())
                .bind(new.email.as_ref().map(|e| e.to_ascii_lowercase()))
                .bind(
                    new.display_name
                        .clone()
                        .unwrap_or_else(|| new.username.clone()),
                )
                .bind(&new.password_hash)
                .bind(i64::from(new.is_admin))
                .bind(now)
                .fetch_one(self.conn())
                .await
                .map_err(|e| match convert("creating a user", e) {
                    Error::AlreadyExists { .. } => Error::already_exists(format!(
                        "creating user `{}`: the username or e-mail address is taken",
                        new.username
                    )),
                    other => other,
                })?;
            user(&row)
        }

        async fn user(&mut self, id: UserId) -> Result<User> {
            let sql = format!("SELECT {USER} FROM vs_users WHERE id = $1");
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("reading user {id}"), e))?;
            row.map(|r| user(&r))
                .transpose()?
                .ok_or_else(|| no_user(id))
        }

        async fn user_by_login(&mut self, login: &str) -> Result<Option<User>> {
            // No name or address holds a control character, and Postgres
            // text cannot hold NUL: such a login matches nobody.
            if login.chars().any(char::is_control) {
                return Ok(None);
            }
            let key = login.to_ascii_lowercase();
            let sql =
                format!("SELECT {USER} FROM vs_users WHERE username_key = $1 OR email_key = $1");
            let row = sqlx::query(&sql)
                .bind(key)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert("looking up a login", e))?;
            row.map(|r| user(&r)).transpose()
        }

        async fn set_password(&mut self, id: UserId, password_hash: &str) -> Result<User> {
            check_text("a password hash", password_hash, 1, 512, &[])?;
            self.update_user(id, "password_hash", password_hash.to_owned())
                .await
        }

        async fn set_admin(&mut self, id: UserId, is_admin: bool) -> Result<User> {
            let now = self.now().as_millis();
            let sql = format!(
                "UPDATE vs_users SET is_admin = $2, version = version + 1, updated_at = $3 WHERE id = $1 RETURNING {USER}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(i64::from(is_admin))
                .bind(now)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("updating user {id}"), e))?;
            row.map(|r| user(&r))
                .transpose()?
                .ok_or_else(|| no_user(id))
        }

        async fn set_display_name(&mut self, id: UserId, display_name: &str) -> Result<User> {
            check_text("a display name", display_name, 1, 64, &[])?;
            self.update_user(id, "display_name", display_name.to_owned())
                .await
        }

        async fn delete_user(&mut self, id: UserId) -> Result<()> {
            let done = sqlx::query("DELETE FROM vs_users WHERE id = $1")
                .bind(id.to_string())
                .execute(self.conn())
                .await
                .map_err(|e| convert(&format!("deleting user {id}"), e))?;
            if done.rows_affected() == 0 {
                return Err(no_user(id));
            }
            Ok(())
        }

        async fn count_users(&mut self) -> Result<u64> {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM vs_users")
                .fetch_one(self.conn())
                .await
                .map_err(|e| convert("counting users", e))?;
            crate::db::rows::count(&row, "n")
        }
    }

    #[async_trait]
    impl Sessions for Tx {
        async fn create_session(&mut self, new: NewSession) -> Result<Session> {
            let id = SessionId::new();
            let family = new.family.unwrap_or(id);
            let agent = new.user_agent.map(|a| {
                a.chars()
                    .filter(|c| !c.is_control())
                    .take(256)
                    .collect::<String>()
            });
            let now = self.now().as_millis();
            let sql = format!(
                "INSERT INTO vs_sessions (id, user_id, family, token_hash, user_agent, created_at, expires_at) \
                 SELECT $1, id, $3, $4, $5, $6, $7 FROM vs_users WHERE id = $2 RETURNING {SESSION}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(new.user_id.to_string())
                .bind(family.to_string())
                .bind(&new.token_hash)
                .bind(agent)
                .bind(now)
                .bind(new.expires_at.as_millis())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("creating a session for user {}", new.user_id), e))?;
            row.map(|r| session(&r))
                .transpose()?
                .ok_or_else(|| no_user(new.user_id))
        }

        async fn session_by_token(&mut self, token_hash: &str) -> Result<Option<Session>> {
            let sql = format!("SELECT {SESSION} FROM vs_sessions WHERE token_hash = $1");
            let row = sqlx::query(&sql)
                .bind(token_hash)
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert("looking up a session", e))?;
            row.map(|r| session(&r)).transpose()
        }

        async fn use_session(&mut self, id: SessionId) -> Result<bool> {
            let now = self.now().as_millis();
            let done = sqlx::query(
                "UPDATE vs_sessions SET used_at = $2 \
                 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(id.to_string())
            .bind(now)
            .execute(self.conn())
            .await
            .map_err(|e| convert(&format!("using session {id}"), e))?;
            Ok(done.rows_affected() == 1)
        }

        async fn revoke_family(&mut self, family: SessionId) -> Result<u64> {
            self.revoke_sessions(
                "family",
                family.to_string(),
                &format!("session family {family}"),
            )
            .await
        }

        async fn revoke_user_sessions(&mut self, user: UserId) -> Result<u64> {
            self.revoke_sessions(
                "user_id",
                user.to_string(),
                &format!("the sessions of user {user}"),
            )
            .await
        }

        async fn delete_expired_sessions(&mut self, before: Timestamp) -> Result<u64> {
            let done = sqlx::query("DELETE FROM vs_sessions WHERE expires_at < $1")
                .bind(before.as_millis())
                .execute(self.conn())
                .await
                .map_err(|e| convert("deleting expired sessions", e))?;
            Ok(done.rows_affected())
        }
    }
}
