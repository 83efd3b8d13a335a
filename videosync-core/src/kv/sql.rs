//! [`SqlKv`]: the key-value store on SQLite (the embedded default) or
//! Postgres.
//!
//! # Layout
//! `vs_kv` holds values and counters (one row per key), `vs_kv_members` the
//! members of sets (one row per member); migration `0004_kv.sql` of each
//! dialect makes them.
//!
//! # Semantics
//! Every operation is one guarded statement, so compare-and-set holds with
//! many connections and processes: an `UPDATE ... WHERE version = $v`, or an
//! upsert whose `DO UPDATE ... WHERE` admits only an expired row (create) or a
//! counter that cannot overflow (incr). SQLite runs each statement under its
//! database-wide write lock; Postgres re-checks the `WHERE` against the row a
//! concurrent writer committed before it applies.
//!
//! Versions never go back for a key, whatever was deleted: on Postgres every
//! write takes the next value of the sequence `vs_kv_version`; on SQLite a
//! row's version grows by one per write, and a new row starts above
//! `vs_kv_floor`, which a trigger raises to the version of every deleted row.
//!
//! Expiry compares with the store's [`Clock`] in every statement, so an
//! expired row is invisible at once. Rows are deleted by [`KeyValue::sweep`],
//! and by each handle on its own: a write that finds [`SWEEP_INTERVAL`]
//! passed since the handle's last sweep deletes one batch ([`SWEEP_BATCH`]
//! rows per table) after its own statement.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::any::AnyRow;

use super::{
    check_member, check_value, incr_bounds, opt_ttl_millis, ttl_millis, Key, KeyValue, Member,
    PutMode, PutOptions, Version, Versioned, SWEEP_INTERVAL,
};
use crate::sql::{col, convert, Database, Dialect};
use crate::{Clock, Error, Result, Timestamp};

/// Most rows one sweep statement deletes, so a sweep never holds the
/// database for long.
pub const SWEEP_BATCH: i64 = 1000;

/// The key-value store on SQLite or Postgres.
#[derive(Clone)]
pub struct SqlKv {
    db: Database,
    clock: Arc<dyn Clock>,
    sql: Arc<Statements>,
    /// Monotonic time of this handle's last sweep.
    swept_at: Arc<Mutex<Option<Duration>>>,
}

impl fmt::Debug for SqlKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlKv({self})")
    }
}

impl fmt::Display for SqlKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/kv", self.db)
    }
}

/// The statements whose text depends on the dialect: only how a write
/// finds its new version differs.
struct Statements {
    put_overwrite: String,
    put_create: String,
    put_if_version: String,
    incr: String,
}

/// `(key) IS live at $n`, for the row named `table`.
fn live(table: &str, now: &str) -> String {
    format!("({table}.expires_at IS NULL OR {table}.expires_at > {now})")
}

impl Statements {
    fn new(dialect: Dialect) -> Self {
        // `new`: the version of an inserted row; `upsert`: of a row an
        // upsert rewrites (`excluded.version` is `new`); `bump`: of a row an
        // UPDATE rewrites.
        let (new, upsert, bump) = match dialect {
            Dialect::Postgres => (
                "nextval('vs_kv_version')",
                "excluded.version",
                "nextval('vs_kv_version')",
            ),
            Dialect::Sqlite => (
                "(SELECT floor FROM vs_kv_floor WHERE id = 1) + 1",
                "max(vs_kv.version + 1, excluded.version)",
                "version + 1",
            ),
        };
        let insert = format!(
            "INSERT INTO vs_kv (key, value, counter, version, expires_at) \
             VALUES ($1, $2, NULL, {new}, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, counter = NULL, \
             version = {upsert}, expires_at = excluded.expires_at"
        );
        let live_now = live("vs_kv", "$4");
        Statements {
            put_overwrite: format!("{insert} RETURNING version"),
            put_create: format!("{insert} WHERE NOT {live_now} RETURNING version"),
            put_if_version: format!(
                "UPDATE vs_kv SET value = $2, counter = NULL, version = {bump}, expires_at = $3 \
                 WHERE key = $1 AND version = $4 AND {} RETURNING version",
                live("vs_kv", "$5")
            ),
            incr: format!(
                "INSERT INTO vs_kv (key, value, counter, version, expires_at) \
                 VALUES ($1, NULL, $2, {new}, $3) \
                 ON CONFLICT (key) DO UPDATE SET \
                 counter = CASE WHEN {live_now} THEN vs_kv.counter + excluded.counter ELSE excluded.counter END, \
                 value = NULL, version = {upsert}, \
                 expires_at = CASE WHEN {live_now} THEN vs_kv.expires_at ELSE excluded.expires_at END \
                 WHERE NOT {live_now} OR (vs_kv.counter IS NOT NULL AND vs_kv.counter >= $5 AND vs_kv.counter <= $6) \
                 RETURNING counter"
            ),
        }
    }
}

const GET: &str = "SELECT value, counter, version FROM vs_kv \
                   WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)";
const DELETE: &str = "DELETE FROM vs_kv WHERE key = $1 RETURNING expires_at";
const DELETE_IF_VERSION: &str = "DELETE FROM vs_kv WHERE key = $1 AND version = $2 \
                                 AND (expires_at IS NULL OR expires_at > $3) RETURNING version";
const SET_ADD: &str = "INSERT INTO vs_kv_members (key, member, expires_at, prev_expires_at) \
                       VALUES ($1, $2, $3, NULL) ON CONFLICT (key, member) DO UPDATE SET \
                       prev_expires_at = vs_kv_members.expires_at, expires_at = excluded.expires_at \
                       RETURNING prev_expires_at";
const SET_REMOVE: &str =
    "DELETE FROM vs_kv_members WHERE key = $1 AND member = $2 RETURNING expires_at";
const SET_MEMBERS: &str =
    "SELECT member, expires_at FROM vs_kv_members WHERE key = $1 AND expires_at > $2";
const SET_LEN: &str = "SELECT COUNT(*) AS n FROM vs_kv_members WHERE key = $1 AND expires_at > $2";
// The outer `expires_at` test is not redundant: on Postgres a row that a
// concurrent write revived between the subquery and the delete is re-checked
// against it and kept.
const SWEEP_VALUES: &str = "DELETE FROM vs_kv WHERE expires_at <= $1 AND key IN \
                            (SELECT key FROM vs_kv WHERE expires_at <= $1 LIMIT $2)";
const SWEEP_MEMBERS: &str = "DELETE FROM vs_kv_members WHERE expires_at <= $1 AND (key, member) IN \
                             (SELECT key, member FROM vs_kv_members WHERE expires_at <= $1 LIMIT $2)";

impl SqlKv {
    /// The key-value store in `db`, its expiry following `clock`.
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        SqlKv {
            sql: Arc::new(Statements::new(db.dialect())),
            db,
            clock,
            swept_at: Arc::default(),
        }
    }

    /// The database underneath.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// After a write: one sweep batch, if this handle's sweep is due. A
    /// failed sweep is logged, never reported as the write's failure.
    async fn maybe_sweep(&self) {
        let mono = self.clock.monotonic();
        {
            let mut at = self.swept_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|at| mono.saturating_sub(at) < SWEEP_INTERVAL) {
                return;
            }
            *at = Some(mono);
        }
        if let Err(e) = self.sweep_batch(self.clock.now()).await {
            tracing::warn!(error = %e, store = %self, "sweeping expired key-value rows failed");
        }
    }

    /// Deletes up to [`SWEEP_BATCH`] expired rows of each table; returns how
    /// many rows it deleted and whether a table may have more.
    async fn sweep_batch(&self, now: Timestamp) -> Result<(u64, bool)> {
        let mut removed = 0;
        let mut more = false;
        for (sql, what) in [(SWEEP_VALUES, "values"), (SWEEP_MEMBERS, "set members")] {
            let done = sqlx::query(sql)
                .bind(now.as_millis())
                .bind(SWEEP_BATCH)
                .execute(self.db.pool())
                .await
                .map_err(|e| convert(&format!("sweeping expired {what} in {self}"), e))?;
            removed += done.rows_affected();
            more |= done.rows_affected() >= SWEEP_BATCH.unsigned_abs();
        }
        Ok((removed, more))
    }

    fn versioned(&self, key: &Key, row: &AnyRow) -> Result<Versioned> {
        let value: Option<Vec<u8>> = col(row, "value")?;
        let counter: Option<i64> = col(row, "counter")?;
        let value = match (value, counter) {
            (Some(v), _) => Bytes::from(v),
            (None, Some(n)) => Bytes::from(n.to_string()),
            (None, None) => {
                return Err(Error::backend(
                    format!("reading {key} in {self}"),
                    "the row has neither a value nor a counter",
                ))
            }
        };
        Ok(Versioned {
            value,
            version: version(&format!("reading {key} in {self}"), col(row, "version")?)?,
        })
    }

    /// The live count at `key`, or `None` when it holds no live counter; for
    /// an error message.
    async fn counter_of(&self, key: &Key, now: Timestamp) -> Result<Option<i64>> {
        let row = sqlx::query(GET)
            .bind(key.as_str())
            .bind(now.as_millis())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("get of {key} from {self}"), e))?;
        match row {
            Some(row) => col(&row, "counter"),
            None => Ok(None),
        }
    }

    /// The live version of `key`, for an error message.
    async fn current(&self, key: &Key) -> String {
        match self.get(key).await {
            Ok(Some(v)) => format!("the version is {}", v.version),
            Ok(None) => "there is no value".to_owned(),
            Err(e) => format!("and reading it back failed: {e}"),
        }
    }
}

fn version(what: &str, v: i64) -> Result<Version> {
    u64::try_from(v)
        .map(Version)
        .map_err(|_| Error::backend(what.to_owned(), format!("version {v} is negative")))
}

fn expiry(now: Timestamp, ttl: Option<i64>) -> Option<i64> {
    ttl.map(|ms| now.as_millis().saturating_add(ms))
}

#[async_trait]
impl KeyValue for SqlKv {
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        let now = self.clock.now();
        let row = sqlx::query(GET)
            .bind(key.as_str())
            .bind(now.as_millis())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("get of {key} from {self}"), e))?;
        row.map(|r| self.versioned(key, &r)).transpose()
    }

    async fn put(&self, key: &Key, value: Bytes, opts: PutOptions) -> Result<Version> {
        check_value("put", key, &value)?;
        let ttl = opt_ttl_millis("put", key, opts.ttl)?;
        let now = self.clock.now();
        let expires_at = expiry(now, ttl);
        let what = || format!("put of {key} in {self}");
        let query = match opts.mode {
            PutMode::Overwrite => sqlx::query(&self.sql.put_overwrite)
                .bind(key.as_str())
                .bind(value.to_vec())
                .bind(expires_at),
            PutMode::Create => sqlx::query(&self.sql.put_create)
                .bind(key.as_str())
                .bind(value.to_vec())
                .bind(expires_at)
                .bind(now.as_millis()),
            PutMode::IfVersion(want) => {
                // No stored version exceeds i64::MAX, so such a version
                // cannot match.
                let Ok(want_sql) = i64::try_from(want.get()) else {
                    return Err(Error::precondition(format!(
                        "put of {key} in {self} if version {want}: no such version"
                    )));
                };
                sqlx::query(&self.sql.put_if_version)
                    .bind(key.as_str())
                    .bind(value.to_vec())
                    .bind(expires_at)
                    .bind(want_sql)
                    .bind(now.as_millis())
            }
        };
        let row = query
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&what(), e))?;
        let result = match row {
            Some(row) => version(&what(), col(&row, "version")?),
            None => Err(match opts.mode {
                PutMode::Create => Error::already_exists(format!(
                    "create of {key} in {self}: it exists ({})",
                    self.current(key).await
                )),
                PutMode::IfVersion(want) => Error::precondition(format!(
                    "put of {key} in {self} if version {want}: {}",
                    self.current(key).await
                )),
                PutMode::Overwrite => Error::backend(what(), "the upsert returned no row"),
            }),
        };
        self.maybe_sweep().await;
        result
    }

    async fn delete(&self, key: &Key, if_version: Option<Version>) -> Result<bool> {
        let now = self.clock.now();
        let what = || format!("delete of {key} from {self}");
        let result = match if_version {
            None => {
                let row = sqlx::query(DELETE)
                    .bind(key.as_str())
                    .fetch_optional(self.db.pool())
                    .await
                    .map_err(|e| convert(&what(), e))?;
                match row {
                    None => Ok(false),
                    Some(row) => {
                        let at: Option<i64> = col(&row, "expires_at")?;
                        Ok(at.is_none_or(|at| at > now.as_millis()))
                    }
                }
            }
            Some(want) => {
                let deleted = match i64::try_from(want.get()) {
                    Ok(want_sql) => sqlx::query(DELETE_IF_VERSION)
                        .bind(key.as_str())
                        .bind(want_sql)
                        .bind(now.as_millis())
                        .fetch_optional(self.db.pool())
                        .await
                        .map_err(|e| convert(&what(), e))?
                        .is_some(),
                    Err(_) => false,
                };
                if deleted {
                    Ok(true)
                } else {
                    Err(Error::precondition(format!(
                        "delete of {key} from {self} if version {want}: {}",
                        self.current(key).await
                    )))
                }
            }
        };
        self.maybe_sweep().await;
        result
    }

    async fn incr(&self, key: &Key, by: i64, ttl: Option<Duration>) -> Result<i64> {
        let ttl = opt_ttl_millis("incr", key, ttl)?;
        let now = self.clock.now();
        let (lo, hi) = incr_bounds(by);
        let row = sqlx::query(&self.sql.incr)
            .bind(key.as_str())
            .bind(by)
            .bind(expiry(now, ttl))
            .bind(now.as_millis())
            .bind(lo)
            .bind(hi)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("incr of {key} by {by} in {self}"), e))?;
        let result = match row {
            Some(row) => col::<Option<i64>>(&row, "counter")?.ok_or_else(|| {
                Error::backend(
                    format!("incr of {key} in {self}"),
                    "the counter came back empty",
                )
            }),
            // The guard refused: a live value that is not a counter, or a
            // count the sum would overflow.
            None => Err(Error::conflict(match self.counter_of(key, now).await {
                Ok(Some(n)) => {
                    format!("incr of {key} by {by} in {self}: the count {n} would overflow")
                }
                Ok(None) => format!(
                    "incr of {key} in {self}: it holds a value written by put, not a counter"
                ),
                Err(e) => format!(
                    "incr of {key} by {by} in {self}: it is not a counter or would overflow \
                     (reading it back failed: {e})"
                ),
            })),
        };
        self.maybe_sweep().await;
        result
    }

    async fn set_add(&self, key: &Key, member: &str, ttl: Duration) -> Result<bool> {
        check_member("set_add", key, member)?;
        let ttl = ttl_millis("set_add", key, ttl)?;
        let now = self.clock.now();
        let row = sqlx::query(SET_ADD)
            .bind(key.as_str())
            .bind(member)
            .bind(now.as_millis().saturating_add(ttl))
            .fetch_one(self.db.pool())
            .await
            .map_err(|e| convert(&format!("set_add of {member:?} to {key} in {self}"), e))?;
        let prev: Option<i64> = col(&row, "prev_expires_at")?;
        self.maybe_sweep().await;
        Ok(prev.is_none_or(|at| at <= now.as_millis()))
    }

    async fn set_remove(&self, key: &Key, member: &str) -> Result<bool> {
        check_member("set_remove", key, member)?;
        let now = self.clock.now();
        let row = sqlx::query(SET_REMOVE)
            .bind(key.as_str())
            .bind(member)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("set_remove of {member:?} from {key} in {self}"), e))?;
        let was_live = match row {
            None => false,
            Some(row) => col::<i64>(&row, "expires_at")? > now.as_millis(),
        };
        self.maybe_sweep().await;
        Ok(was_live)
    }

    async fn set_members(&self, key: &Key) -> Result<Vec<Member>> {
        let now = self.clock.now();
        let rows = sqlx::query(SET_MEMBERS)
            .bind(key.as_str())
            .bind(now.as_millis())
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| convert(&format!("set_members of {key} in {self}"), e))?;
        let mut members = rows
            .iter()
            .map(|r| {
                Ok(Member {
                    name: col(r, "member")?,
                    expires_at: Timestamp::from_millis(col(r, "expires_at")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // In Rust, not SQL: the database's collation may not be byte order.
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }

    async fn set_len(&self, key: &Key) -> Result<u64> {
        let now = self.clock.now();
        let row = sqlx::query(SET_LEN)
            .bind(key.as_str())
            .bind(now.as_millis())
            .fetch_one(self.db.pool())
            .await
            .map_err(|e| convert(&format!("set_len of {key} in {self}"), e))?;
        let n: i64 = col(&row, "n")?;
        Ok(n.unsigned_abs())
    }

    async fn sweep(&self) -> Result<u64> {
        let now = self.clock.now();
        *self.swept_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.clock.monotonic());
        let mut total = 0;
        loop {
            let (removed, more) = self.sweep_batch(now).await?;
            total += removed;
            if !more {
                return Ok(total);
            }
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
#[allow(clippy::unwrap_used)] // Test code.
mod tests {
    use super::*;
    use crate::ManualClock;

    async fn rows(kv: &SqlKv) -> (i64, i64) {
        let count = |table: &'static str| async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(kv.db.pool())
                .await
                .unwrap()
        };
        (count("vs_kv").await, count("vs_kv_members").await)
    }

    #[tokio::test]
    async fn sweeps_delete_expired_rows_and_keep_versions_growing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kv.db").display());
        let db = Database::connect(&url).await.unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
        let kv = SqlKv::new(db, clock.clone());
        let (a, b) = (Key::parse("a").unwrap(), Key::parse("b").unwrap());
        let ttl = Duration::from_secs(1);
        let mut last = Version(0);
        for i in 0..5 {
            last = kv
                .put(
                    &a,
                    Bytes::from(format!("{i}")),
                    PutOptions::default().ttl(ttl),
                )
                .await
                .unwrap();
        }
        kv.put(&b, Bytes::from("stays"), PutOptions::default())
            .await
            .unwrap();
        kv.set_add(&a, "gone", ttl).await.unwrap();
        kv.set_add(&a, "stays", ttl * 10).await.unwrap();
        assert_eq!(rows(&kv).await, (2, 2));

        clock.advance(ttl);
        assert_eq!(kv.sweep().await.unwrap(), 2, "one value, one member");
        assert_eq!(rows(&kv).await, (1, 1));
        assert_eq!(kv.sweep().await.unwrap(), 0);

        // The swept row's versions stay used: the new row starts above them.
        let again = kv
            .put(&a, Bytes::from("new"), PutOptions::create())
            .await
            .unwrap();
        assert!(again > last, "{again} must be above {last}");
    }

    #[tokio::test]
    async fn writes_sweep_on_their_own_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kv.db").display());
        let db = Database::connect(&url).await.unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
        let kv = SqlKv::new(db, clock.clone());
        let ttl = Duration::from_secs(1);
        for i in 0..10 {
            let k = Key::parse(&format!("k{i}")).unwrap();
            kv.put(&k, Bytes::new(), PutOptions::default().ttl(ttl))
                .await
                .unwrap();
        }
        assert_eq!(rows(&kv).await.0, 10);
        clock.advance(SWEEP_INTERVAL);
        let k = Key::parse("trigger").unwrap();
        kv.put(&k, Bytes::new(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(rows(&kv).await.0, 1, "the write swept the expired rows");
    }
}
