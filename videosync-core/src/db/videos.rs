//! Videos ([`Videos`]): the catalog record with its metadata, fenced status
//! changes, per-channel lists and full-text search.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::catalog::{NewVideo, SourceMeta, StatusChange, Video, VideoFilter};
use crate::db::Visibility;
use crate::page::{Page, PageRequest};
use crate::{ChannelId, Result, UserId, VideoId};

/// A change to a video's metadata: each `Some` field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoUpdate {
    /// A new title.
    pub title: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// New tags (replacing the old).
    pub tags: Option<Vec<String>>,
    /// A new visibility (`Some(None)` to follow the channel again).
    pub visibility: Option<Option<Visibility>>,
    /// Move it to another channel.
    pub channel_id: Option<ChannelId>,
}

/// Who is asking, for filtering what they may see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The account, or `None` for an anonymous visitor or a guest.
    pub user: Option<UserId>,
    /// An instance administrator sees everything.
    pub is_admin: bool,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The video.
    pub video: Video,
    /// Its relevance: higher is better, comparable within one result list.
    pub score: f64,
}

/// Videos.
///
/// # Contract
/// Everything [`crate::Catalog`] promises, plus:
/// - Metadata updates with an expected version apply only when it matches,
///   else [`crate::Error::Precondition`].
/// - [`Videos::search_videos`] matches every word of the query as a prefix
///   (so results come as a person types) in the title, tags or description,
///   best first: videos with every word in the title, then those with every
///   word in the tags, then the rest, newest first within each
///   (the score is 3, 2 or 1). Its cost grows with the page, not with how
///   many videos match. It answers only what
///   the viewer may see: ready videos in public channels (unless the video
///   itself is not public), every video of the channels the viewer is a
///   member of, the viewer's own videos, and all of them to an instance
///   administrator. Unlisted and private channels never show to others.
///
/// # Implementing
/// Implemented for [`crate::sql::Tx`].
#[async_trait]
pub trait Videos: Send {
    /// Creates a video in `pending`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`], [`crate::Error::AlreadyExists`].
    async fn create_video(&mut self, new: NewVideo) -> Result<Video>;

    /// One video.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`].
    async fn video(&mut self, id: VideoId) -> Result<Video>;

    /// Changes a video's metadata.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`], [`crate::Error::NotFound`],
    /// [`crate::Error::Precondition`].
    async fn update_video(
        &mut self,
        id: VideoId,
        expected_version: Option<u64>,
        update: VideoUpdate,
    ) -> Result<Video>;

    /// Moves a video to a new status (see [`crate::Catalog::update_status`]).
    ///
    /// # Errors
    /// As [`crate::Catalog::update_status`].
    async fn set_video_status(
        &mut self,
        id: VideoId,
        expected_version: Option<u64>,
        change: StatusChange,
    ) -> Result<Video>;

    /// Records what probing the source found.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`].
    async fn set_video_source(&mut self, id: VideoId, meta: SourceMeta) -> Result<Video>;

    /// Deletes a video record (its objects and jobs are the caller's).
    ///
    /// # Errors
    /// [`crate::Error::NotFound`].
    async fn delete_video(&mut self, id: VideoId) -> Result<()>;

    /// Videos matching `filter`, newest first, paged.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] for a bad cursor.
    async fn videos(&mut self, filter: VideoFilter, page: PageRequest) -> Result<Page<Video>>;

    /// The videos of a channel, newest first.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] for a bad cursor.
    async fn channel_videos(
        &mut self,
        channel: ChannelId,
        page: PageRequest,
    ) -> Result<Page<Video>>;

    /// Full-text search (see the contract).
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] for a query over 200 characters or a bad cursor.
    async fn search_videos(
        &mut self,
        query: &str,
        viewer: Viewer,
        page: PageRequest,
    ) -> Result<Page<SearchHit>>;
}

/// The words of a search query: letters and digits only, lower-cased, at most 8.
#[cfg_attr(not(feature = "sql"), allow(dead_code))] // Used by the SQL backend.
pub(crate) fn query_words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(8)
        .collect()
}

#[cfg(feature = "sql")]
mod sql {
    use async_trait::async_trait;
    use sqlx::any::AnyRow;

    use super::*;
    use crate::catalog::{check_description, check_tags, check_title, Rendition, VideoStatus};
    use crate::db::rows::{count, n, opt_parsed, ts};
    use crate::page::Cursor;
    use crate::sql::{col, convert, Dialect, Tx};
    use crate::{Error, Timestamp};

    const VIDEO: &str = "v.seq, v.id, v.owner, v.title, v.status, v.failure_reason, v.source_key, v.source_meta, \
                         v.renditions, v.channel_id, v.description, v.tags, v.visibility, v.version, v.attempt, \
                         v.fence, v.output_prefix, v.created_at, v.updated_at";
    const VIDEO_RET: &str = "seq, id, owner, title, status, failure_reason, source_key, source_meta, \
                             renditions, channel_id, description, tags, visibility, version, attempt, \
                             fence, output_prefix, created_at, updated_at";

    fn video(r: &AnyRow) -> Result<Video> {
        let id: String = col(r, "id")?;
        let json_err = |field: &str, e: serde_json::Error| {
            Error::backend(format!("decoding {field} of video {id}"), e)
        };
        let source_meta: Option<String> = col(r, "source_meta")?;
        let renditions: String = col(r, "renditions")?;
        let tags: String = col(r, "tags")?;
        Ok(Video {
            id: id.parse()?,
            owner: opt_parsed(r, "owner")?,
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
            channel_id: opt_parsed(r, "channel_id")?,
            description: col(r, "description")?,
            tags: serde_json::from_str(&tags).map_err(|e| json_err("tags", e))?,
            visibility: opt_parsed(r, "visibility")?,
            version: count(r, "version")?,
            attempt: count(r, "attempt")?,
            fence: col(r, "fence")?,
            output_prefix: col(r, "output_prefix")?,
            created_at: ts(r, "created_at")?,
            updated_at: ts(r, "updated_at")?,
        })
    }

    /// [`VIDEO`] as one JSON array per row, the JSON columns embedded as
    /// JSON: SQLite builds a page of them with `json_group_array` (in the
    /// order its `ORDER BY` gives, SQLite 3.44 and later), so a page crosses
    /// from the database thread as one value rather than one message and
    /// one row conversion per video.
    const VIDEO_JSON: &str = "json_array(id, owner, title, status, failure_reason, source_key, \
                              json(source_meta), json(renditions), channel_id, description, json(tags), \
                              visibility, version, attempt, fence, output_prefix, created_at, updated_at)";

    /// One element of a [`VIDEO_JSON`] page, its fields in that order.
    #[derive(serde::Deserialize)]
    struct JsonVideo(
        String,
        Option<String>,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<SourceMeta>,
        Vec<Rendition>,
        Option<String>,
        String,
        Vec<String>,
        Option<String>,
        i64,
        i64,
        Option<String>,
        Option<String>,
        i64,
        i64,
    );

    /// The videos of a [`VIDEO_JSON`] page, in its order.
    fn json_page(page: &str) -> Result<Vec<Video>> {
        let rows: Vec<JsonVideo> = serde_json::from_str(page)
            .map_err(|e| Error::backend("decoding a page of videos", e))?;
        let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
        rows.into_iter()
            .map(|j| {
                Ok(Video {
                    id: j.0.parse()?,
                    owner: j.1.map(|s| s.parse()).transpose()?,
                    title: j.2,
                    status: VideoStatus::parse(&j.3)?,
                    failure_reason: j.4,
                    source_key: j.5,
                    source: j.6,
                    renditions: j.7,
                    channel_id: j.8.map(|s| s.parse()).transpose()?,
                    description: j.9,
                    tags: j.10,
                    visibility: j.11.map(|s| s.parse()).transpose()?,
                    version: unsigned(j.12),
                    attempt: unsigned(j.13),
                    fence: j.14,
                    output_prefix: j.15,
                    created_at: Timestamp::from_millis(j.16),
                    updated_at: Timestamp::from_millis(j.17),
                })
            })
            .collect()
    }

    fn with_seq(r: &AnyRow) -> Result<(i64, Video)> {
        Ok((col(r, "seq")?, video(r)?))
    }

    fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
        serde_json::to_string(value)
            .map_err(|e| Error::invalid_input(format!("{what} does not serialize: {e}")))
    }

    fn no_video(id: VideoId) -> Error {
        Error::not_found(format!("video {id}: no such video"))
    }

    fn seq_page(rows: Vec<(i64, Video)>, limit: usize) -> Page<Video> {
        Page::from_overfetch(rows, limit, |(seq, _)| {
            Cursor::from_fields(&[&seq.to_string()])
        })
        .map(|(_, v)| v)
    }

    /// The visibility filter of search, with the viewer's id as `$2` and
    /// the admin flag as `$3`.
    const VISIBLE: &str = "($3 = 1 OR v.owner = $2 \
        OR (c.visibility = 'public' AND v.status = 'ready' AND COALESCE(v.visibility, 'public') = 'public') \
        OR EXISTS (SELECT 1 FROM vs_members m WHERE m.channel_id = v.channel_id AND m.user_id = $2))";

    /// A relevance tier of search.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Tier {
        /// Every word in the title.
        Title,
        /// Every word in the tags, not all in the title.
        Tags,
        /// Every word somewhere, not all in the title nor all in the tags.
        Anywhere,
    }

    impl Tier {
        /// The tiers, best first, with their scores.
        const ALL: [(Tier, f64); 3] =
            [(Tier::Title, 3.0), (Tier::Tags, 2.0), (Tier::Anywhere, 1.0)];

        /// The number the Postgres window query gives this tier.
        fn pg_number(self) -> i64 {
            match self {
                Tier::Title => 3,
                Tier::Tags => 2,
                Tier::Anywhere => 1,
            }
        }
    }

    /// The `FROM` and `WHERE` of one SQLite tier (binds: `$1` the match,
    /// `$2` the viewer, `$3` admin) and its match text. Words are letters
    /// and digits only (see `query_words`), so they cannot break out of the
    /// match syntax; each matches as a prefix.
    fn sqlite_tier_query(tier: Tier, words: &[String]) -> (String, String) {
        let all = words
            .iter()
            .map(|w| format!("\"{w}\"*"))
            .collect::<Vec<_>>()
            .join(" AND ");
        // One full-text table per field (migration 0007). A tier
        // leaves out the earlier tiers' matches with `NOT IN`, which
        // SQLite evaluates once into a set: it only runs when the
        // earlier tiers did not fill the page, so that set is small.
        const NOT_TITLE: &str = "AND f.rowid NOT IN \
            (SELECT rowid FROM vs_videos_fts_title WHERE vs_videos_fts_title MATCH $1)";
        const NOT_TAGS: &str = "AND f.rowid NOT IN \
            (SELECT rowid FROM vs_videos_fts_tags WHERE vs_videos_fts_tags MATCH $1)";
        let (table, except) = match tier {
            Tier::Title => ("vs_videos_fts_title", String::new()),
            Tier::Tags => ("vs_videos_fts_tags", NOT_TITLE.to_owned()),
            Tier::Anywhere => ("vs_videos_fts", format!("{NOT_TITLE} {NOT_TAGS}")),
        };
        let from = format!(
            "FROM {table} f JOIN vs_videos v ON v.seq = f.rowid \
             LEFT JOIN vs_channels c ON c.id = v.channel_id \
             WHERE {table} MATCH $1 AND {VISIBLE} {except}"
        );
        (from, all)
    }

    /// The Postgres match text: every word as a prefix.
    fn pg_match_text(words: &[String]) -> String {
        words
            .iter()
            .map(|w| format!("{w}:*"))
            .collect::<Vec<_>>()
            .join(" & ")
    }

    /// The Postgres match, `$1` parsed once per statement: a scalar subquery
    /// is an InitPlan, evaluated before the scan, whereas a bare
    /// `to_tsquery('simple', $1)` in a prepared statement's generic plan is
    /// parsed again for every row it is tested on. It also hides the words
    /// from the planner, so each statement below has one plan whatever
    /// they are.
    const PG_MATCH: &str = "(SELECT to_tsquery('simple', $1))";

    /// Rows of the Postgres window per result wanted (see `search_videos`).
    const PG_WINDOW_PER_RESULT: usize = 40;

    /// The Postgres window query (binds: `$1` the match, `$2` the viewer,
    /// `$3` admin, `$4` the most hits per tier, `$5` the window's rows):
    /// the newest `$5` videos, walked down the primary key (a subquery with
    /// its own `ORDER BY` and `LIMIT` is planned on its own, and a bounded
    /// walk of the newest rows has no cheaper plan), each match the viewer
    /// may see with its tier, newest first within each.
    fn pg_window_query() -> String {
        format!(
            "SELECT hit, tier FROM (\
               SELECT hit, tier, row_number() OVER (PARTITION BY tier ORDER BY hit DESC) AS n FROM (\
                 SELECT v.seq AS hit, CAST(CASE WHEN v.search_title @@ {PG_MATCH} THEN 3 \
                   WHEN v.search_tags @@ {PG_MATCH} THEN 2 ELSE 1 END AS BIGINT) AS tier \
                 FROM (SELECT seq, owner, status, visibility, channel_id, search_title, search_tags, search \
                       FROM vs_videos ORDER BY seq DESC LIMIT $5) v \
                 LEFT JOIN vs_channels c ON c.id = v.channel_id \
                 WHERE v.search @@ {PG_MATCH} AND {VISIBLE}) m) r \
             WHERE n <= $4 ORDER BY tier DESC, hit DESC"
        )
    }

    /// The Postgres query of one whole tier (binds: `$1` the match, `$2`
    /// the viewer, `$3` admin, `$4` the limit): every match from the
    /// tier's GIN index into a materialized set, then the newest. The set
    /// keeps the planner from walking the primary key instead, which costs
    /// the whole table when matches are few.
    fn pg_tier_query(tier: Tier) -> String {
        let (field, except) = match tier {
            Tier::Title => ("search_title", String::new()),
            Tier::Tags => (
                "search_tags",
                format!("AND NOT v.search_title @@ {PG_MATCH}"),
            ),
            Tier::Anywhere => (
                "search",
                format!("AND NOT v.search_title @@ {PG_MATCH} AND NOT v.search_tags @@ {PG_MATCH}"),
            ),
        };
        format!(
            "WITH m AS MATERIALIZED (SELECT v.seq FROM vs_videos v \
               LEFT JOIN vs_channels c ON c.id = v.channel_id \
               WHERE v.{field} @@ {PG_MATCH} AND {VISIBLE} {except}) \
             SELECT seq AS hit FROM m ORDER BY seq DESC LIMIT $4"
        )
    }

    /// The viewer as search binds it: `$2` the user id (empty for nobody)
    /// and `$3` the admin flag.
    type ViewerBinds = (String, i64);

    /// SQLite's results, best first: `limit` of them after the first
    /// `offset`, whole rows in one statement per tier. FTS5 hands a tier's
    /// matches out newest first and the statement stops at its limit, so a
    /// tier costs what it returns; only a page that starts past a whole
    /// tier counts that tier's matches, to know how far into the next one
    /// it starts.
    async fn sqlite_results(
        tx: &mut Tx,
        words: &[String],
        (user, admin): &ViewerBinds,
        mut offset: usize,
        limit: usize,
    ) -> Result<Vec<(Video, f64)>> {
        let mut results = Vec::new();
        for (tier, score) in Tier::ALL {
            let need = limit - results.len();
            if need == 0 {
                break;
            }
            let (from, text) = sqlite_tier_query(tier, words);
            // FTS5 walks its doclists in rowid order and stops at the
            // limit.
            let page = format!(
                "SELECT json_group_array({VIDEO_JSON} ORDER BY seq DESC) AS page FROM \
                 (SELECT {VIDEO} {from} ORDER BY f.rowid DESC LIMIT $4 OFFSET $5)"
            );
            let row = sqlx::query(&page)
                .bind(&text)
                .bind(user)
                .bind(*admin)
                .bind(n(need))
                .bind(n(offset))
                .fetch_one(tx.conn())
                .await
                .map_err(|e| convert("searching videos", e))?;
            let videos = json_page(&col::<String>(&row, "page")?)?;
            if videos.is_empty() && offset > 0 {
                // The page starts past this tier: into the next one by
                // what is left after this tier's matches.
                let row = sqlx::query(&format!("SELECT count(*) AS n {from}"))
                    .bind(&text)
                    .bind(user)
                    .bind(*admin)
                    .fetch_one(tx.conn())
                    .await
                    .map_err(|e| convert("counting search results", e))?;
                let matches = usize::try_from(count(&row, "n")?).unwrap_or(usize::MAX);
                offset = offset.saturating_sub(matches);
                continue;
            }
            // A tier that answered anything started at the page's start.
            offset = 0;
            results.extend(videos.into_iter().map(|v| (v, score)));
        }
        Ok(results)
    }

    /// One tier's statement: `$1` the match text, the viewer, `$4` the
    /// limit; answers the hits' sequence numbers in its order.
    async fn tier_hits(
        tx: &mut Tx,
        sql: &str,
        text: &str,
        (user, admin): &ViewerBinds,
        limit: usize,
    ) -> Result<Vec<i64>> {
        let rows = sqlx::query(sql)
            .bind(text)
            .bind(user)
            .bind(*admin)
            .bind(n(limit))
            .fetch_all(tx.conn())
            .await
            .map_err(|e| convert("searching videos", e))?;
        rows.iter().map(|r| col(r, "hit")).collect()
    }

    /// Postgres's hits, best first, up to `want`.
    ///
    /// A GIN index answers which rows match but not in order, so the
    /// newest matches of a tier come either from a walk of the newest rows
    /// (cheap when matches are dense, the whole table when they are rare)
    /// or from every match and a sort (cheap when they are rare, every
    /// match of a common word otherwise). Which one is cheaper depends on
    /// the words, and the planner cannot be trusted to know: a prepared
    /// statement's generic plan does not see them (it takes every word for
    /// one that matches 0.5 % of videos: over the server benchmark's
    /// catalog it sorted the 20 000 titles with `music`, 130 ms), and a
    /// custom one misjudges words that seldom meet, or whose matches the
    /// viewer may not see. So both are bounded here, whatever the words:
    ///
    /// 1. One walk of the newest `PG_WINDOW_PER_RESULT * want` rows sorts
    ///    every match there into its tier. A tier with `want` matches there
    ///    is done: they are its newest.
    /// 2. Any other tier that the page still needs has under one match in
    ///    `PG_WINDOW_PER_RESULT` newest rows, so, unless its matches are
    ///    far denser in older videos, it has few in all: they come whole
    ///    from its GIN index, newest first.
    ///
    /// Over the server benchmark's 100 000 videos the walk costs 1 to 2 ms
    /// per 1 000 rows, and a tier from its index a few microseconds per
    /// match.
    async fn pg_hits(
        tx: &mut Tx,
        words: &[String],
        viewer: &ViewerBinds,
        want: usize,
    ) -> Result<Vec<(i64, f64)>> {
        let (user, admin) = viewer;
        let text = pg_match_text(words);
        let rows = sqlx::query(&pg_window_query())
            .bind(&text)
            .bind(user)
            .bind(*admin)
            .bind(n(want))
            .bind(n(want.saturating_mul(PG_WINDOW_PER_RESULT)))
            .fetch_all(tx.conn())
            .await
            .map_err(|e| convert("searching the newest videos", e))?;
        let window = rows
            .iter()
            .map(|r| Ok((col::<i64>(r, "hit")?, col::<i64>(r, "tier")?)))
            .collect::<Result<Vec<_>>>()?;
        let mut hits = Vec::new();
        for (tier, score) in Tier::ALL {
            if hits.len() >= want {
                break;
            }
            let need = want - hits.len();
            let newest: Vec<i64> = window
                .iter()
                .filter(|&&(_, t)| t == tier.pg_number())
                .map(|&(hit, _)| hit)
                .take(need)
                .collect();
            if newest.len() == need {
                hits.extend(newest.into_iter().map(|hit| (hit, score)));
                continue;
            }
            for hit in tier_hits(tx, &pg_tier_query(tier), &text, viewer, need).await? {
                hits.push((hit, score));
            }
        }
        Ok(hits)
    }

    /// Postgres's results, best first: `limit` of them after the first
    /// `offset`. The hits come first (see `pg_hits`), then their rows.
    async fn pg_results(
        tx: &mut Tx,
        words: &[String],
        viewer: &ViewerBinds,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(Video, f64)>> {
        let hits = pg_hits(tx, words, viewer, offset.saturating_add(limit)).await?;
        let hits: Vec<(i64, f64)> = hits.into_iter().skip(offset).take(limit).collect();
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let list = hits
            .iter()
            .map(|(seq, _)| seq.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // The sequence numbers are integers read from the database (the
        // `Any` driver binds no arrays).
        let sql = format!("SELECT {VIDEO} FROM vs_videos v WHERE v.seq IN ({list})");
        let rows = sqlx::query(&sql)
            .fetch_all(tx.conn())
            .await
            .map_err(|e| convert("reading search results", e))?;
        let mut by_seq = std::collections::HashMap::new();
        for r in &rows {
            let (seq, v) = with_seq(r)?;
            by_seq.insert(seq, v);
        }
        Ok(hits
            .into_iter()
            .filter_map(|(seq, score)| by_seq.remove(&seq).map(|v| (v, score)))
            .collect())
    }

    #[async_trait]
    impl Videos for Tx {
        async fn create_video(&mut self, new: NewVideo) -> Result<Video> {
            new.validate()?;
            let id = new.id.unwrap_or_default();
            let now = self.now().as_millis();
            let sql = format!(
                "INSERT INTO vs_videos (id, owner, title, status, source_key, renditions, channel_id, description, \
                 tags, visibility, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'pending', $4, '[]', $5, $6, $7, $8, $9, $9) RETURNING {VIDEO_RET}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(new.owner.map(|o| o.to_string()))
                .bind(&new.title)
                .bind(new.source_key.clone())
                .bind(new.channel_id.map(|c| c.to_string()))
                .bind(&new.description)
                .bind(to_json("tags", &new.tags)?)
                .bind(new.visibility.map(|v| v.as_str()))
                .bind(now)
                .fetch_one(self.conn())
                .await
                .map_err(|e| convert(&format!("creating video {id}"), e))?;
            video(&row)
        }

        async fn video(&mut self, id: VideoId) -> Result<Video> {
            let sql = format!("SELECT {VIDEO} FROM vs_videos v WHERE v.id = $1");
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("reading video {id}"), e))?;
            row.map(|r| video(&r))
                .transpose()?
                .ok_or_else(|| no_video(id))
        }

        async fn update_video(
            &mut self,
            id: VideoId,
            expected_version: Option<u64>,
            update: VideoUpdate,
        ) -> Result<Video> {
            if let Some(t) = &update.title {
                check_title(t)?;
            }
            if let Some(d) = &update.description {
                check_description(d)?;
            }
            if let Some(t) = &update.tags {
                check_tags(t)?;
            }
            let tags = update
                .tags
                .as_ref()
                .map(|t| to_json("tags", t))
                .transpose()?;
            let sql = format!(
                "UPDATE vs_videos SET title = COALESCE($3, title), description = COALESCE($4, description), \
                 tags = COALESCE($5, tags), visibility = CASE WHEN $6 = 1 THEN $7 ELSE visibility END, \
                 channel_id = COALESCE($8, channel_id), version = version + 1, updated_at = $9 \
                 WHERE id = $1 AND ($2 IS NULL OR version = $2) RETURNING {VIDEO_RET}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(expected_version.map(n))
                .bind(update.title)
                .bind(update.description)
                .bind(tags)
                .bind(i64::from(update.visibility.is_some()))
                .bind(update.visibility.flatten().map(|v| v.as_str()))
                .bind(update.channel_id.map(|c| c.to_string()))
                .bind(self.now().as_millis())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("updating video {id}"), e))?;
            match row {
                Some(r) => video(&r),
                None => {
                    let current = Videos::video(self, id).await?;
                    Err(Error::precondition(format!(
                        "updating video {id}: expected version {}, it is at {}",
                        expected_version.unwrap_or_default(),
                        current.version
                    )))
                }
            }
        }

        async fn set_video_status(
            &mut self,
            id: VideoId,
            expected_version: Option<u64>,
            change: StatusChange,
        ) -> Result<Video> {
            let next = change.status();
            let what = format!("moving video {id} to {next}");
            let current = Videos::video(self, id).await?;
            if let Some(v) = expected_version.filter(|&v| v != current.version) {
                return Err(Error::precondition(format!(
                    "{what}: expected version {v}, it is at {}",
                    current.version
                )));
            }
            if !current.status.can_become(next) {
                return Err(Error::conflict(format!(
                    "{what}: a {} video cannot become {next}",
                    current.status
                )));
            }
            let fence_required = match &change {
                StatusChange::Ready { fence, .. }
                | StatusChange::Failed {
                    fence: Some(fence), ..
                } => Some(fence.as_str()),
                _ => None,
            };
            if let Some(fence) = fence_required {
                if current.fence.as_deref() != Some(fence) {
                    return Err(Error::precondition(format!(
                        "{what}: the attempt's fence no longer owns the work (another attempt took it over)"
                    )));
                }
            }
            let (fence, attempt_step, reason, renditions, prefix): (
                Option<String>,
                i64,
                Option<String>,
                Option<String>,
                Option<String>,
            ) = match &change {
                StatusChange::Pending => (None, 0, None, None, None),
                StatusChange::Processing { fence } => (Some(fence.clone()), 1, None, None, None),
                StatusChange::Ready {
                    renditions,
                    output_prefix,
                    ..
                } => {
                    crate::ObjectKey::parse(output_prefix)?;
                    (
                        None,
                        0,
                        None,
                        Some(to_json("renditions", renditions)?),
                        Some(output_prefix.clone()),
                    )
                }
                StatusChange::Failed { reason, .. } => {
                    (None, 0, Some(crate::queue::clip_reason(reason)), None, None)
                }
            };
            // Guarded by the version read above: a concurrent change moved it
            // and this one then matches no row.
            let sql = format!(
                "UPDATE vs_videos SET status = $3, fence = $4, attempt = attempt + $5, failure_reason = $6, \
                 renditions = COALESCE($7, renditions), output_prefix = COALESCE($8, output_prefix), \
                 version = version + 1, updated_at = $9 WHERE id = $1 AND version = $2 RETURNING {VIDEO_RET}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(n(current.version))
                .bind(next.as_str())
                .bind(fence)
                .bind(attempt_step)
                .bind(reason)
                .bind(renditions)
                .bind(prefix)
                .bind(self.now().as_millis())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&what, e))?;
            row.map(|r| video(&r))
                .transpose()?
                .ok_or_else(|| Error::precondition(format!("{what}: the video changed meanwhile")))
        }

        async fn set_video_source(&mut self, id: VideoId, meta: SourceMeta) -> Result<Video> {
            let sql = format!(
                "UPDATE vs_videos SET source_meta = $2, version = version + 1, updated_at = $3 \
                 WHERE id = $1 RETURNING {VIDEO_RET}"
            );
            let row = sqlx::query(&sql)
                .bind(id.to_string())
                .bind(to_json("source metadata", &meta)?)
                .bind(self.now().as_millis())
                .fetch_optional(self.conn())
                .await
                .map_err(|e| convert(&format!("recording the source of video {id}"), e))?;
            row.map(|r| video(&r))
                .transpose()?
                .ok_or_else(|| no_video(id))
        }

        async fn delete_video(&mut self, id: VideoId) -> Result<()> {
            let done = sqlx::query("DELETE FROM vs_videos WHERE id = $1")
                .bind(id.to_string())
                .execute(self.conn())
                .await
                .map_err(|e| convert(&format!("deleting video {id}"), e))?;
            if done.rows_affected() == 0 {
                return Err(no_video(id));
            }
            Ok(())
        }

        async fn videos(&mut self, filter: VideoFilter, page: PageRequest) -> Result<Page<Video>> {
            let before = page.cursor.as_ref().map_or(Ok(i64::MAX), Cursor::number)?;
            let limit = filter
                .limit
                .map_or(page.limit(), |l| l.clamp(1, crate::page::MAX_PAGE));
            // `$n IS NULL OR ...` keeps one statement for every filter shape.
            let sql = format!(
                "SELECT {VIDEO} FROM vs_videos v \
                 WHERE ($1 IS NULL OR v.owner = $1) AND ($2 IS NULL OR v.status = $2) AND v.seq < $3 \
                 ORDER BY v.seq DESC LIMIT $4"
            );
            let rows = sqlx::query(&sql)
                .bind(filter.owner.map(|o| o.to_string()))
                .bind(filter.status.map(|s| s.as_str().to_owned()))
                .bind(before)
                .bind(n(limit + 1))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert("listing videos", e))?;
            let rows = rows.iter().map(with_seq).collect::<Result<Vec<_>>>()?;
            Ok(seq_page(rows, limit))
        }

        async fn channel_videos(
            &mut self,
            channel: ChannelId,
            page: PageRequest,
        ) -> Result<Page<Video>> {
            let before = page.cursor.as_ref().map_or(Ok(i64::MAX), Cursor::number)?;
            let limit = page.limit();
            let sql = format!(
                "SELECT {VIDEO} FROM vs_videos v WHERE v.channel_id = $1 AND v.seq < $2 ORDER BY v.seq DESC LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(channel.to_string())
                .bind(before)
                .bind(n(limit + 1))
                .fetch_all(self.conn())
                .await
                .map_err(|e| convert(&format!("listing the videos of channel {channel}"), e))?;
            let rows = rows.iter().map(with_seq).collect::<Result<Vec<_>>>()?;
            Ok(seq_page(rows, limit))
        }

        async fn search_videos(
            &mut self,
            query: &str,
            viewer: Viewer,
            page: PageRequest,
        ) -> Result<Page<SearchHit>> {
            if query.chars().count() > 200 {
                return Err(Error::invalid_input(
                    "a search query has at most 200 characters",
                ));
            }
            let words = query_words(query);
            if words.is_empty() {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
            let offset = page.cursor.as_ref().map_or(Ok(0), Cursor::number)?.max(0);
            let limit = page.limit();
            // Relevance comes in tiers: every word in the title, else every
            // word in the tags, else anywhere; newest first within a tier.
            // Each backend's way costs about what the page needs, not what
            // the words match (ranking every match, as bm25 or ts_rank
            // would, grows with the match count): see `sqlite_results` and
            // `pg_hits`.
            let skip = usize::try_from(offset).unwrap_or(usize::MAX);
            let viewer = (
                viewer.user.map(|u| u.to_string()).unwrap_or_default(),
                i64::from(viewer.is_admin),
            );
            // One more than the page, to know whether another follows.
            let hits = match self.dialect() {
                Dialect::Sqlite => sqlite_results(self, &words, &viewer, skip, limit + 1).await?,
                Dialect::Postgres => pg_results(self, &words, &viewer, skip, limit + 1).await?,
            };
            let hits: Vec<SearchHit> = hits
                .into_iter()
                .map(|(video, score)| SearchHit { video, score })
                .collect();
            let more = hits.len() > limit;
            let mut items = hits;
            items.truncate(limit);
            let next_offset = offset.saturating_add(n(items.len()));
            Ok(Page {
                items,
                next: more.then(|| Cursor::from_fields(&[&next_offset.to_string()])),
            })
        }
    }
}
