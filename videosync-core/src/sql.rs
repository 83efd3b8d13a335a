//! The SQL database behind the SQL queue and catalog: one pool, one dialect,
//! migrations per dialect applied on connect.
//!
//! Queries go through sqlx's `Any` driver with `$n` placeholders, which both
//! SQLite and Postgres accept; the few statements that differ by dialect
//! (`FOR UPDATE SKIP LOCKED`) ask the dialect.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

use crate::{Error, Result};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

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
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| convert(&format!("connecting to {shown}"), e))?;
        let db = Database {
            pool,
            dialect,
            shown,
        };
        db.prepare().await?;
        Ok(db)
    }

    /// Whether `url` names a database this type connects to (by scheme).
    pub fn handles(url: &str) -> bool {
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        (cfg!(feature = "sqlite") && scheme == "sqlite")
            || (cfg!(feature = "postgres") && matches!(scheme, "postgres" | "postgresql"))
    }

    async fn prepare(&self) -> Result<()> {
        let what = format!("migrating {self}");
        match self.dialect {
            Dialect::Sqlite => {
                // WAL lets readers run beside the writer and survives in the
                // file, so setting it once per connect is enough.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&self.pool)
                    .await
                    .map_err(|e| convert(&what, e))?;
                SQLITE_MIGRATIONS.run(&self.pool).await
            }
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await,
        }
        .map_err(|e| Error::backend(what, e))
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
