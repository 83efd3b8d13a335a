//! [`SqlCatalog`]: the catalog on SQLite (the embedded default) or Postgres,
//! one transaction per call over the [`Videos`] repository.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Catalog, NewVideo, SourceMeta, StatusChange, Video, VideoFilter};
use crate::db::Videos;
use crate::page::{PageRequest, MAX_PAGE};
use crate::sql::Database;
use crate::{Clock, Result, VideoId};

/// The video catalog on SQLite or Postgres.
#[derive(Clone)]
pub struct SqlCatalog {
    db: Database,
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
    /// The catalog in `db`, stamping rows with `clock`.
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        SqlCatalog {
            db: db.with_clock(clock),
        }
    }

    /// The database behind it.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// Runs one repository call in its own write transaction.
macro_rules! in_tx {
    ($db:expr, |$tx:ident| $body:expr) => {{
        let mut $tx = $db.begin().await?;
        let out = $body.await?;
        $tx.commit().await?;
        Ok(out)
    }};
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn create_video(&self, new: NewVideo) -> Result<Video> {
        in_tx!(self.db, |tx| tx.create_video(new))
    }

    async fn get_video(&self, id: VideoId) -> Result<Video> {
        let mut tx = self.db.read().await?;
        tx.video(id).await
    }

    async fn list_videos(&self, filter: VideoFilter) -> Result<Vec<Video>> {
        let mut tx = self.db.read().await?;
        let page = PageRequest::first(filter.limit.unwrap_or(MAX_PAGE));
        Ok(tx.videos(filter, page).await?.items)
    }

    async fn update_status(
        &self,
        id: VideoId,
        expected_version: Option<u64>,
        change: StatusChange,
    ) -> Result<Video> {
        in_tx!(self.db, |tx| tx.set_video_status(
            id,
            expected_version,
            change
        ))
    }

    async fn set_source_meta(&self, id: VideoId, meta: SourceMeta) -> Result<Video> {
        in_tx!(self.db, |tx| tx.set_video_source(id, meta))
    }

    async fn delete_video(&self, id: VideoId) -> Result<()> {
        in_tx!(self.db, |tx| Videos::delete_video(&mut tx, id))
    }
}
