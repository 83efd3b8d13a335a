//! [`SqlCatalog`]: the catalog on SQLite (the embedded default) or Postgres.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::{
    Catalog, NewVideo, Rendition, SourceMeta, StatusChange, Video, VideoFilter, VideoStatus,
};
use crate::sql::{col, convert, Database};
use crate::{Clock, Error, Result, Timestamp, VideoId};

const COLUMNS: &str = "id, owner, title, status, failure_reason, source_key, source_meta, \
                       renditions, created_at, updated_at";

/// Longest list answered by [`Catalog::list_videos`].
const MAX_LIST: usize = 1000;

/// The video catalog on SQLite or Postgres.
#[derive(Clone)]
pub struct SqlCatalog {
    db: Database,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SqlCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlCatalog({})", self.db)
    }
}

impl fmt::Display for SqlCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.db, f)
    }
}

impl SqlCatalog {
    /// The catalog in `db`.
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        SqlCatalog { db, clock }
    }

    fn video(&self, r: &AnyRow) -> Result<Video> {
        let id: String = col(r, "id")?;
        let json_err = |field: &str, e: serde_json::Error| {
            Error::backend(format!("decoding {field} of video {id} in {self}"), e)
        };
        let source_meta: Option<String> = col(r, "source_meta")?;
        let renditions: String = col(r, "renditions")?;
        Ok(Video {
            id: id.parse()?,
            owner: col::<Option<String>>(r, "owner")?
                .map(|o| o.parse())
                .transpose()?,
            title: col(r, "title")?,
            status: VideoStatus::parse(&col::<String>(r, "status")?)?,
            failure_reason: col(r, "failure_reason")?,
            source_key: col(r, "source_key")?,
            source: source_meta
                .map(|s| serde_json::from_str::<SourceMeta>(&s))
                .transpose()
                .map_err(|e| json_err("source metadata", e))?,
            renditions: serde_json::from_str::<Vec<Rendition>>(&renditions)
                .map_err(|e| json_err("renditions", e))?,
            created_at: Timestamp::from_millis(col(r, "created_at")?),
            updated_at: Timestamp::from_millis(col(r, "updated_at")?),
        })
    }

    fn not_found(&self, id: VideoId) -> Error {
        Error::not_found(format!("video {id} in {self}: no such video"))
    }
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::invalid_input(format!("{what} does not serialize: {e}")))
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn create_video(&self, new: NewVideo) -> Result<Video> {
        new.validate()?;
        let id = new.id.unwrap_or_default();
        let now = self.clock.now();
        let sql = format!(
            "INSERT INTO vs_videos (id, owner, title, status, source_key, renditions, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, '[]', $5, $5) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(new.owner.map(|o| o.to_string()))
            .bind(&new.title)
            .bind(new.source_key.clone())
            .bind(now.as_millis())
            .fetch_one(self.db.pool())
            .await
            .map_err(|e| convert(&format!("creating video {id} in {self}"), e))?;
        self.video(&row)
    }

    async fn get_video(&self, id: VideoId) -> Result<Video> {
        let sql = format!("SELECT {COLUMNS} FROM vs_videos WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("reading video {id} from {self}"), e))?;
        row.map(|r| self.video(&r))
            .transpose()?
            .ok_or_else(|| self.not_found(id))
    }

    async fn list_videos(&self, filter: VideoFilter) -> Result<Vec<Video>> {
        let limit = filter.limit.unwrap_or(MAX_LIST).min(MAX_LIST);
        // `$n IS NULL OR ...` keeps one statement for every filter shape.
        let sql = format!(
            "SELECT {COLUMNS} FROM vs_videos \
             WHERE ($1 IS NULL OR owner = $1) AND ($2 IS NULL OR status = $2) \
             ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.owner.map(|o| o.to_string()))
            .bind(filter.status.map(|s| s.as_str().to_owned()))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| convert(&format!("listing videos in {self}"), e))?;
        rows.iter().map(|r| self.video(r)).collect()
    }

    async fn update_status(&self, id: VideoId, change: StatusChange) -> Result<Video> {
        let next = change.status();
        let now = self.clock.now();
        let (reason, renditions) = match &change {
            StatusChange::Failed { reason } => (Some(crate::queue::clip_reason(reason)), None),
            StatusChange::Ready { renditions } => (None, Some(to_json("renditions", renditions)?)),
            StatusChange::Pending | StatusChange::Processing => (None, None),
        };
        let sources = VideoStatus::sources_of(next)
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        // The status guard makes the check and the change one atomic step.
        let sql = format!(
            "UPDATE vs_videos SET status = $2, failure_reason = $3, \
             renditions = COALESCE($4, renditions), updated_at = $5 \
             WHERE id = $1 AND status IN ({sources}) RETURNING {COLUMNS}"
        );
        let what = format!("moving video {id} to {next} in {self}");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(next.as_str())
            .bind(reason)
            .bind(renditions)
            .bind(now.as_millis())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&what, e))?;
        match row {
            Some(row) => self.video(&row),
            None => {
                let current = self.get_video(id).await?;
                Err(Error::conflict(format!(
                    "{what}: a {} video cannot become {next}",
                    current.status
                )))
            }
        }
    }

    async fn set_source_meta(&self, id: VideoId, meta: SourceMeta) -> Result<Video> {
        let sql = format!(
            "UPDATE vs_videos SET source_meta = $2, updated_at = $3 WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(to_json("source metadata", &meta)?)
            .bind(self.clock.now().as_millis())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("recording the source of video {id} in {self}"), e))?;
        row.map(|r| self.video(&r))
            .transpose()?
            .ok_or_else(|| self.not_found(id))
    }

    async fn delete_video(&self, id: VideoId) -> Result<()> {
        let done = sqlx::query("DELETE FROM vs_videos WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await
            .map_err(|e| convert(&format!("deleting video {id} from {self}"), e))?;
        if done.rows_affected() == 0 {
            return Err(self.not_found(id));
        }
        Ok(())
    }
}
