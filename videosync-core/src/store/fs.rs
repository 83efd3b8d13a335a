//! [`FsStore`]: objects as files under a root directory (the default backend).
//!
//! Layout under the root ([`FsStore::open`]):
//!
//! ```text
//! objects/<key>                  one file per object
//! attrs/<key>                    its content type and cache control, when it has any
//! staging/tmp-<uuid>             a write in progress (renamed into objects/ when complete)
//! staging/mp-<id>/key            the key of a multipart upload
//! staging/mp-<id>/part-<n>       its parts
//! ```
//!
//! [`FsStore::open_dirs`] puts objects straight into a directory of the
//! caller's and keeps `attrs/` under the staging directory.
//!
//! # Durability and atomicity
//!
//! Every write goes to `staging/` first, is flushed to disk (`fsync`) and is
//! then renamed into place; the directory that received it is flushed too,
//! and so is every directory the write had to create (up to the first one
//! that existed), so a write that returned survives a crash. A reader sees
//! the old object or the new one. A write whose future is dropped removes
//! its temporary file at once (a drop guard); a crash leaves at worst a
//! stale `tmp-*`, which [`FsStore::open`] (after a day) and
//! [`FsStore::sweep`] remove, together with abandoned multipart uploads.
//!
//! The final step of a write (check the [`PutMode`], rename) runs under a
//! lock per store directory shared by every `FsStore` of the process, so
//! create-only and compare-and-swap writes are atomic within a process. It
//! lasts a rename; the data is written before. Two *processes* writing
//! conditionally to one directory are not serialised (a file lock would
//! need Rust 1.89, above this crate's MSRV): each write stays atomic, but
//! two racing creates of one key can both succeed there.
//!
//! A multipart upload's parts are files of their own; completing it joins
//! them into one new file in a single blocking task with `std::io::copy`,
//! which between two files is `copy_file_range` on Linux (the bytes move
//! inside the kernel, or are shared outright where the file system clones
//! extents), then flushes and renames it as any write.
//!
//! # Etags
//!
//! An object's etag is made of its inode number, modification time and
//! size. The sub-millisecond digits of the modification time are set at
//! random when the file is written, so two writes of the same length in the
//! same clock tick (which could reuse an inode) still differ.
//!
//! # Attributes
//!
//! A content type and cache control are kept in a small JSON file under
//! `attrs/` that records the etag of the object it belongs to; it is renamed
//! into place just before the object. A reader uses it only when that etag
//! is the object's own, so attributes never attach to another version. For
//! the instant between the two renames a reader of the *old* version sees
//! no attributes (`None`) rather than the new version's.
//!
//! Keys are validated [`ObjectKey`]s, so a key never names a path outside
//! `objects/`.

use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::{
    check_completion, check_part_number, etag_matches, payload_stream, same_etag, ByteStream,
    GetOptions, GetResult, MultipartId, ObjectKey, ObjectMeta, ObjectStore, PartId, PutMode,
    PutOptions, PutPayload, StoredPart,
};
use crate::{Clock, Error, Result, SystemClock, Timestamp};

/// Temporary files older than this are swept away when a store is opened:
/// they belong to writers that crashed.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// Read buffer for streamed gets, and write buffer of puts (tokio's file
/// reads and writes go up to 2 MiB a trip).
const READ_CHUNK: usize = 1024 * 1024;

/// Ranges up to this size are read in one blocking trip and returned as one
/// chunk; larger ones stream in [`READ_CHUNK`]s.
const SMALL_READ: u64 = 1024 * 1024;

/// How many listing entries one blocking trip of [`FsStore::list_stream`]
/// produces.
const LIST_BATCH: usize = 256;

/// What a get's blocking trip found.
enum Opened {
    /// A small range, read whole.
    Read(ObjectMeta, std::ops::Range<u64>, Bytes),
    /// A large range, left to stream from the open file.
    Open(ObjectMeta, std::ops::Range<u64>, std::fs::File),
}

/// Creates `dir` if needed and returns its canonical path.
async fn create_resolved(dir: &Path) -> Result<PathBuf> {
    let owned = dir.to_path_buf();
    blocking(
        format!("creating store directory {}", dir.display()),
        move || create_parent_dirs(&owned),
    )
    .await?;
    tokio::fs::canonicalize(dir)
        .await
        .map_err(|e| Error::from_io(format!("resolving {}", dir.display()), e))
}

/// Runs blocking file work off the runtime; a panic in it becomes a backend
/// error about `what`.
async fn blocking<T, F>(what: String, f: F) -> Result<T>
where
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(what.clone(), e))?
        .map_err(|e| Error::from_io(what, e))
}

/// Makes a written file durable and stamps it: random sub-millisecond
/// digits in its modification time make the etag unique per write (see the
/// module docs); the millisecond stays the real one.
fn seal(file: &std::fs::File) -> std::io::Result<FileStamp> {
    let modified = file.metadata()?.modified()?;
    let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = rand::random::<u32>() % 1_000_000;
    let stamped = UNIX_EPOCH
        + Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        + Duration::from_nanos(u64::from(nanos));
    file.set_modified(stamped)?;
    file.sync_all()?;
    Ok(FileStamp::of(&file.metadata()?))
}

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    objects: PathBuf,
    staging: PathBuf,
    attrs: PathBuf,
    clock: Arc<dyn Clock>,
}

impl fmt::Display for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fs({})", self.root.display())
    }
}

/// What [`FsStore::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Temporary files (and directories) of writes that never finished.
    pub temps: usize,
    /// Multipart uploads nobody touched for the given age.
    pub uploads: usize,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`, and sweeps away
    /// temporary files that crashed writers left behind (older than a day).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty path; an I/O error when the
    /// directories cannot be created.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        if root.as_os_str().is_empty() {
            return Err(Error::invalid_input("filesystem store root is empty"));
        }
        let objects = create_resolved(&root.join("objects")).await?;
        let staging = create_resolved(&root.join("staging")).await?;
        let root = create_resolved(root).await?;
        let attrs = root.join("attrs");
        Self::with_dirs(root, objects, staging, attrs).await
    }

    /// Opens (creating if needed) a store whose objects are files directly
    /// under `objects` (`<objects>/<key>`), staging writes in `staging`,
    /// which must be on the same filesystem (writes are renamed across) and
    /// must not lie inside `objects` (its temporary files would list as
    /// objects), nor `objects` inside it. This is how a command writes plain
    /// output directories.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty path or nested directories;
    /// otherwise as [`FsStore::open`].
    pub async fn open_dirs(objects: impl AsRef<Path>, staging: impl AsRef<Path>) -> Result<Self> {
        let (objects, staging) = (objects.as_ref(), staging.as_ref());
        if objects.as_os_str().is_empty() || staging.as_os_str().is_empty() {
            return Err(Error::invalid_input("filesystem store directory is empty"));
        }
        let objects = create_resolved(objects).await?;
        let staging = create_resolved(staging).await?;
        if staging.starts_with(&objects) || objects.starts_with(&staging) {
            return Err(Error::invalid_input(format!(
                "filesystem store: the staging directory {} and the objects directory {} must not \
                 lie inside one another (put staging beside the objects, on the same filesystem)",
                staging.display(),
                objects.display()
            )));
        }
        let attrs = staging.join("attrs");
        Self::with_dirs(objects.clone(), objects, staging, attrs).await
    }

    async fn with_dirs(
        root: PathBuf,
        objects: PathBuf,
        staging: PathBuf,
        attrs: PathBuf,
    ) -> Result<Self> {
        let store = FsStore {
            root,
            objects,
            staging,
            attrs,
            clock: Arc::new(SystemClock::new()),
        };
        // Only temporary files: a multipart upload may legitimately stay
        // open for days; `sweep` with an age of the caller's takes those.
        store.sweep_with(STALE_TEMP_AGE, false).await?;
        Ok(store)
    }

    /// This store, reading time from `clock` (for [`FsStore::sweep`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The root directory (the objects' directory for [`FsStore::open_dirs`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The staging directory (temporary files and multipart uploads).
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The file that holds `key`.
    ///
    /// The key's segments are plain names (no `.`, `..`, `/` or NUL, see
    /// [`ObjectKey`]), so the path stays under `objects/`.
    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.objects.clone();
        path.extend(key.segments());
        path
    }

    fn attrs_of(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.attrs.clone();
        path.extend(key.segments());
        path
    }

    /// Removes temporary files (and directories) of writes that did not
    /// finish, and multipart uploads whose newest part is older than
    /// `older_than` on this store's clock. Live writes and uploads younger
    /// than that are left alone, so `older_than` must exceed the longest
    /// write and the longest pause of an upload (an hour and a week, say, on
    /// one age: pick the longer).
    ///
    /// # Errors
    /// An I/O error reading the staging directory; files that cannot be
    /// removed are skipped (and logged).
    pub async fn sweep(&self, older_than: Duration) -> Result<Swept> {
        self.sweep_with(older_than, true).await
    }

    /// Runs [`FsStore::sweep`] every `every` in a background task until the
    /// handle is aborted (or the runtime shuts down); failures are logged.
    /// The period is real time (`tokio::time`), the age is the store's
    /// clock's.
    pub fn spawn_sweeper(
        &self,
        every: Duration,
        older_than: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.sweep(older_than).await {
                    Ok(swept) if swept != Swept::default() => {
                        tracing::info!(store = %store, temps = swept.temps, uploads = swept.uploads, "swept stale staging files");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(store = %store, error = %e, "sweeping stale staging files failed")
                    }
                }
            }
        })
    }

    async fn sweep_with(&self, older_than: Duration, uploads: bool) -> Result<Swept> {
        let staging = self.staging.clone();
        let cutoff = self.clock.now().saturating_sub(older_than);
        let what = format!("sweeping stale staging files of {self}");
        let shown = self.to_string();
        blocking(what, move || {
            let mut swept = Swept::default();
            for entry in std::fs::read_dir(&staging)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_temp = name.starts_with("tmp-");
                let is_upload = uploads && name.starts_with("mp-");
                if !(is_temp || is_upload) {
                    continue;
                }
                let path = entry.path();
                if newest_mtime(&path).is_none_or(|t| t >= cutoff) {
                    continue;
                }
                let removed = if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Ok(()) if is_temp => swept.temps += 1,
                    Ok(()) => swept.uploads += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(store = %shown, path = %path.display(), error = %e, "cannot remove a stale staging file");
                    }
                }
            }
            if swept != Swept::default() {
                sync_dir(&staging)?;
            }
            Ok(swept)
        })
        .await
    }

    fn upload_dir(&self, key: &ObjectKey, upload: &MultipartId) -> Result<PathBuf> {
        // The id comes back from callers (a tus URL, say): it must be exactly
        // what `create_multipart` made, or it could name another directory.
        let valid = upload.0.len() == 32 && upload.0.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(Error::invalid_input(format!(
                "multipart upload id `{}` for {key} in {self} is malformed",
                upload.0.escape_debug()
            )));
        }
        Ok(self.staging.join(format!("mp-{}", upload.0)))
    }

    /// The upload's directory, if the upload exists and is one to `key`.
    async fn check_upload(&self, key: &ObjectKey, upload: &MultipartId) -> Result<PathBuf> {
        let dir = self.upload_dir(key, upload)?;
        match tokio::fs::read_to_string(dir.join("key")).await {
            Ok(k) if k == key.as_str() => Ok(dir),
            Ok(_) => Err(Error::not_found(format!(
                "multipart upload {upload} in {self} is not an upload to {key}"
            ))),
            Err(e) if is_missing(&e) => Err(Error::not_found(format!(
                "multipart upload {upload} to {key} in {self}: no such upload"
            ))),
            Err(e) => Err(Error::from_io(
                format!("reading multipart upload {upload} in {self}"),
                e,
            )),
        }
    }

    /// Writes `body` to a fresh temporary file, flushed to disk, and returns
    /// it (removed again when the guard drops uncommitted: on failure, and
    /// when this future is dropped mid-stream).
    async fn write_temp(&self, what: &str, mut body: ByteStream) -> Result<(TempFile, FileStamp)> {
        let guard = self.new_temp();
        let file = tokio::fs::File::create(guard.path()).await.map_err(|e| {
            Error::from_io(format!("{what}: creating {}", guard.path().display()), e)
        })?;
        // Each write of a tokio file is a trip to the blocking pool: gather
        // the body's chunks (often 16 KiB off a socket) into large writes.
        let mut file = tokio::io::BufWriter::with_capacity(READ_CHUNK, file);
        while let Some(chunk) = body.try_next().await? {
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::from_io(format!("{what}: writing"), e))?;
        }
        file.flush()
            .await
            .map_err(|e| Error::from_io(format!("{what}: writing"), e))?;
        let file = file.into_inner().into_std().await;
        let stamp = blocking(format!("{what}: flushing"), move || seal(&file)).await?;
        Ok((guard, stamp))
    }

    /// Writes `data` into a new temporary file in one blocking task (one
    /// write, no copy into a runtime buffer).
    async fn write_temp_bytes(&self, what: &str, data: Bytes) -> Result<(TempFile, FileStamp)> {
        self.write_temp_with(format!("{what}: writing"), move |out| out.write_all(&data))
            .await
    }

    /// Writes `parts` one after the other into a new temporary file, in
    /// one blocking task: `std::io::copy` between files is
    /// `copy_file_range`, so the bytes move inside the kernel (or are shared
    /// outright on a file system that clones extents).
    async fn join_temp(
        &self,
        what: &str,
        parts: Vec<std::fs::File>,
    ) -> Result<(TempFile, FileStamp)> {
        self.write_temp_with(format!("{what}: joining the parts"), move |out| {
            for mut part in parts {
                std::io::copy(&mut part, out)?;
            }
            Ok(())
        })
        .await
    }

    /// A new temporary file filled by `fill`, then made durable, all in one
    /// blocking task. The guard goes with the task: a dropped write still
    /// removes its file once the task ends.
    async fn write_temp_with<F>(&self, what: String, fill: F) -> Result<(TempFile, FileStamp)>
    where
        F: FnOnce(&mut std::fs::File) -> std::io::Result<()> + Send + 'static,
    {
        let guard = self.new_temp();
        blocking(what, move || {
            let mut out = std::fs::File::create_new(guard.path())?;
            fill(&mut out)?;
            let stamp = seal(&out)?;
            Ok((guard, stamp))
        })
        .await
    }

    /// A fresh temporary path under the staging directory, removed when
    /// dropped unless renamed away.
    fn new_temp(&self) -> TempFile {
        TempFile::new(
            self.staging
                .join(format!("tmp-{}", Uuid::new_v4().simple())),
        )
    }

    /// Renames a finished temporary file into place as `key`, if `mode`
    /// allows, with its attributes (see the module docs).
    async fn commit(
        &self,
        what: &str,
        tmp: TempFile,
        stamp: FileStamp,
        key: &ObjectKey,
        mode: PutMode,
        attrs: Attrs,
    ) -> Result<ObjectMeta> {
        let job = Commit {
            what: what.to_owned(),
            store: self.to_string(),
            key: key.clone(),
            target: self.path_of(key),
            attrs_path: self.attrs_of(key),
            objects: self.objects.clone(),
            staging: self.staging.clone(),
            mode,
            attrs: attrs.clone(),
            etag: stamp.etag(),
        };
        // The temporary file moves into the blocking task: if this future is
        // dropped, the task still finishes and its guard cleans up.
        tokio::task::spawn_blocking(move || job.run(tmp))
            .await
            .map_err(|e| Error::backend(what.to_owned(), e))??;
        Ok(ObjectMeta {
            content_type: attrs.content_type,
            cache_control: attrs.cache_control,
            ..stamp.meta(key.clone())
        })
    }
}

/// A temporary file (or directory) in staging, removed on drop unless it
/// was committed (renamed away).
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        TempFile { path: Some(path) }
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// The file was renamed away: nothing to remove.
    fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // One unlink (or a small directory): cheap enough to do in place,
        // and doing it now is what lets a cancelled put leave nothing.
        if let Some(path) = self.path.take() {
            if std::fs::remove_file(&path).is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// Identity of a written file: what its etag and metadata are made of.
#[derive(Debug, Clone, Copy)]
struct FileStamp {
    ino: u64,
    modified: Duration,
    len: u64,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(m);
        #[cfg(not(unix))]
        let ino = 0;
        FileStamp {
            ino,
            modified: m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .unwrap_or_default(),
            len: m.len(),
        }
    }

    fn etag(&self) -> String {
        format!(
            "\"{:x}-{:x}-{:x}\"",
            self.ino,
            self.modified.as_nanos(),
            self.len
        )
    }

    fn meta(&self, key: ObjectKey) -> ObjectMeta {
        ObjectMeta::new(
            key,
            self.len,
            Timestamp::from_millis(crate::clock::duration_millis(self.modified)),
            Some(self.etag()),
        )
    }
}

/// An object's content type and cache control, as kept in `attrs/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Attrs {
    content_type: Option<String>,
    cache_control: Option<String>,
}

impl Attrs {
    fn is_empty(&self) -> bool {
        self.content_type.is_none() && self.cache_control.is_none()
    }
}

/// The attributes file: the attributes and the etag of the object version
/// they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct AttrsFile {
    etag: String,
    #[serde(flatten)]
    attrs: Attrs,
}

/// Reads the attributes of the object version with `etag`; none when the
/// file is missing, unreadable or belongs to another version.
fn read_attrs(path: &Path, etag: &str) -> Attrs {
    std::fs::read(path)
        .ok()
        .and_then(|raw| serde_json::from_slice::<AttrsFile>(&raw).ok())
        .filter(|f| f.etag == etag)
        .map(|f| f.attrs)
        .unwrap_or_default()
}

/// The blocking final step of a write.
struct Commit {
    what: String,
    store: String,
    key: ObjectKey,
    target: PathBuf,
    attrs_path: PathBuf,
    objects: PathBuf,
    staging: PathBuf,
    mode: PutMode,
    attrs: Attrs,
    etag: String,
}

impl Commit {
    fn run(self, mut tmp: TempFile) -> Result<()> {
        let (what, key, store) = (&self.what, &self.key, &self.store);
        let io = |e: std::io::Error| Error::from_io(what.clone(), e);
        let conflict = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => {
                Error::conflict(format!(
                    "{what}: a prefix of {key} is an object in {store}, so {key} cannot be stored"
                ))
            }
            _ => Error::from_io(format!("{what}: storing {key} in {store}"), e),
        };
        let parent = self.target.parent().unwrap_or(&self.objects).to_path_buf();
        let lock = commit_lock(&self.staging);
        // A concurrent delete may remove an empty parent between creating it
        // and the rename; a few tries settle it.
        let mut attempt = 0;
        let held = loop {
            attempt += 1;
            create_parent_dirs(&parent).map_err(conflict)?;
            let held = lock.lock().unwrap_or_else(|p| p.into_inner());
            match std::fs::symlink_metadata(&self.target) {
                Ok(m) if m.is_dir() => {
                    return Err(Error::conflict(format!(
                        "{what}: {key} in {store} is a prefix of other objects and cannot also be an object"
                    )))
                }
                Ok(m) => match &self.mode {
                    PutMode::Overwrite => {}
                    PutMode::Create => {
                        return Err(Error::already_exists(format!(
                            "{what}: create of {key} in {store}: the object exists"
                        )))
                    }
                    PutMode::IfMatch(want) => {
                        let etag = FileStamp::of(&m).etag();
                        if !same_etag(want, &etag) {
                            return Err(Error::precondition(format!(
                                "{what}: {key} in {store} has etag {etag}, not {want}"
                            )));
                        }
                    }
                },
                Err(e) if is_missing(&e) => {
                    if let PutMode::IfMatch(want) = &self.mode {
                        return Err(Error::precondition(format!(
                            "{what}: no object {key} in {store} to match etag {want}"
                        )));
                    }
                }
                Err(e) => return Err(io(e)),
            }
            if !self.attrs.is_empty() {
                self.write_attrs()?;
            }
            match std::fs::rename(tmp.path(), &self.target) {
                Ok(()) => break held,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 3 => {
                    drop(held);
                    continue;
                }
                Err(e) => return Err(conflict(e)),
            }
        };
        tmp.disarm();
        if self.attrs.is_empty() {
            // Stale attributes would be ignored (their etag is another
            // version's), but they need not stay.
            let _ = std::fs::remove_file(&self.attrs_path);
        }
        drop(held);
        // The rename is durable only once the directory entry is on disk.
        sync_dir(&parent).map_err(io)
    }

    /// Writes the attributes file of the new version (under the lock, just
    /// before the object's rename).
    fn write_attrs(&self) -> Result<()> {
        let io =
            |e: std::io::Error| Error::from_io(format!("{}: storing attributes", self.what), e);
        let body = serde_json::to_vec(&AttrsFile {
            etag: self.etag.clone(),
            attrs: self.attrs.clone(),
        })
        .map_err(|e| Error::backend(self.what.clone(), e))?;
        let parent = self
            .attrs_path
            .parent()
            .unwrap_or(&self.staging)
            .to_path_buf();
        if let Err(e) = create_parent_dirs(&parent) {
            // A leftover attributes file of a deleted object `a` blocks
            // `attrs/a/` for `a/b`: the objects tree allowed `a/b`, so it is
            // stale.
            if e.kind() != std::io::ErrorKind::NotADirectory
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(io(e));
            }
            let mut dir = parent.as_path();
            while dir.starts_with(&self.staging) && dir != self.staging {
                if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_file()) {
                    std::fs::remove_file(dir).map_err(io)?;
                    break;
                }
                dir = dir.parent().unwrap_or(&self.staging);
            }
            create_parent_dirs(&parent).map_err(io)?;
        }
        if std::fs::symlink_metadata(&self.attrs_path).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&self.attrs_path).map_err(io)?;
        }
        let mut tmp = TempFile::new(
            self.staging
                .join(format!("tmp-{}", Uuid::new_v4().simple())),
        );
        {
            let mut f = std::fs::File::create(tmp.path()).map_err(io)?;
            std::io::Write::write_all(&mut f, &body).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(tmp.path(), &self.attrs_path).map_err(io)?;
        tmp.disarm();
        sync_dir(&parent).map_err(io)
    }
}

/// The lock that serialises the final step of writes (and deletes) to the
/// store whose staging directory is `staging`: one per directory per
/// process, shared by every `FsStore` opened on it.
fn commit_lock(staging: &Path) -> Arc<std::sync::Mutex<()>> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Mutex::default)
        .lock()
        // The map is only ever inserted into; a panic elsewhere cannot
        // leave it half-changed.
        .unwrap_or_else(|p| p.into_inner());
    locks.entry(staging.to_path_buf()).or_default().clone()
}

/// Creates `dir` and its missing ancestors, flushing each new directory's
/// entry in its parent (up to the first ancestor that existed), so that the
/// new path survives a crash. object_store's `create_parent_dirs` does the
/// same walk.
fn create_parent_dirs(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut first_existing = dir;
    while let Some(parent) = first_existing.parent() {
        first_existing = parent;
        if parent.as_os_str().is_empty() || parent.is_dir() {
            break;
        }
    }
    std::fs::create_dir_all(dir)?;
    let mut created = dir;
    while created != first_existing {
        let Some(parent) = created.parent() else {
            break;
        };
        sync_dir(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })?;
        created = parent;
    }
    Ok(())
}

/// Flushes a directory's entries to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The newest modification time of `path` and, for a directory, of the
/// files in it (an upload's newest part); `None` when it cannot be read.
fn newest_mtime(path: &Path) -> Option<Timestamp> {
    let stamp = |m: std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| Timestamp::from_millis(crate::clock::duration_millis(d)))
    };
    let m = std::fs::symlink_metadata(path).ok()?;
    let mut newest = stamp(m.clone())?;
    if m.is_dir() {
        for entry in std::fs::read_dir(path).ok()?.flatten() {
            if let Some(t) = entry.metadata().ok().and_then(stamp) {
                newest = newest.max(t);
            }
        }
    }
    Some(newest)
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// One directory of a listing in progress: its key prefix and its entries
/// still to visit, in key order.
struct Frame {
    rel: String,
    entries: std::vec::IntoIter<(String, bool)>,
}

/// A lazy, key-ordered walk of the objects directory.
///
/// Entries of a directory are sorted with a directory named `a` placed as
/// `a/`, so that the walk's order is the keys' byte order (`a-c` before
/// `a/b`). Subtrees wholly before the cursor are never read.
struct Walker {
    objects: PathBuf,
    stack: Vec<Frame>,
    start_after: Option<ObjectKey>,
    /// The prefix's directory, read at the first batch.
    root: Option<String>,
}

impl Walker {
    fn new(objects: PathBuf, prefix: Option<&ObjectKey>, start_after: Option<ObjectKey>) -> Self {
        Walker {
            objects,
            stack: Vec::new(),
            start_after,
            root: Some(prefix.map(|p| p.as_str().to_owned()).unwrap_or_default()),
        }
    }

    fn path_of(&self, rel: &str) -> PathBuf {
        let mut path = self.objects.clone();
        if !rel.is_empty() {
            path.extend(rel.split('/'));
        }
        path
    }

    /// Reads the directory `rel` in key order onto the stack; a missing
    /// directory (deleted meanwhile, or a file) has no entries.
    fn descend(&mut self, rel: String) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(self.path_of(&rel)) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            // A name that is not UTF-8 is no key this store wrote.
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let file_type = entry.file_type()?;
            if file_type.is_dir() || file_type.is_file() {
                names.push((name, file_type.is_dir()));
            }
        }
        let order = |(name, dir): &(String, bool)| {
            let mut k = name.as_bytes().to_vec();
            if *dir {
                k.push(b'/');
            }
            k
        };
        names.sort_by_key(order);
        self.stack.push(Frame {
            rel,
            entries: names.into_iter(),
        });
        Ok(())
    }

    /// Up to `max` more objects; empty at the end.
    fn next_batch(&mut self, max: usize) -> std::io::Result<Vec<ObjectMeta>> {
        if let Some(root) = self.root.take() {
            self.descend(root)?;
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(frame) = self.stack.last_mut() else {
                break;
            };
            let Some((name, is_dir)) = frame.entries.next() else {
                self.stack.pop();
                continue;
            };
            let rel = if frame.rel.is_empty() {
                name
            } else {
                format!("{}/{name}", frame.rel)
            };
            if is_dir {
                // Every key under `rel/` sorts before the cursor when `rel/`
                // does and the cursor is not itself under `rel/`.
                let under = format!("{rel}/");
                let skipped = self.start_after.as_ref().is_some_and(|a| {
                    under.as_str() < a.as_str() && !a.as_str().starts_with(&under)
                });
                if !skipped {
                    self.descend(rel)?;
                }
                continue;
            }
            // Files that are not valid keys were not written by this store;
            // they are not objects.
            let Ok(key) = ObjectKey::parse(&rel) else {
                continue;
            };
            if self.start_after.as_ref().is_some_and(|a| &key <= a) {
                continue;
            }
            match std::fs::metadata(self.path_of(&rel)) {
                Ok(m) if m.is_file() => out.push(FileStamp::of(&m).meta(key)),
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put_opts(
        &self,
        key: &ObjectKey,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        opts.check(key)?;
        let what = format!("put of {key} to {self}");
        let (tmp, stamp) = match payload {
            PutPayload::Bytes(data) => self.write_temp_bytes(&what, data).await?,
            stream => self.write_temp(&what, payload_stream(stream)).await?,
        };
        let attrs = Attrs {
            content_type: opts.content_type,
            cache_control: opts.cache_control,
        };
        self.commit(&what, tmp, stamp, key, opts.mode, attrs).await
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        let path = self.path_of(key);
        let attrs_path = self.attrs_of(key);
        let what = format!("get of {key} from {self}");
        // Every tokio file operation is a trip through the blocking pool, so
        // open, stat and (for a small range) the read itself happen in one
        // trip. The metadata is the open file's: a concurrent replace renames
        // a new file over the path, but this handle keeps reading the old one
        // whole.
        let key2 = key.clone();
        let what2 = what.clone();
        let opened = tokio::task::spawn_blocking(move || -> Result<Opened> {
            let what = what2;
            let missing = |e: std::io::Error| {
                if is_missing(&e) {
                    Error::not_found(format!("{what}: no such object"))
                } else {
                    Error::from_io(format!("{what}: opening"), e)
                }
            };
            let mut file = std::fs::File::open(&path).map_err(missing)?;
            let m = file.metadata().map_err(missing)?;
            if !m.is_file() {
                return Err(Error::not_found(format!(
                    "{what}: no such object (it is a prefix)"
                )));
            }
            let stamp = FileStamp::of(&m);
            let etag = stamp.etag();
            if let Some(wanted) = &opts.if_none_match {
                if etag_matches(wanted, Some(&etag)) {
                    return Err(Error::not_modified(format!(
                        "{what}: not modified (etag {etag})"
                    )));
                }
            }
            let attrs = read_attrs(&attrs_path, &etag);
            let meta = ObjectMeta {
                content_type: attrs.content_type,
                cache_control: attrs.cache_control,
                ..stamp.meta(key2.clone())
            };
            let range = match &opts.range {
                // The range error already names the key and the size.
                Some(r) => r.resolve(meta.size, &key2)?,
                None => 0..meta.size,
            };
            if range.start > 0 {
                file.seek(SeekFrom::Start(range.start))
                    .map_err(|e| Error::from_io(format!("{what}: seeking"), e))?;
            }
            let len = range.end - range.start;
            if len <= SMALL_READ {
                let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                (&mut file)
                    .take(len)
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::from_io(format!("{what}: reading"), e))?;
                Ok(Opened::Read(meta, range, Bytes::from(buf)))
            } else {
                Ok(Opened::Open(meta, range, file))
            }
        })
        .await
        .map_err(|e| Error::backend(what.clone(), e))??;
        match opened {
            Opened::Read(meta, range, data) => Ok(GetResult {
                meta,
                range,
                body: super::single_chunk(data),
            }),
            Opened::Open(meta, range, file) => {
                let file = tokio::fs::File::from_std(file);
                let read_what = format!("reading {key} from {self}");
                let body =
                    ReaderStream::with_capacity(file.take(range.end - range.start), READ_CHUNK)
                        .map_err(move |e| Error::from_io(read_what.clone(), e))
                        .boxed();
                Ok(GetResult { meta, range, body })
            }
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let (path, attrs_path, key2) = (self.path_of(key), self.attrs_of(key), key.clone());
        let what = format!("head of {key} in {self}");
        let what2 = what.clone();
        tokio::task::spawn_blocking(move || match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                let stamp = FileStamp::of(&m);
                let attrs = read_attrs(&attrs_path, &stamp.etag());
                Ok(ObjectMeta {
                    content_type: attrs.content_type,
                    cache_control: attrs.cache_control,
                    ..stamp.meta(key2)
                })
            }
            Ok(_) => Err(Error::not_found(format!(
                "{what2}: no such object (it is a prefix)"
            ))),
            Err(e) if is_missing(&e) => Err(Error::not_found(format!("{what2}: no such object"))),
            Err(e) => Err(Error::from_io(what2, e)),
        })
        .await
        .map_err(|e| Error::backend(what, e))?
    }

    fn list_stream(
        &self,
        prefix: Option<&ObjectKey>,
        start_after: Option<&ObjectKey>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let walker = Walker::new(self.objects.clone(), prefix, start_after.cloned());
        let what = format!("listing {self}");
        futures::stream::try_unfold(Some(walker), move |walker| {
            let what = what.clone();
            async move {
                let Some(mut walker) = walker else {
                    return Ok::<_, Error>(None);
                };
                let (walker, batch) = blocking(what, move || {
                    let batch = walker.next_batch(LIST_BATCH)?;
                    Ok((walker, batch))
                })
                .await?;
                if batch.is_empty() {
                    return Ok(None);
                }
                Ok(Some((
                    futures::stream::iter(batch.into_iter().map(Ok)),
                    Some(walker),
                )))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let (path, attrs_path) = (self.path_of(key), self.attrs_of(key));
        let lock = commit_lock(&self.staging);
        let objects = self.objects.clone();
        let what = format!("delete of {key} from {self}");
        let what2 = what.clone();
        let gone = blocking(what, move || {
            // Under the commit lock, so that a compare-and-swap write cannot
            // check the old version, then lose it to this delete, then
            // resurrect the key.
            let held = lock.lock().unwrap_or_else(|p| p.into_inner());
            let removed = match std::fs::remove_file(&path) {
                Ok(()) => true,
                Err(e) if is_missing(&e) || e.kind() == std::io::ErrorKind::IsADirectory => false,
                Err(e) => return Err(e),
            };
            if removed {
                let _ = std::fs::remove_file(&attrs_path);
            }
            drop(held);
            if removed {
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
            }
            Ok(removed.then_some(path))
        })
        .await
        .map_err(|e| match e {
            Error::Conflict { .. } => Error::conflict(format!("{what2}: it is a prefix")),
            other => other,
        })?;
        if let Some(path) = gone {
            prune_empty_dirs(&objects, path.parent()).await;
        }
        Ok(())
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let what = format!("copy of {from} to {to} in {self}");
        let src = self.path_of(from);
        let src_attrs = self.attrs_of(from);
        let tmp = TempFile::new(
            self.staging
                .join(format!("tmp-{}", Uuid::new_v4().simple())),
        );
        let tmp_path = tmp.path().to_path_buf();
        let what2 = what.clone();
        let copied =
            tokio::task::spawn_blocking(move || -> Result<(TempFile, FileStamp, Attrs)> {
                let mut source = match std::fs::File::open(&src) {
                    Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => f,
                    Ok(_) => {
                        return Err(Error::not_found(format!(
                            "{what2}: no such object (a prefix)"
                        )))
                    }
                    Err(e) if is_missing(&e) => {
                        return Err(Error::not_found(format!("{what2}: no such object")))
                    }
                    Err(e) => return Err(Error::from_io(what2, e)),
                };
                let io = |e: std::io::Error| Error::from_io(what2.clone(), e);
                let etag = FileStamp::of(&source.metadata().map_err(io)?).etag();
                let attrs = read_attrs(&src_attrs, &etag);
                let mut out = std::fs::File::create(&tmp_path).map_err(io)?;
                std::io::copy(&mut source, &mut out).map_err(io)?;
                out.sync_all().map_err(io)?;
                Ok((tmp, FileStamp::of(&out.metadata().map_err(io)?), attrs))
            })
            .await
            .map_err(|e| Error::backend(what.clone(), e))?;
        let (tmp, stamp, attrs) = copied?;
        self.commit(&what, tmp, stamp, to, PutMode::Overwrite, attrs)
            .await
            .map(|_| ())
    }

    async fn create_multipart(&self, key: &ObjectKey) -> Result<MultipartId> {
        let upload = MultipartId(Uuid::new_v4().simple().to_string());
        let dir = self.upload_dir(key, &upload)?;
        let what = format!("starting a multipart upload to {key} in {self}");
        let (staging, key_str) = (self.staging.clone(), key.as_str().to_owned());
        // Built under a temporary name and renamed into place whole, so a
        // crash never leaves an upload without its key (a `tmp-` leftover
        // is swept).
        blocking(what, move || {
            let mut tmp = TempFile::new(staging.join(format!("tmp-{}", Uuid::new_v4().simple())));
            std::fs::create_dir(tmp.path())?;
            let mut f = std::fs::File::create(tmp.path().join("key"))?;
            std::io::Write::write_all(&mut f, key_str.as_bytes())?;
            f.sync_all()?;
            sync_dir(tmp.path())?;
            std::fs::rename(tmp.path(), &dir)?;
            tmp.disarm();
            sync_dir(&staging)
        })
        .await?;
        Ok(upload)
    }

    async fn put_part(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        number: u32,
        data: Bytes,
    ) -> Result<PartId> {
        check_part_number(key, number)?;
        let dir = self.check_upload(key, upload).await?;
        let what = format!("part {number} of upload {upload} to {key} in {self}");
        let (tmp, stamp) = self.write_temp_bytes(&what, data).await?;
        let part = dir.join(format!("part-{number:05}"));
        let display = self.to_string();
        let (key2, upload2, what2) = (key.clone(), upload.clone(), what.clone());
        // Renaming over `part-<n>` replaces a re-sent part atomically: of two
        // concurrent sends the later rename wins, and its etag (the file's
        // identity) is the one completion accepts. Neither send deletes the
        // other's file.
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut tmp = tmp;
            match std::fs::rename(tmp.path(), &part) {
                Ok(()) => tmp.disarm(),
                Err(e) if is_missing(&e) => {
                    return Err(Error::not_found(format!(
                        "multipart upload {upload2} to {key2} in {display}: no such upload (aborted or completed)"
                    )))
                }
                Err(e) => return Err(Error::from_io(what2, e)),
            }
            sync_dir(&dir).map_err(|e| Error::from_io(what2, e))
        })
        .await
        .map_err(|e| Error::backend(what, e))??;
        Ok(PartId {
            number,
            etag: stamp.etag(),
        })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<ObjectMeta> {
        let dir = self.check_upload(key, upload).await?;
        let what = format!("completing upload {upload} to {key} in {self}");
        // Each part is opened once: its identity decides whether it is the
        // part the caller names, and the same handle is read, so a part
        // re-sent meanwhile cannot slip in unchecked.
        let (dir2, parts2, what2) = (dir.clone(), parts.clone(), what.clone());
        let files = blocking(what.clone(), move || {
            let _ = &what2;
            let mut files = Vec::with_capacity(parts2.len());
            for p in &parts2 {
                let path = dir2.join(format!("part-{:05}", p.number.min(99_999)));
                match std::fs::File::open(&path) {
                    Ok(f) => {
                        let stamp = FileStamp::of(&f.metadata()?);
                        files.push(same_etag(&stamp.etag(), &p.etag).then_some((f, stamp.len)));
                    }
                    Err(e) if is_missing(&e) => files.push(None),
                    Err(e) => return Err(e),
                }
            }
            Ok(files)
        })
        .await?;
        let sizes: Vec<Option<u64>> = files.iter().map(|f| f.as_ref().map(|(_, n)| *n)).collect();
        check_completion(key, &parts, &sizes)?;
        let files = files.into_iter().flatten().map(|(f, _)| f).collect();
        let (tmp, stamp) = self.join_temp(&what, files).await?;
        // Claim the upload before publishing: of two concurrent completions
        // (or a completion and an abort) only one gets to rename it away.
        let claimed = self
            .staging
            .join(format!("tmp-{}", Uuid::new_v4().simple()));
        match tokio::fs::rename(&dir, &claimed).await {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {
                return Err(Error::not_found(format!(
                    "{what}: no such upload (completed or aborted meanwhile)"
                )))
            }
            Err(e) => return Err(Error::from_io(what, e)),
        }
        let claimed = TempFile::new(claimed);
        let meta = self
            .commit(&what, tmp, stamp, key, PutMode::Overwrite, Attrs::default())
            .await?;
        drop(claimed);
        Ok(meta)
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &MultipartId) -> Result<Vec<StoredPart>> {
        let dir = self.check_upload(key, upload).await?;
        blocking(
            format!("listing the parts of upload {upload} to {key} in {self}"),
            move || {
                let mut parts = Vec::new();
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(number) = name
                        .to_str()
                        .and_then(|n| n.strip_prefix("part-"))
                        .and_then(|n| n.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    let stamp = FileStamp::of(&entry.metadata()?);
                    parts.push(StoredPart {
                        id: PartId {
                            number,
                            etag: stamp.etag(),
                        },
                        size: stamp.len,
                    });
                }
                parts.sort_by_key(|p| p.id.number);
                Ok(parts)
            },
        )
        .await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &MultipartId) -> Result<()> {
        let dir = match self.check_upload(key, upload).await {
            Ok(dir) => dir,
            // Unknown, gone, or an upload to another key (which must stay):
            // nothing of this key's to abort.
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let staging = self.staging.clone();
        blocking(
            format!("aborting upload {upload} to {key} in {self}"),
            move || {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(e),
                }
                sync_dir(&staging)
            },
        )
        .await
    }
}

/// Removes now-empty directories from `start` up to (not including) the
/// objects root. Best effort: a directory another writer filled is kept.
async fn prune_empty_dirs(objects: &Path, start: Option<&Path>) {
    let mut dir = start.map(Path::to_path_buf);
    while let Some(d) = dir {
        if d == objects || !d.starts_with(objects) {
            break;
        }
        if tokio::fs::remove_dir(&d).await.is_err() {
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectStoreExt;

    #[tokio::test]
    async fn files_that_are_not_keys_are_not_listed_and_stale_temps_are_swept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FsStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key = ObjectKey::parse("a/b").unwrap_or_else(|e| panic!("{e}"));
        store
            .put(&key, "x".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // A stray file whose name is not a valid key segment.
        std::fs::write(dir.path().join("objects/a/bad\nname"), b"?")
            .unwrap_or_else(|e| panic!("{e}"));
        let listed = store.list(None).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.len(), 1);
        assert_eq!(store.get_bytes(&key).await.ok(), Some(Bytes::from("x")));
    }

    #[tokio::test]
    async fn crashed_writers_leftovers_are_swept_but_live_writes_are_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FsStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key = ObjectKey::parse("v/seg.m4s").unwrap_or_else(|e| panic!("{e}"));
        store
            .put(&key, "whole".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // What a writer killed mid-write leaves: a half-written temporary
        // file, never a half-written object.
        let stale = dir.path().join("staging/tmp-crashed");
        let live = dir.path().join("staging/tmp-in-progress");
        for path in [&stale, &live] {
            std::fs::write(path, b"half").unwrap_or_else(|e| panic!("{e}"));
        }
        let two_days_ago = std::time::SystemTime::UNIX_EPOCH
            + std::fs::metadata(&stale)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default()
            - Duration::from_secs(48 * 3600);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(two_days_ago))
            .unwrap_or_else(|e| panic!("{e}"));
        let reopened = FsStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !stale.exists(),
            "a day-old temporary file is a crashed write"
        );
        assert!(live.exists(), "a fresh one may be another process's write");
        assert_eq!(
            reopened.get_bytes(&key).await.ok(),
            Some(Bytes::from("whole"))
        );
        assert_eq!(reopened.list(None).await.map(|l| l.len()).ok(), Some(1));
    }

    proptest::proptest! {
        /// No string that parses as a key maps outside `objects/`, and
        /// parsing never panics.
        #[test]
        fn no_key_escapes_the_root(s in "[a-z./\\\\\\x00-\\x1f é%]{0,40}") {
            let root = std::path::PathBuf::from("/data/store");
            let store = FsStore {
                objects: root.join("objects"),
                staging: root.join("staging"),
                attrs: root.join("attrs"),
                root: root.clone(),
                clock: Arc::new(SystemClock::new()),
            };
            if let Ok(key) = ObjectKey::parse(&s) {
                let path = store.path_of(&key);
                proptest::prop_assert!(path.starts_with(root.join("objects")));
                let rel = path.strip_prefix(root.join("objects")).map_err(|e| {
                    proptest::test_runner::TestCaseError::fail(e.to_string())
                })?;
                for c in rel.components() {
                    proptest::prop_assert!(
                        matches!(c, std::path::Component::Normal(_)),
                        "{s:?} -> {path:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn hostile_upload_ids_are_rejected() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FsStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key = ObjectKey::parse("k").unwrap_or_else(|e| panic!("{e}"));
        for id in [
            "../../objects",
            "",
            "mp-x/../../y",
            "0123456789abcdef0123456789abcdeg",
        ] {
            let err = store
                .put_part(&key, &MultipartId(id.into()), 1, Bytes::from("x"))
                .await
                .err()
                .map(|e| e.kind());
            assert_eq!(err, Some(crate::ErrorKind::InvalidInput), "{id}");
        }
    }
}

#[cfg(test)]
mod hygiene_tests {
    use super::*;
    use crate::{ManualClock, ObjectStoreExt};

    fn key(s: &str) -> ObjectKey {
        ObjectKey::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn staging_names(store: &FsStore) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.staging())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("tmp-") || n.starts_with("mp-"))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_cancelled_put_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FsStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (asked_tx, asked_rx) = tokio::sync::oneshot::channel::<()>();
        let mut asked_tx = Some(asked_tx);
        let body = futures::stream::iter(vec![Ok(Bytes::from(vec![7u8; 100_000]))])
            .chain(futures::stream::poll_fn(move |_| {
                if let Some(tx) = asked_tx.take() {
                    let _ = tx.send(());
                }
                std::task::Poll::Pending
            }))
            .boxed();
        let put = {
            let store = store.clone();
            tokio::spawn(async move { store.put(&key("v/x"), PutPayload::Stream(body)).await })
        };
        asked_rx.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(staging_names(&store).len(), 1, "the write is staged");
        put.abort();
        assert!(put.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(staging_names(&store), Vec::<String>::new());
        assert_eq!(
            store.head(&key("v/x")).await.err().map(|e| e.kind()),
            Some(crate::ErrorKind::NotFound)
        );
    }

    #[tokio::test]
    async fn sweep_removes_what_is_older_than_the_age_on_the_clock() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(ManualClock::new(Timestamp::EPOCH));
        let store = FsStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .with_clock(clock.clone());
        // A crashed write and an abandoned upload, as they lie on disk.
        std::fs::write(store.staging().join("tmp-crashed"), b"half")
            .unwrap_or_else(|e| panic!("{e}"));
        let up = store
            .create_multipart(&key("up/x"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .put_part(&key("up/x"), &up, 1, Bytes::from("p"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .put(&key("kept"), "object".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let written = newest_mtime(&store.staging().join(format!("mp-{up}")))
            .unwrap_or_else(|| panic!("no mtime"));
        // An hour later nothing is an hour and a half old.
        clock.set_now(written.saturating_add(Duration::from_secs(3600)));
        let swept = store
            .sweep(Duration::from_secs(5400))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(swept, Swept::default());
        assert_eq!(staging_names(&store).len(), 2);
        // Two hours later both are.
        clock.advance(Duration::from_secs(3600));
        let swept = store
            .sweep(Duration::from_secs(5400))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            swept,
            Swept {
                temps: 1,
                uploads: 1
            }
        );
        assert_eq!(staging_names(&store), Vec::<String>::new());
        assert_eq!(
            store
                .put_part(&key("up/x"), &up, 2, Bytes::from("p"))
                .await
                .err()
                .map(|e| e.kind()),
            Some(crate::ErrorKind::NotFound)
        );
        assert_eq!(
            store.get_bytes(&key("kept")).await.ok(),
            Some(Bytes::from("object"))
        );
    }

    #[tokio::test]
    async fn staging_inside_the_objects_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("out");
        for staging in [out.join(".staging"), out.clone(), dir.path().to_path_buf()] {
            let err = FsStore::open_dirs(&out, &staging).await.err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(crate::ErrorKind::InvalidInput),
                "{}",
                staging.display()
            );
        }
        assert!(FsStore::open_dirs(&out, dir.path().join("out.staging"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn new_directories_are_created_for_deep_keys_and_pruned_after() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FsStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let deep = key("a/b/c/d/e");
        store
            .put_opts(
                &deep,
                "x".into(),
                PutOptions {
                    content_type: Some("text/plain".into()),
                    ..PutOptions::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(dir.path().join("objects/a/b/c/d/e").is_file());
        assert!(dir.path().join("attrs/a/b/c/d/e").is_file());
        store.delete(&deep).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!dir.path().join("objects/a").exists());
        assert!(!dir.path().join("attrs/a/b/c/d/e").exists());
    }
}
