//! The SQL database behind the SQL backends and the repositories: one pool,
//! one dialect, one migrator that applies the core's migrations and any
//! embedder's (the server's) together, and transactions ([`Tx`]) that span
//! repositories.
//!
//! Queries go through sqlx's `Any` driver with `$n` placeholders, which both
//! SQLite and Postgres accept; the few statements that differ by dialect
//! (`FOR UPDATE SKIP LOCKED`) ask the dialect.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, Migrator};
use sqlx::{AnyConnection, AnyPool};

use crate::{Clock, Error, Result, SystemClock, Timestamp};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Migrations an embedder adds to the core's, one folder per dialect (build
/// them with `sqlx::migrate!`). Their versions must not collide with the
/// core's (which stay below 1000): the server numbers its own from 1000.
#[derive(Debug, Clone, Copy)]
pub struct ExtraMigrations {
    /// The SQLite folder.
    pub sqlite: &'static Migrator,
    /// The Postgres folder.
    pub postgres: &'static Migrator,
}

/// How to open a [`Database`].
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Migrations applied with the core's, in version order, by one migrator.
    pub extra_migrations: Vec<ExtraMigrations>,
    /// The clock the repositories stamp rows with.
    pub clock: Arc<dyn Clock>,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            extra_migrations: Vec::new(),
            clock: Arc::new(SystemClock::new()),
        }
    }
}

/// Which SQL the database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // Postgres needs its feature.
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The row-locking clause of a "take the next job" subquery.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            // SQLite serializes writers; the subquery and update are one
            // statement, so no other writer can interleave.
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }
}

/// A connection pool to SQLite or Postgres with the videosync schema.
///
/// # Examples
/// ```no_run
/// # async fn demo() -> videosync_core::Result<()> {
/// let db = videosync_core::sql::Database::connect("sqlite:///var/lib/videosync/db.sqlite").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    dialect: Dialect,
    shown: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({})", self.shown)
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Database {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:`, `postgres://...`),
    /// creating a SQLite file if missing, and applies the migrations.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown scheme or malformed URL,
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DatabaseOptions::default()).await
    }

    /// Connects like [`Database::connect`], with an embedder's migrations and
    /// clock.
    ///
    /// # Errors
    /// As [`Database::connect`]; also [`Error::InvalidInput`] when two
    /// migrations share a version.
    pub async fn connect_with(url: &str, opts: DatabaseOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        let (dialect, url, shown) = match scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                // A data directory that does not exist yet is created, as
                // the file itself is (`mode=rwc`).
                if let Some(parent) = std::path::Path::new(path)
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty() && !path.starts_with(':'))
                {
                    tokio::fs::create_dir_all(parent).await.map_err(|e| {
                        Error::from_io(format!("creating the directory {}", parent.display()), e)
                    })?;
                }
                let url = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                (Dialect::Sqlite, url, format!("Sqlite({path})"))
            }
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                let shown = url::Url::parse(url)
                    .map(|u| {
                        format!(
                            "Postgres({}:{}{})",
                            u.host_str().unwrap_or("localhost"),
                            u.port().unwrap_or(5432),
                            u.path()
                        )
                    })
                    .map_err(|e| {
                        Error::invalid_input(format!(
                            "malformed database URL `{}`: {e}",
                            crate::redact_url(url)
                        ))
                    })?;
                (Dialect::Postgres, url.to_owned(), shown)
            }
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown database URL scheme `{}` in `{}`; expected {}",
                    other.escape_debug(),
                    crate::redact_url(url),
                    crate::sql_schemes_hint(&[])
                )))
            }
        };
        let options = sqlx::any::AnyConnectOptions::from_str(&url).map_err(|e| {
            Error::invalid_input(format!(
                "malformed database URL `{}`: {e}",
                crate::redact_url(&url)
            ))
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(match dialect {
                // One writer at a time anyway; a few readers beside it.
                Dialect::Sqlite => 4,
                Dialect::Postgres => 16,
            })
            // A pooled SQLite connection is a file handle on a thread of
            // this process: it cannot go stale, so it is not pinged (a
            // round trip to that thread) every time it is taken.
            .test_before_acquire(dialect == Dialect::Postgres)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| convert(&format!("connecting to {shown}"), e))?;
        let db = Database {
            pool,
            dialect,
            shown,
            clock: opts.clock,
        };
        db.prepare(&opts.extra_migrations).await?;
        Ok(db)
    }

    /// Whether `url` names a database this type connects to (by scheme).
    pub fn handles(url: &str) -> bool {
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        (cfg!(feature = "sqlite") && scheme == "sqlite")
            || (cfg!(feature = "postgres") && matches!(scheme, "postgres" | "postgresql"))
    }

    async fn prepare(&self, extra: &[ExtraMigrations]) -> Result<()> {
        let what = format!("migrating {self}");
        let migrator = self.migrator(extra)?;
        if self.dialect == Dialect::Sqlite {
            // WAL lets readers run beside the writer and survives in the
            // file, so setting it once per connect is enough.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&self.pool)
                .await
                .map_err(|e| convert(&what, e))?;
        }
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| Error::backend(what, e))
    }

    /// One migrator over the core's migrations and `extra`, in version order:
    /// sqlx refuses a second migrator on a database whose history it does not
    /// know, so every folder goes through this one.
    fn migrator(&self, extra: &[ExtraMigrations]) -> Result<Migrator> {
        let pick = |m: &ExtraMigrations| match self.dialect {
            Dialect::Sqlite => m.sqlite,
            Dialect::Postgres => m.postgres,
        };
        let core = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        let mut all: Vec<Migration> = core.iter().cloned().collect();
        for m in extra {
            all.extend(pick(m).iter().cloned());
        }
        all.sort_by_key(|m| m.version);
        if let Some(pair) = all
            .windows(2)
            .find(|w| w.first().map(|m| m.version) == w.get(1).map(|m| m.version))
        {
            let version = pair.first().map_or(0, |m| m.version);
            return Err(Error::invalid_input(format!(
                "migrating {self}: two migrations have version {version}; embedders number theirs from 1000"
            )));
        }
        Ok(Migrator {
            migrations: Cow::Owned(all),
            ..Migrator::DEFAULT
        })
    }

    /// Starts a transaction for writing. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout
    /// instead of one failing when it upgrades a read lock.
    ///
    /// Dropping the [`Tx`] without [`Tx::commit`] rolls it back.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no connection can be had.
    pub async fn begin(&self) -> Result<Tx> {
        let inner = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
        .map_err(|e| convert(&format!("starting a transaction on {self}"), e))?;
        Ok(self.tx(Conn::Tx(inner)))
    }

    /// Starts a transaction that only reads (a consistent snapshot, taking
    /// no write lock on SQLite).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no connection can be had.
    pub async fn read(&self) -> Result<Tx> {
        let inner = match self.dialect {
            // A deferred transaction in WAL mode: the snapshot is taken by
            // its first read.
            Dialect::Sqlite => self.pool.begin().await,
            // Postgres's default (read committed) takes a snapshot per
            // statement.
            Dialect::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await
            }
        }
        .map_err(|e| convert(&format!("starting a read on {self}"), e))?;
        Ok(self.tx(Conn::Tx(inner)))
    }

    /// A connection outside any transaction, for a read of one statement
    /// (looking up a caller, a search): each statement sees the database
    /// as of its own start, and nothing is begun or committed, which saves
    /// the two round trips of a [`Database::read`] (on SQLite, to the
    /// connection's thread). Use [`Database::read`] when several
    /// statements must see one snapshot, and [`Database::begin`] to write:
    /// here each statement commits on its own, so a change of several
    /// would not be all or nothing.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no connection can be had.
    pub async fn autocommit(&self) -> Result<Tx> {
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| convert(&format!("connecting to {self}"), e))?;
        Ok(self.tx(Conn::Each(conn)))
    }

    fn tx(&self, inner: Conn) -> Tx {
        Tx {
            inner,
            dialect: self.dialect,
            clock: self.clock.clone(),
        }
    }

    /// The same database, stamping rows with `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock rows are stamped with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| convert(&format!("pinging {self}"), e))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction over the repositories ([`crate::db`]): every repository
/// trait is implemented for it, so one unit of work can create a user, a
/// channel and its owner's membership, or mark a video ready and ack its job,
/// and either all of it happens or none.
///
/// Dropping it without [`Tx::commit`] rolls back.
pub struct Tx {
    inner: Conn,
    dialect: Dialect,
    clock: Arc<dyn Clock>,
}

/// The connection under a [`Tx`].
enum Conn {
    /// Inside a transaction ([`Database::begin`], [`Database::read`]).
    Tx(sqlx::Transaction<'static, sqlx::Any>),
    /// Each statement its own transaction ([`Database::autocommit`]).
    Each(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tx({:?})", self.dialect)
    }
}

impl Tx {
    /// Makes every change of the transaction durable and visible.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database went away; nothing was
    /// committed then (or, if the reply alone was lost, everything was:
    /// writes that matter carry a version or fence so a retry can tell).
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            Conn::Tx(tx) => tx
                .commit()
                .await
                .map_err(|e| convert("committing a transaction", e)),
            Conn::Each(_) => Ok(()),
        }
    }

    /// Undoes every change of the transaction (outside one, from
    /// [`Database::autocommit`], each statement has committed already).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database went away (which rolls back
    /// too).
    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            Conn::Tx(tx) => tx
                .rollback()
                .await
                .map_err(|e| convert("rolling back a transaction", e)),
            Conn::Each(_) => Ok(()),
        }
    }

    /// The time to stamp rows with.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            Conn::Tx(tx) => tx,
            Conn::Each(conn) => conn,
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Converts a sqlx error into the category that fits it.
pub(crate) fn convert(what: &str, e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::RowNotFound => Error::not_found(format!("{what}: no such row")),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::already_exists(format!("{what}: {}", db.message()))
        }
        sqlx::Error::Configuration(_) => Error::invalid_input(format!("{what}: {e}")),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::unavailable(what.to_owned(), e),
        _ => Error::backend(what.to_owned(), e),
    }
}

/// Reads a column, converting a decode failure to [`Error::Backend`].
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get(name)
        .map_err(|e| Error::backend(format!("reading column {name}"), e))
}
