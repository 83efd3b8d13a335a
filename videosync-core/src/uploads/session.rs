//! [`StoreUploads`]: upload sessions with their state in SQL and their bytes
//! in an object store.
//!
//! # Where the bytes are
//! An upload's bytes are, in order:
//! 1. **parts** of a multipart upload to the final key, each exactly the
//!    upload's part size ([`UploadOptions::part_size`], at least
//!    [`MIN_PART_SIZE`] as S3 demands of every part but the last), and
//! 2. a **tail** shorter than one part: a list of *segments*, small objects
//!    under `<staging>/<upload id>/t-<random>`, one per append that did not
//!    fill a part. An append writes only its own new bytes as a new segment
//!    (nothing is rewritten), so small appends cost one small write each;
//!    after [`MAX_TAIL_SEGMENTS`] segments the next append merges them into
//!    one. When an append fills a part, the segments are read back, joined
//!    with the new bytes into the part, and deleted.
//!
//! The tail lives in the object store rather than in a database blob so
//! that the database holds only small rows and every byte is in one place;
//! finishing makes the tail the last part (or, for an upload shorter than a
//! part, writes the segments as the object with one streamed put) and
//! `complete_multipart` assembles the object atomically.
//!
//! # Durability order
//! Every step writes bytes first (a part, a segment) and then one guarded
//! `UPDATE` of the state row that counts them, so the offset never counts a
//! byte that is not stored. A crash between the two leaves an unreferenced
//! part (freed when the multipart upload completes or aborts) or segment
//! (removed with the upload's staging prefix when it finishes, aborts or
//! expires).
//!
//! # Writers
//! An append or finish first takes the row: it sets a random lease token and
//! an expiry ([`UploadOptions::lease`]) in one guarded `UPDATE` that also
//! checks the state and the offset. Every later change is guarded by that
//! token, so a writer that lost the row (its lease ran out while it
//! stalled) can change nothing. Part numbers are reserved from a counter in
//! the row, never reused, so a stale writer's late part can never replace
//! a part another writer recorded; segments have random names for the same
//! reason. The lease is renewed with each stored step and while chunks keep
//! arriving; a body that stalls longer than the lease loses the upload to
//! the next writer. A crashed writer's lease simply runs out.
//!
//! # Memory
//! An append holds one buffer of at most one part: the bytes received
//! since the last stored step, after room for the tail, which is read into
//! that room only when a part is full. A chunk larger than the room is
//! split without copying. So memory is one part per active append, plus
//! the chunk the body is delivering; [`StoreUploads::peak_buffered`]
//! reports the high-water mark for tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::{NewUpload, UploadId, UploadInfo, UploadSessions, UploadState};
use crate::sql::{col, convert, Database};
use crate::store::{
    ByteStream, DynObjectStore, MultipartId, ObjectMeta, PartId, PutPayload, MAX_PART_NUMBER,
    MIN_PART_SIZE,
};
use crate::{Clock, Error, ObjectKey, ObjectStoreExt, Result, Timestamp};

const COLUMNS: &str = "id, object_key, total, upload_offset, metadata, state, part_size, \
                       multipart_id, parts, next_part, tail, lease_token, lease_until, ttl_ms, \
                       expires_at, result, created_at, updated_at";

/// Most tail segments an upload keeps; the append that would add one more
/// merges them into one instead.
pub const MAX_TAIL_SEGMENTS: usize = 32;

/// Parts an upload of known length is planned for: below
/// [`MAX_PART_NUMBER`], leaving numbers for parts lost to failed appends.
const PLANNED_PARTS: u64 = 9_000;

/// How many expired uploads [`StoreUploads::expire`] reads per round.
const EXPIRE_BATCH: i64 = 100;

/// Settings of [`StoreUploads`].
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Size of every part but the last, in bytes: at least [`MIN_PART_SIZE`]
    /// (8 MiB by default). An upload whose declared length would need more
    /// than 9000 parts uses larger parts. Each active append buffers up to
    /// one part.
    pub part_size: usize,
    /// Where tail segments go: `<staging>/<upload id>/...` (`.uploads` by
    /// default). Keep it apart from real objects.
    pub staging: ObjectKey,
    /// The idle expiry of an upload created without one (24 hours).
    pub default_ttl: Duration,
    /// Largest upload accepted, in bytes; `None` for no limit beyond what
    /// [`MAX_PART_NUMBER`] parts hold.
    pub max_size: Option<u64>,
    /// How long a writer holds an upload without storing anything or
    /// receiving a chunk before another writer may take it over (60 s).
    pub lease: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: 8 * 1024 * 1024,
            // A constant, valid key.
            staging: ObjectKey::parse(".uploads").unwrap_or_else(|_| unreachable!()),
            default_ttl: Duration::from_secs(24 * 3600),
            max_size: None,
            lease: Duration::from_secs(60),
        }
    }
}

/// One stored part, as the state row lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPart {
    number: u32,
    etag: String,
    size: u64,
}

/// One tail segment, as the state row lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    name: String,
    size: u64,
}

/// A finished upload's object, as the state row keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMeta {
    size: u64,
    etag: Option<String>,
    last_modified: i64,
}

/// A state row.
struct Row {
    info: UploadInfo,
    part_size: u64,
    multipart: Option<MultipartId>,
    parts: Vec<StoredPart>,
    tail: Vec<Segment>,
    lease_token: Option<String>,
    lease_until: Option<Timestamp>,
    ttl: Duration,
    result: Option<StoredMeta>,
}

/// Bytes held in append buffers, now and at most.
#[derive(Debug, Default)]
struct Gauge {
    current: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    fn add(&self, n: u64) {
        let now = self.current.fetch_add(n, Ordering::SeqCst) + n;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn sub(&self, n: u64) {
        self.current.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Upload sessions: state in a SQL database, bytes in an object store.
///
/// The comment at the top of `uploads/session.rs` says where the bytes go,
/// the durability order, how writers are fenced and what memory an append
/// takes. Any number
/// of instances on the same database and store serve the same uploads.
#[derive(Clone)]
pub struct StoreUploads {
    db: Database,
    store: DynObjectStore,
    clock: Arc<dyn Clock>,
    opts: UploadOptions,
    gauge: Arc<Gauge>,
}

impl fmt::Debug for StoreUploads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUploads({self})")
    }
}

impl fmt::Display for StoreUploads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uploads({} + {})", self.db, self.store)
    }
}

/// Which operation takes the row.
#[derive(Clone, Copy)]
enum Op {
    Append { at: u64 },
    Finish,
}

impl StoreUploads {
    /// Upload sessions with state in `db` and bytes in `store`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a part size below [`MIN_PART_SIZE`] or a
    /// zero lease or expiry.
    pub fn new(
        db: Database,
        store: DynObjectStore,
        clock: Arc<dyn Clock>,
        opts: UploadOptions,
    ) -> Result<Self> {
        if opts.part_size < MIN_PART_SIZE {
            return Err(Error::invalid_input(format!(
                "upload part size {} is below the minimum of {MIN_PART_SIZE} bytes",
                opts.part_size
            )));
        }
        if opts.lease.is_zero() || opts.default_ttl.is_zero() {
            return Err(Error::invalid_input(
                "upload lease and default expiry must be longer than zero",
            ));
        }
        Ok(StoreUploads {
            db,
            store,
            clock,
            opts,
            gauge: Arc::new(Gauge::default()),
        })
    }

    /// The most bytes this instance's appends held in their buffers at once,
    /// since it was made or [`StoreUploads::reset_peak_buffered`]. For tests
    /// and metrics: one append stays within its upload's part size.
    pub fn peak_buffered(&self) -> u64 {
        self.gauge.peak.load(Ordering::SeqCst)
    }

    /// Starts a new high-water mark for [`StoreUploads::peak_buffered`].
    pub fn reset_peak_buffered(&self) {
        let current = self.gauge.current.load(Ordering::SeqCst);
        self.gauge.peak.store(current, Ordering::SeqCst);
    }

    fn staging_of(&self, id: &UploadId) -> Result<ObjectKey> {
        Ok(self.opts.staging.join(id.as_str())?)
    }

    fn part_size_for(&self, total: Option<u64>) -> u64 {
        const MIB: u64 = 1024 * 1024;
        let configured = self.opts.part_size as u64;
        match total {
            Some(total) => configured.max(total.div_ceil(PLANNED_PARTS).div_ceil(MIB) * MIB),
            None => configured,
        }
    }

    fn check_size(&self, what: &str, size: u64) -> Result<()> {
        match self.opts.max_size {
            Some(max) if size > max => Err(Error::invalid_input(format!(
                "{what}: {size} bytes is over the limit of {max} bytes in {self}"
            ))),
            _ => Ok(()),
        }
    }

    fn row(&self, r: &AnyRow) -> Result<Row> {
        let id = UploadId::parse(&col::<String>(r, "id")?)?;
        let json = |field: &str| -> Result<String> { col::<String>(r, field) };
        let bad = |field: &str, e: &dyn fmt::Display| {
            Error::backend(
                format!("decoding {field} of upload {id} in {self}"),
                e.to_string(),
            )
        };
        let unsigned = |field: &str, v: i64| u64::try_from(v).map_err(|e| bad(field, &e));
        let metadata = serde_json::from_str(&json("metadata")?).map_err(|e| bad("metadata", &e))?;
        let parts = serde_json::from_str(&json("parts")?).map_err(|e| bad("parts", &e))?;
        let tail = serde_json::from_str(&json("tail")?).map_err(|e| bad("tail", &e))?;
        let result = col::<Option<String>>(r, "result")?
            .map(|s| serde_json::from_str::<StoredMeta>(&s))
            .transpose()
            .map_err(|e| bad("result", &e))?;
        let total = col::<Option<i64>>(r, "total")?
            .map(|t| unsigned("total", t))
            .transpose()?;
        let info = UploadInfo {
            key: ObjectKey::parse(&col::<String>(r, "object_key")?)
                .map_err(|e| bad("object key", &e))?,
            offset: unsigned("offset", col(r, "upload_offset")?)?,
            total,
            metadata,
            created_at: Timestamp::from_millis(col(r, "created_at")?),
            expires_at: Timestamp::from_millis(col(r, "expires_at")?),
            state: UploadState::parse(&col::<String>(r, "state")?)?,
            id: id.clone(),
        };
        Ok(Row {
            part_size: unsigned("part size", col(r, "part_size")?)?,
            multipart: col::<Option<String>>(r, "multipart_id")?.map(MultipartId),
            parts,
            tail,
            lease_token: col(r, "lease_token")?,
            lease_until: col::<Option<i64>>(r, "lease_until")?.map(Timestamp::from_millis),
            ttl: Duration::from_millis(unsigned("expiry", col(r, "ttl_ms")?)?),
            result,
            info,
        })
    }

    async fn fetch(&self, id: &UploadId) -> Result<Option<Row>> {
        let sql = format!("SELECT {COLUMNS} FROM vs_uploads WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("reading upload {id} from {self}"), e))?;
        row.map(|r| self.row(&r)).transpose()
    }

    async fn fetch_existing(&self, id: &UploadId, what: &str) -> Result<Row> {
        self.fetch(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{what} in {self}: no such upload")))
    }

    fn finished_meta(&self, row: &Row) -> Result<ObjectMeta> {
        let stored = row.result.as_ref().ok_or_else(|| {
            Error::backend(
                format!("reading finished upload {} in {self}", row.info.id),
                "the row has no result",
            )
        })?;
        Ok(ObjectMeta::new(
            row.info.key.clone(),
            stored.size,
            Timestamp::from_millis(stored.last_modified),
            stored.etag.clone(),
        ))
    }

    /// Takes the row for `op`: one guarded `UPDATE` that checks state,
    /// expiry, offset and any other writer's lease.
    async fn acquire(&self, id: &UploadId, op: Op) -> Result<(Row, ReleaseGuard)> {
        let now = self.clock.now();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let condition = match op {
            Op::Append { .. } => "upload_offset = $5",
            Op::Finish => "total IS NOT NULL AND upload_offset = total",
        };
        let sql = format!(
            "UPDATE vs_uploads SET lease_token = $2, lease_until = $3 \
             WHERE id = $1 AND state = 'open' AND expires_at > $4 \
             AND (lease_token IS NULL OR lease_until <= $4) AND {condition} \
             RETURNING {COLUMNS}"
        );
        let mut query = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(token.clone())
            .bind(now.saturating_add(self.opts.lease).as_millis())
            .bind(now.as_millis());
        if let Op::Append { at } = op {
            query = query.bind(to_i64(at));
        }
        let what = match op {
            Op::Append { at } => format!("append at offset {at} to upload {id}"),
            Op::Finish => format!("finishing upload {id}"),
        };
        let row = query
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("{what} in {self}"), e))?;
        match row {
            Some(r) => {
                let row = self.row(&r)?;
                let guard = ReleaseGuard {
                    db: self.db.clone(),
                    id: id.clone(),
                    token,
                    armed: true,
                };
                Ok((row, guard))
            }
            None => Err(self.refusal(id, op, &what, now).await),
        }
    }

    /// Explains why [`StoreUploads::acquire`] changed nothing.
    async fn refusal(&self, id: &UploadId, op: Op, what: &str, now: Timestamp) -> Error {
        let row = match self.fetch_existing(id, what).await {
            Ok(row) => row,
            Err(e) => return e,
        };
        let info = &row.info;
        match info.state {
            UploadState::Aborted => {
                return Error::not_found(format!("{what} in {self}: the upload was aborted"))
            }
            UploadState::Finished => {
                return Error::conflict(format!("{what} in {self}: the upload is finished"))
            }
            UploadState::Open => {}
        }
        if info.expires_at <= now {
            return Error::not_found(format!(
                "{what} in {self}: the upload expired at {}",
                info.expires_at
            ));
        }
        match op {
            Op::Append { at } if info.offset != at => {
                return Error::conflict(format!(
                    "{what} in {self}: the upload is at offset {}, not {at}",
                    info.offset
                ))
            }
            Op::Finish => match info.total {
                None => {
                    return Error::conflict(format!(
                        "{what} in {self}: its length is not declared yet"
                    ))
                }
                Some(total) if info.offset != total => {
                    return Error::conflict(format!(
                        "{what} in {self}: it has {} of {total} bytes",
                        info.offset
                    ))
                }
                Some(_) => {}
            },
            Op::Append { .. } => {}
        }
        match row.lease_until {
            Some(until) if row.lease_token.is_some() && until > now => Error::conflict(format!(
                "{what} in {self}: another writer holds the upload until {until}"
            )),
            _ => Error::conflict(format!(
                "{what} in {self}: the upload changed meanwhile; read it and try again"
            )),
        }
    }

    /// Aborts the multipart upload (if any) and deletes the staging prefix.
    async fn remove_bytes(
        &self,
        id: &UploadId,
        key: &ObjectKey,
        multipart: Option<&MultipartId>,
    ) -> Result<()> {
        if let Some(mp) = multipart {
            self.store.abort_multipart(key, mp).await?;
        }
        self.store.delete_prefix(&self.staging_of(id)?).await?;
        Ok(())
    }

    async fn release(&self, guard: &mut ReleaseGuard) -> Result<()> {
        guard.armed = false;
        release(&self.db, &guard.id, &guard.token)
            .await
            .map_err(|e| convert(&format!("releasing upload {} in {self}", guard.id), e))
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::invalid_input(format!("upload state does not serialize: {e}")))
}

async fn release(
    db: &Database,
    id: &UploadId,
    token: &str,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE vs_uploads SET lease_token = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_token = $2",
    )
    .bind(id.as_str())
    .bind(token)
    .execute(db.pool())
    .await
    .map(|_| ())
}

/// Gives the row back when a writer ends, also when its future is dropped
/// (in the background, on the current runtime), so the next writer need not
/// wait for the lease to run out.
struct ReleaseGuard {
    db: Database,
    id: UploadId,
    token: String,
    armed: bool,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (db, id, token) = (self.db.clone(), self.id.clone(), self.token.clone());
            handle.spawn(async move {
                if let Err(e) = release(&db, &id, &token).await {
                    tracing::warn!(upload = %id, error = %e, "releasing an upload after a cancelled write failed; its lease runs out instead");
                }
            });
        }
    }
}

/// One writer's view of an upload it holds, and its buffer.
struct Writer<'a> {
    up: &'a StoreUploads,
    id: UploadId,
    key: ObjectKey,
    staging: ObjectKey,
    token: String,
    part_size: usize,
    /// Largest offset allowed: the total, or the size limit.
    limit: Option<u64>,
    /// The stored offset.
    offset: u64,
    multipart: Option<MultipartId>,
    parts: Vec<StoredPart>,
    tail: Vec<Segment>,
    tail_len: usize,
    ttl: Duration,
    /// `tail_len` bytes of room for the tail, then the bytes received since
    /// the last stored step; empty until the first byte arrives.
    buf: BytesMut,
    /// What this writer has added to the gauge.
    counted: u64,
    renewed_at: Duration,
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.up.gauge.sub(self.counted);
    }
}

impl<'a> Writer<'a> {
    fn new(up: &'a StoreUploads, row: Row, token: &str) -> Result<Self> {
        let tail_len = row.tail.iter().map(|s| s.size).sum::<u64>();
        let (part_size, tail_len) =
            match (usize::try_from(row.part_size), usize::try_from(tail_len)) {
                (Ok(p), Ok(t)) if t < p => (p, t),
                _ => {
                    return Err(Error::backend(
                        format!("reading upload {} in {up}", row.info.id),
                        format!(
                            "tail of {tail_len} bytes does not fit parts of {} bytes",
                            row.part_size
                        ),
                    ))
                }
            };
        let limit = match (row.info.total, up.opts.max_size) {
            (Some(t), _) => Some(t),
            (None, max) => max,
        };
        Ok(Writer {
            staging: up.staging_of(&row.info.id)?,
            id: row.info.id,
            key: row.info.key,
            token: token.to_owned(),
            part_size,
            limit,
            offset: row.info.offset,
            multipart: row.multipart,
            parts: row.parts,
            tail: row.tail,
            tail_len,
            ttl: row.ttl,
            buf: BytesMut::new(),
            counted: 0,
            renewed_at: up.clock.monotonic(),
            up,
        })
    }

    fn lost(&self, what: &str) -> Error {
        Error::precondition(format!(
            "{what} of upload {} in {}: another writer took the upload over (this writer's lease ran out)",
            self.id, self.up
        ))
    }

    fn recount(&mut self) {
        let now = self.buf.len() as u64;
        if now > self.counted {
            self.up.gauge.add(now - self.counted);
        } else {
            self.up.gauge.sub(self.counted - now);
        }
        self.counted = now;
    }

    /// Bytes received but not stored yet.
    fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.tail_len)
    }

    /// Takes one chunk of the body, storing every part it completes.
    async fn push(&mut self, mut chunk: Bytes) -> Result<()> {
        let received = self.offset + self.pending() as u64 + chunk.len() as u64;
        if let Some(limit) = self.limit {
            if received > limit {
                return Err(Error::invalid_input(format!(
                    "append to upload {} in {}: {received} bytes would pass the upload's length of {limit}",
                    self.id, self.up
                )));
            }
        }
        self.renew_if_due().await?;
        while !chunk.is_empty() {
            if self.buf.is_empty() {
                // Room for the tail, filled only when a part is complete.
                self.buf.reserve(self.part_size);
                self.buf.resize(self.tail_len, 0);
            }
            let take = (self.part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
            self.recount();
            if self.buf.len() == self.part_size {
                self.store_part().await?;
            }
        }
        Ok(())
    }

    async fn renew_if_due(&mut self) -> Result<()> {
        let clock = &self.up.clock;
        if clock.monotonic().saturating_sub(self.renewed_at) < self.up.opts.lease / 3 {
            return Ok(());
        }
        let until = clock.now().saturating_add(self.up.opts.lease);
        let done = sqlx::query(
            "UPDATE vs_uploads SET lease_until = $3 WHERE id = $1 AND lease_token = $2 AND state = 'open'",
        )
        .bind(self.id.as_str())
        .bind(self.token.as_str())
        .bind(until.as_millis())
        .execute(self.up.db.pool())
        .await
        .map_err(|e| convert(&format!("renewing upload {} in {}", self.id, self.up), e))?;
        if done.rows_affected() == 0 {
            return Err(self.lost("renewing the lease"));
        }
        self.renewed_at = clock.monotonic();
        Ok(())
    }

    /// Reads the tail segments into `room` (exactly the tail's length).
    async fn read_tail(&self, room: &mut [u8]) -> Result<()> {
        let mut at = 0;
        for seg in &self.tail {
            let key = self.staging.join(&seg.name)?;
            let bytes = self.up.store.get_bytes(&key).await?;
            let end = at + bytes.len();
            if bytes.len() as u64 != seg.size || end > room.len() {
                return Err(Error::backend(
                    format!(
                        "reading tail segment {key} of upload {} in {}",
                        self.id, self.up
                    ),
                    format!("it has {} bytes, {} were recorded", bytes.len(), seg.size),
                ));
            }
            room[at..end].copy_from_slice(&bytes);
            at = end;
        }
        Ok(())
    }

    /// The multipart upload (started and recorded on first use) and a fresh
    /// part number reserved in the row.
    async fn next_part(&mut self) -> Result<(MultipartId, u32)> {
        let up = self.up;
        let mp = match &self.multipart {
            Some(mp) => mp.clone(),
            None => {
                let mp = up.store.create_multipart(&self.key).await?;
                let done = sqlx::query(
                    "UPDATE vs_uploads SET multipart_id = $3 \
                     WHERE id = $1 AND lease_token = $2 AND state = 'open' AND multipart_id IS NULL",
                )
                .bind(self.id.as_str())
                .bind(self.token.as_str())
                .bind(mp.0.as_str())
                .execute(up.db.pool())
                .await
                .map_err(|e| convert(&format!("recording the multipart upload of {} in {up}", self.id), e));
                match done {
                    Ok(d) if d.rows_affected() == 1 => {}
                    other => {
                        let _ = up.store.abort_multipart(&self.key, &mp).await;
                        return Err(match other {
                            Err(e) => e,
                            Ok(_) => self.lost("starting the multipart upload"),
                        });
                    }
                }
                self.multipart = Some(mp.clone());
                mp
            }
        };
        let row = sqlx::query(
            "UPDATE vs_uploads SET next_part = next_part + 1 \
             WHERE id = $1 AND lease_token = $2 AND state = 'open' RETURNING next_part",
        )
        .bind(self.id.as_str())
        .bind(self.token.as_str())
        .fetch_optional(up.db.pool())
        .await
        .map_err(|e| {
            convert(
                &format!("reserving a part number of upload {} in {up}", self.id),
                e,
            )
        })?;
        let next: i64 = match row {
            Some(r) => col(&r, "next_part")?,
            None => return Err(self.lost("reserving a part number")),
        };
        match u32::try_from(next - 1) {
            Ok(n) if (1..=MAX_PART_NUMBER).contains(&n) => Ok((mp, n)),
            _ => Err(Error::invalid_input(format!(
                "upload {} in {up} has used all {MAX_PART_NUMBER} part numbers; it cannot grow further",
                self.id
            ))),
        }
    }

    /// Stores the full buffer (tail + new bytes) as the next part.
    async fn store_part(&mut self) -> Result<()> {
        let mut part = std::mem::take(&mut self.buf);
        if self.tail_len > 0 {
            self.read_tail(&mut part[..self.tail_len]).await?;
        }
        let (mp, number) = self.next_part().await?;
        let size = part.len() as u64;
        let new_bytes = size - self.tail_len as u64;
        let PartId { etag, .. } = self
            .up
            .store
            .put_part(&self.key, &mp, number, part.freeze())
            .await?;
        self.recount();
        self.parts.push(StoredPart { number, etag, size });
        let old_tail = std::mem::take(&mut self.tail);
        self.tail_len = 0;
        self.offset += new_bytes;
        self.commit().await?;
        self.delete_segments(&old_tail).await;
        Ok(())
    }

    /// Stores the bytes received since the last stored step as a tail
    /// segment (merging the segments when there are too many).
    async fn store_tail(&mut self) -> Result<()> {
        let pending = self.pending();
        if pending == 0 {
            return Ok(());
        }
        let merge = self.tail.len() + 1 > MAX_TAIL_SEGMENTS;
        let mut buf = std::mem::take(&mut self.buf);
        if merge {
            self.read_tail(&mut buf[..self.tail_len]).await?;
        }
        let buf = buf.freeze();
        let body = if merge {
            buf
        } else {
            buf.slice(self.tail_len..)
        };
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let seg_key = self.staging.join(&name)?;
        let size = body.len() as u64;
        self.up.store.put(&seg_key, PutPayload::Bytes(body)).await?;
        self.recount();
        let old_tail = if merge {
            std::mem::take(&mut self.tail)
        } else {
            Vec::new()
        };
        self.tail.push(Segment { name, size });
        self.tail_len =
            usize::try_from(self.tail.iter().map(|s| s.size).sum::<u64>()).unwrap_or(usize::MAX);
        self.offset += pending as u64;
        if let Err(e) = self.commit().await {
            let _ = self.up.store.delete(&seg_key).await;
            return Err(e);
        }
        self.delete_segments(&old_tail).await;
        Ok(())
    }

    /// Records the stored offset, parts and tail, renewing lease and expiry.
    async fn commit(&mut self) -> Result<()> {
        let up = self.up;
        let now = up.clock.now();
        let done = sqlx::query(
            "UPDATE vs_uploads SET upload_offset = $3, parts = $4, tail = $5, lease_until = $6, \
             expires_at = $7, updated_at = $8 \
             WHERE id = $1 AND lease_token = $2 AND state = 'open'",
        )
        .bind(self.id.as_str())
        .bind(self.token.as_str())
        .bind(to_i64(self.offset))
        .bind(to_json(&self.parts)?)
        .bind(to_json(&self.tail)?)
        .bind(now.saturating_add(up.opts.lease).as_millis())
        .bind(now.saturating_add(self.ttl).as_millis())
        .bind(now.as_millis())
        .execute(up.db.pool())
        .await
        .map_err(|e| {
            convert(
                &format!(
                    "recording offset {} of upload {} in {up}",
                    self.offset, self.id
                ),
                e,
            )
        })?;
        if done.rows_affected() == 0 {
            return Err(self.lost(&format!("recording offset {}", self.offset)));
        }
        self.renewed_at = up.clock.monotonic();
        Ok(())
    }

    /// Deletes segments no longer listed; a failure only leaves garbage
    /// that the upload's end removes with its staging prefix.
    async fn delete_segments(&self, segments: &[Segment]) {
        for seg in segments {
            if let Ok(key) = self.staging.join(&seg.name) {
                if let Err(e) = self.up.store.delete(&key).await {
                    tracing::debug!(upload = %self.id, error = %e, "deleting a merged tail segment failed; it goes with the upload");
                }
            }
        }
    }

    /// Assembles the object: the tail becomes the last part, or, with no
    /// parts, the tail segments are written as the object.
    async fn assemble(&mut self, total: u64) -> Result<ObjectMeta> {
        let up = self.up;
        if self.multipart.is_none() {
            let store = up.store.clone();
            let keys = self
                .tail
                .iter()
                .map(|s| Ok((self.staging.join(&s.name)?, s.size)))
                .collect::<Result<Vec<_>>>()?;
            let body: ByteStream = futures::stream::iter(keys)
                .then(move |(key, size)| {
                    let store = store.clone();
                    async move {
                        let bytes = store.get_bytes(&key).await?;
                        if bytes.len() as u64 != size {
                            return Err(Error::backend(
                                format!("reading tail segment {key}"),
                                format!("it has {} bytes, {size} were recorded", bytes.len()),
                            ));
                        }
                        Ok(bytes)
                    }
                })
                .boxed();
            return up.store.put(&self.key, PutPayload::Stream(body)).await;
        }
        if self.tail_len > 0 {
            self.buf = BytesMut::zeroed(self.tail_len);
            self.recount();
            let mut part = std::mem::take(&mut self.buf);
            self.read_tail(&mut part).await?;
            let (mp, number) = self.next_part().await?;
            let size = part.len() as u64;
            let PartId { etag, .. } = up
                .store
                .put_part(&self.key, &mp, number, part.freeze())
                .await?;
            self.recount();
            self.parts.push(StoredPart { number, etag, size });
            let old_tail = std::mem::take(&mut self.tail);
            self.tail_len = 0;
            self.commit().await?;
            self.delete_segments(&old_tail).await;
        }
        let mp = self.multipart.clone().ok_or_else(|| {
            Error::backend(
                format!("finishing upload {} in {up}", self.id),
                "no multipart upload",
            )
        })?;
        let ids = self
            .parts
            .iter()
            .map(|p| PartId {
                number: p.number,
                etag: p.etag.clone(),
            })
            .collect();
        match up.store.complete_multipart(&self.key, &mp, ids).await {
            Ok(meta) => Ok(meta),
            // A finish that crashed after completing: the object is there.
            Err(Error::NotFound { message }) => match up.store.head(&self.key).await {
                Ok(meta) if meta.size == total => Ok(meta),
                _ => Err(Error::not_found(message)),
            },
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl UploadSessions for StoreUploads {
    async fn create(&self, new: NewUpload) -> crate::Result<UploadInfo> {
        new.validate()?;
        if let Some(total) = new.total {
            self.check_size(&format!("upload to {}", new.key), total)?;
        }
        let id = UploadId::new();
        let now = self.clock.now();
        let ttl = new.ttl.unwrap_or(self.opts.default_ttl);
        let sql = format!(
            "INSERT INTO vs_uploads (id, object_key, total, upload_offset, metadata, state, \
             part_size, parts, next_part, tail, ttl_ms, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, 'open', $5, '[]', 1, '[]', $6, $7, $8, $8) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(new.key.as_str())
            .bind(new.total.map(to_i64))
            .bind(to_json(&new.metadata)?)
            .bind(to_i64(self.part_size_for(new.total)))
            .bind(crate::clock::duration_millis(ttl))
            .bind(now.saturating_add(ttl).as_millis())
            .bind(now.as_millis())
            .fetch_one(self.db.pool())
            .await
            .map_err(|e| convert(&format!("creating an upload to {} in {self}", new.key), e))?;
        Ok(self.row(&row)?.info)
    }

    async fn append(&self, id: &UploadId, at: u64, mut body: ByteStream) -> crate::Result<u64> {
        let (row, mut guard) = self.acquire(id, Op::Append { at }).await?;
        let mut writer = Writer::new(self, row, &guard.token)?;
        let outcome: Result<()> = async {
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => writer.push(chunk).await?,
                    Ok(None) => return writer.store_tail().await,
                    Err(e) => {
                        // Keep what arrived before the failure, as tus
                        // servers do; the client resumes from the offset.
                        if let Err(store_err) = writer.store_tail().await {
                            tracing::warn!(upload = %id, error = %store_err, "storing the bytes received before a failed body failed; the upload stays at its last offset");
                        }
                        return Err(e);
                    }
                }
            }
        }
        .await;
        let offset = writer.offset;
        drop(writer);
        let released = self.release(&mut guard).await;
        outcome?;
        released?;
        Ok(offset)
    }

    async fn declare_length(&self, id: &UploadId, total: u64) -> crate::Result<UploadInfo> {
        let what = format!("declaring length {total} of upload {id}");
        self.check_size(&what, total)?;
        let now = self.clock.now();
        let sql = format!(
            "UPDATE vs_uploads SET total = $2, part_size = $3, updated_at = $4 \
             WHERE id = $1 AND state = 'open' AND total IS NULL AND upload_offset <= $2 \
             AND expires_at > $4 AND (lease_token IS NULL OR lease_until <= $4) \
             RETURNING {COLUMNS}"
        );
        let current = self.fetch_existing(id, &what).await?;
        let part_size = current.part_size.max(self.part_size_for(Some(total)));
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(to_i64(total))
            .bind(to_i64(part_size))
            .bind(now.as_millis())
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| convert(&format!("{what} in {self}"), e))?;
        if let Some(row) = row {
            return Ok(self.row(&row)?.info);
        }
        let row = self.fetch_existing(id, &what).await?;
        let info = row.info;
        match info.state {
            UploadState::Aborted => {
                return Err(Error::not_found(format!(
                    "{what} in {self}: the upload was aborted"
                )))
            }
            UploadState::Finished if info.total == Some(total) => return Ok(info),
            UploadState::Finished => {
                return Err(Error::conflict(format!(
                    "{what} in {self}: the upload is finished"
                )))
            }
            UploadState::Open => {}
        }
        if info.expires_at <= now {
            return Err(Error::not_found(format!(
                "{what} in {self}: the upload expired at {}",
                info.expires_at
            )));
        }
        match info.total {
            Some(t) if t == total => Ok(info),
            Some(t) => Err(Error::conflict(format!(
                "{what} in {self}: its length is {t} already"
            ))),
            None if info.offset > total => Err(Error::invalid_input(format!(
                "{what} in {self}: {} bytes are stored already",
                info.offset
            ))),
            None => Err(Error::conflict(format!(
                "{what} in {self}: an append is running; declare the length before or after it"
            ))),
        }
    }

    async fn get(&self, id: &UploadId) -> crate::Result<UploadInfo> {
        Ok(self
            .fetch_existing(id, &format!("reading upload {id}"))
            .await?
            .info)
    }

    async fn finish(&self, id: &UploadId) -> crate::Result<ObjectMeta> {
        let what = format!("finishing upload {id}");
        let row = self.fetch_existing(id, &what).await?;
        if row.info.state == UploadState::Finished {
            return self.finished_meta(&row);
        }
        let (row, mut guard) = match self.acquire(id, Op::Finish).await {
            Ok(held) => held,
            Err(e) => {
                // Another instance may have finished it meanwhile.
                return match self.fetch(id).await? {
                    Some(row) if row.info.state == UploadState::Finished => {
                        self.finished_meta(&row)
                    }
                    _ => Err(e),
                };
            }
        };
        let total = row.info.offset;
        let mut writer = Writer::new(self, row, &guard.token)?;
        let meta = writer.assemble(total).await?;
        let token = writer.token.clone();
        drop(writer);
        let stored = StoredMeta {
            size: meta.size,
            etag: meta.etag.clone(),
            last_modified: meta.last_modified.as_millis(),
        };
        let done = sqlx::query(
            "UPDATE vs_uploads SET state = 'finished', result = $3, tail = '[]', \
             lease_token = NULL, lease_until = NULL, updated_at = $4 \
             WHERE id = $1 AND lease_token = $2 AND state = 'open'",
        )
        .bind(id.as_str())
        .bind(token.as_str())
        .bind(to_json(&stored)?)
        .bind(self.clock.now().as_millis())
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("{what} in {self}"), e))?;
        guard.armed = false;
        if done.rows_affected() == 0 {
            return Err(Error::precondition(format!(
                "{what} in {self}: the object is written, but another writer took the upload over"
            )));
        }
        if let Err(e) = self.store.delete_prefix(&self.staging_of(id)?).await {
            tracing::warn!(upload = %id, error = %e, "removing a finished upload's staging objects failed; expiry retries");
        }
        Ok(meta)
    }

    async fn abort(&self, id: &UploadId) -> crate::Result<()> {
        let what = format!("aborting upload {id}");
        // The state changes first: a writer still running can then record
        // nothing more, and a crash before the bytes are gone leaves an
        // aborted row whose bytes the next abort or expiry removes.
        sqlx::query(
            "UPDATE vs_uploads SET state = 'aborted', lease_token = NULL, lease_until = NULL, \
             updated_at = $2 WHERE id = $1 AND state = 'open'",
        )
        .bind(id.as_str())
        .bind(self.clock.now().as_millis())
        .execute(self.db.pool())
        .await
        .map_err(|e| convert(&format!("{what} in {self}"), e))?;
        let row = self.fetch_existing(id, &what).await?;
        if row.info.state == UploadState::Finished {
            return Err(Error::conflict(format!(
                "{what} in {self}: the upload is finished"
            )));
        }
        self.remove_bytes(id, &row.info.key, row.multipart.as_ref())
            .await
    }

    async fn expire(&self, now: Timestamp) -> crate::Result<u64> {
        let mut aborted = 0;
        loop {
            // Open uploads a live writer holds are left alone: its next
            // stored step moves the expiry anyway.
            let sql = format!(
                "SELECT {COLUMNS} FROM vs_uploads WHERE expires_at <= $1 \
                 AND (state <> 'open' OR lease_token IS NULL OR lease_until <= $1) \
                 ORDER BY expires_at LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(now.as_millis())
                .bind(EXPIRE_BATCH)
                .fetch_all(self.db.pool())
                .await
                .map_err(|e| convert(&format!("listing expired uploads in {self}"), e))?;
            let batch = rows.len();
            let mut progress = false;
            for r in rows {
                let row = self.row(&r)?;
                let id = &row.info.id;
                if row.info.state == UploadState::Open {
                    let done = sqlx::query(
                        "UPDATE vs_uploads SET state = 'aborted', lease_token = NULL, lease_until = NULL \
                         WHERE id = $1 AND state = 'open' AND expires_at <= $2 \
                         AND (lease_token IS NULL OR lease_until <= $2)",
                    )
                    .bind(id.as_str())
                    .bind(now.as_millis())
                    .execute(self.db.pool())
                    .await
                    .map_err(|e| convert(&format!("expiring upload {id} in {self}"), e))?;
                    if done.rows_affected() == 0 {
                        continue;
                    }
                    aborted += 1;
                }
                if row.info.state != UploadState::Finished {
                    self.remove_bytes(id, &row.info.key, row.multipart.as_ref())
                        .await?;
                } else {
                    // Segments a crashed finish left behind.
                    self.store.delete_prefix(&self.staging_of(id)?).await?;
                }
                sqlx::query("DELETE FROM vs_uploads WHERE id = $1 AND state <> 'open'")
                    .bind(id.as_str())
                    .execute(self.db.pool())
                    .await
                    .map_err(|e| convert(&format!("forgetting upload {id} in {self}"), e))?;
                progress = true;
            }
            // A short batch is the last; a batch where every upload was
            // taken by a writer meanwhile would come back unchanged.
            if batch < EXPIRE_BATCH as usize || !progress {
                return Ok(aborted);
            }
        }
    }
}
