//! [`FsStore`]: objects as files under a root directory (the default backend).
//!
//! Layout under the root:
//!
//! ```text
//! objects/<key>                      one file per object
//! staging/tmp-<uuid>                 a write in progress (renamed into objects/ when complete)
//! staging/mp-<id>/key                the key of a multipart upload
//! staging/mp-<id>/part-<n>-<etag>    its parts
//! ```
//!
//! Every write goes to `staging/` first, is flushed to disk (`fsync`) and is
//! then renamed into place, so a reader sees the old object or the new one and
//! a crash leaves at worst a stale temporary file, which [`FsStore::open`]
//! sweeps away. Keys are validated [`ObjectKey`]s, so a key never names a
//! path outside `objects/`.

use std::fmt;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::{
    check_completion, check_part_number, payload_stream, GetOptions, GetResult, MultipartId,
    ObjectKey, ObjectMeta, ObjectStore, PartId, PresignMethod, PutPayload,
};
use crate::{Error, Result, Timestamp};

/// Temporary files older than this are swept away when a store is opened:
/// they belong to writers that crashed.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// Read buffer for streamed gets (tokio's file reads go up to 2 MiB a trip).
const READ_CHUNK: usize = 1024 * 1024;

/// Ranges up to this size are read in one blocking trip and returned as one
/// chunk; larger ones stream in [`READ_CHUNK`]s.
const SMALL_READ: u64 = 1024 * 1024;

/// What a get's blocking trip found.
enum Opened {
    /// A small range, read whole.
    Read(ObjectMeta, std::ops::Range<u64>, Bytes),
    /// A large range, left to stream from the open file.
    Open(ObjectMeta, std::ops::Range<u64>, std::fs::File),
}

/// Maps an open or stat failure inside a get's blocking trip.
fn opened_error(e: std::io::Error) -> Error {
    if is_missing(&e) {
        Error::not_found("no such object")
    } else {
        Error::from_io("opening", e)
    }
}

/// Creates `dir` if needed and returns its canonical path.
async fn create_resolved(dir: &Path) -> Result<PathBuf> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::from_io(format!("creating store directory {}", dir.display()), e))?;
    tokio::fs::canonicalize(dir)
        .await
        .map_err(|e| Error::from_io(format!("resolving {}", dir.display()), e))
}

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    objects: PathBuf,
    staging: PathBuf,
}

impl fmt::Display for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fs({})", self.root.display())
    }
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`, and sweeps away
    /// temporary files that crashed writers left behind.
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
        Self::with_dirs(root, objects, staging).await
    }

    /// Opens (creating if needed) a store whose objects are files directly
    /// under `objects` (`<objects>/<key>`), staging writes in `staging`,
    /// which must be on the same filesystem (writes are renamed across).
    /// This is how a command writes plain output directories.
    ///
    /// # Errors
    /// As [`FsStore::open`].
    pub async fn open_dirs(objects: impl AsRef<Path>, staging: impl AsRef<Path>) -> Result<Self> {
        let (objects, staging) = (objects.as_ref(), staging.as_ref());
        if objects.as_os_str().is_empty() || staging.as_os_str().is_empty() {
            return Err(Error::invalid_input("filesystem store directory is empty"));
        }
        let objects = create_resolved(objects).await?;
        let staging = create_resolved(staging).await?;
        Self::with_dirs(objects.clone(), objects, staging).await
    }

    async fn with_dirs(root: PathBuf, objects: PathBuf, staging: PathBuf) -> Result<Self> {
        let store = FsStore {
            root,
            objects,
            staging,
        };
        store.sweep_stale_temps().await;
        Ok(store)
    }

    /// The root directory (the objects' directory for [`FsStore::open_dirs`]).
    pub fn root(&self) -> &Path {
        &self.root
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

    async fn sweep_stale_temps(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.staging).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("tmp-") {
                continue;
            }
            let stale = entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            if stale {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    fn temp_path(&self) -> PathBuf {
        self.staging
            .join(format!("tmp-{}", Uuid::new_v4().simple()))
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

    async fn check_upload(&self, key: &ObjectKey, upload: &MultipartId) -> Result<PathBuf> {
        let dir = self.upload_dir(key, upload)?;
        match tokio::fs::read_to_string(dir.join("key")).await {
            Ok(k) if k == key.as_str() => Ok(dir),
            Ok(_) => Err(Error::not_found(format!(
                "multipart upload {upload} in {self} is not an upload to {key}"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(format!(
                "multipart upload {upload} to {key} in {self}: no such upload"
            ))),
            Err(e) => Err(Error::from_io(
                format!("reading multipart upload {upload} in {self}"),
                e,
            )),
        }
    }

    /// Writes `body` to a fresh temporary file, flushed to disk. On failure the
    /// temporary file is removed.
    async fn write_temp(&self, what: &str, mut body: super::ByteStream) -> Result<(PathBuf, u64)> {
        let tmp = self.temp_path();
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| Error::from_io(format!("{what}: creating {}", tmp.display()), e))?;
            let mut size = 0u64;
            while let Some(chunk) = body.try_next().await? {
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Error::from_io(format!("{what}: writing"), e))?;
            }
            file.sync_all()
                .await
                .map_err(|e| Error::from_io(format!("{what}: flushing"), e))?;
            Ok(size)
        }
        .await;
        match result {
            Ok(size) => Ok((tmp, size)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Renames a finished temporary file into place as `key`.
    async fn commit(&self, what: &str, tmp: &Path, key: &ObjectKey) -> Result<ObjectMeta> {
        let target = self.path_of(key);
        let result = self.rename_into_place(what, tmp, key, &target).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(tmp).await;
        }
        result?;
        self.meta_of(key, &target).await
    }

    async fn rename_into_place(
        &self,
        what: &str,
        tmp: &Path,
        key: &ObjectKey,
        target: &Path,
    ) -> Result<()> {
        let parent = target.parent().unwrap_or(&self.objects).to_path_buf();
        // A concurrent delete may remove an empty parent between our
        // create_dir_all and rename; a few tries settle it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Err(e) = tokio::fs::create_dir_all(&parent).await {
                return Err(self.path_conflict(what, key, e));
            }
            if tokio::fs::metadata(target).await.is_ok_and(|m| m.is_dir()) {
                return Err(Error::conflict(format!(
                    "{what}: {key} in {self} is a prefix of other objects and cannot also be an object"
                )));
            }
            match tokio::fs::rename(tmp, target).await {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 3 => continue,
                Err(e) => return Err(self.path_conflict(what, key, e)),
            }
        }
        let dir = parent.clone();
        // The rename is durable only once the directory entry is on disk.
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
            .await
            .map_err(|e| Error::backend(format!("{what}: syncing {}", parent.display()), e))?
            .map_err(|e| Error::from_io(format!("{what}: syncing {}", parent.display()), e))
    }

    fn path_conflict(&self, what: &str, key: &ObjectKey, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => {
                Error::conflict(format!(
                    "{what}: a prefix of {key} is an object in {self}, so {key} cannot be stored"
                ))
            }
            _ => Error::from_io(format!("{what}: storing {key} in {self}"), e),
        }
    }

    async fn meta_of(&self, key: &ObjectKey, path: &Path) -> Result<ObjectMeta> {
        match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => Ok(meta_from(key.clone(), &m)),
            Ok(_) => Err(Error::not_found(format!(
                "{key} in {self}: no such object (it is a prefix)"
            ))),
            Err(e) if is_missing(&e) => {
                Err(Error::not_found(format!("{key} in {self}: no such object")))
            }
            Err(e) => Err(Error::from_io(
                format!("reading metadata of {key} in {self}"),
                e,
            )),
        }
    }

    /// Removes now-empty directories from `start` up to (not including) the
    /// objects root. Best effort: a directory another writer filled is kept.
    async fn prune_empty_dirs(&self, start: Option<&Path>) {
        let mut dir = start.map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.objects || !d.starts_with(&self.objects) {
                break;
            }
            if tokio::fs::remove_dir(&d).await.is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

fn meta_from(key: ObjectKey, m: &std::fs::Metadata) -> ObjectMeta {
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    ObjectMeta {
        key,
        size: m.len(),
        last_modified: Timestamp::from_millis(crate::clock::duration_millis(modified)),
        etag: Some(format!("\"{:x}-{:x}\"", modified.as_nanos(), m.len())),
    }
}

/// Walks `dir` (blocking), collecting every file as an object key relative to
/// `objects`.
fn walk(objects: &Path, dir: &Path, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(objects, &path, out)?;
        } else if file_type.is_file() {
            let Ok(rel) = path.strip_prefix(objects) else {
                continue;
            };
            // Files that are not valid keys were not written by this store;
            // they are not objects.
            let Some(key) = rel.to_str().and_then(|s| ObjectKey::parse(s).ok()) else {
                continue;
            };
            out.push(meta_from(key, &entry.metadata()?));
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<ObjectMeta> {
        let what = format!("put of {key} to {self}");
        let (tmp, _) = self.write_temp(&what, payload_stream(payload)).await?;
        self.commit(&what, &tmp, key).await
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        let path = self.path_of(key);
        let what = format!("get of {key} from {self}");
        // Every tokio file operation is a trip through the blocking pool, so
        // open, stat and (for a small range) the read itself happen in one
        // trip. The metadata is the open file's: a concurrent replace renames
        // a new file over the path, but this handle keeps reading the old one
        // whole.
        let (key2, range_opt) = (key.clone(), opts.range.clone());
        let opened = tokio::task::spawn_blocking(move || -> Result<Opened> {
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(&path).map_err(opened_error)?;
            let m = file.metadata().map_err(opened_error)?;
            if !m.is_file() {
                return Err(Error::not_found("no such object (it is a prefix)"));
            }
            let meta = meta_from(key2.clone(), &m);
            let range = match &range_opt {
                Some(r) => r.resolve(meta.size, &key2)?,
                None => 0..meta.size,
            };
            if range.start > 0 {
                file.seek(SeekFrom::Start(range.start))
                    .map_err(|e| Error::from_io("seeking", e))?;
            }
            let len = range.end - range.start;
            if len <= SMALL_READ {
                let mut buf = Vec::with_capacity(len as usize);
                (&mut file)
                    .take(len)
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::from_io("reading", e))?;
                Ok(Opened::Read(meta, range, Bytes::from(buf)))
            } else {
                Ok(Opened::Open(meta, range, file))
            }
        })
        .await
        .map_err(|e| Error::backend(what.clone(), e))?
        .map_err(|e| match e {
            // The range error already names the key and the size.
            Error::InvalidInput { message } => Error::invalid_input(message),
            Error::NotFound { message } => Error::not_found(format!("{what}: {message}")),
            Error::Unavailable { message, source } => Error::Unavailable {
                message: format!("{what}: {message}"),
                source,
            },
            Error::Backend { message, source } => Error::Backend {
                message: format!("{what}: {message}"),
                source,
            },
            other => other,
        })?;
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
        self.meta_of(key, &self.path_of(key)).await
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
        let objects = self.objects.clone();
        let start = prefix.map_or_else(|| objects.clone(), |p| self.path_of(p));
        let mut out = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&objects, &start, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| Error::backend(format!("listing {self}"), e))?
        .map_err(|e| Error::from_io(format!("listing {self}"), e))?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                self.prune_empty_dirs(path.parent()).await;
                Ok(())
            }
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => Ok(()),
            Err(e) => Err(Error::from_io(format!("delete of {key} from {self}"), e)),
        }
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let what = format!("copy of {from} to {to} in {self}");
        let src = self.path_of(from);
        if !tokio::fs::metadata(&src).await.is_ok_and(|m| m.is_file()) {
            return Err(Error::not_found(format!("{what}: no such object {from}")));
        }
        let tmp = self.temp_path();
        let copied = {
            let (src, tmp) = (src.clone(), tmp.clone());
            tokio::task::spawn_blocking(move || {
                std::fs::copy(&src, &tmp)?;
                std::fs::File::open(&tmp)?.sync_all()
            })
            .await
            .map_err(|e| Error::backend(what.clone(), e))?
        };
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Error::from_io(what, e));
        }
        self.commit(&what, &tmp, to).await.map(|_| ())
    }

    async fn create_multipart(&self, key: &ObjectKey) -> Result<MultipartId> {
        let upload = MultipartId(Uuid::new_v4().simple().to_string());
        let dir = self.upload_dir(key, &upload)?;
        let what = format!("starting a multipart upload to {key} in {self}");
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|e| Error::from_io(what.clone(), e))?;
        tokio::fs::write(dir.join("key"), key.as_str())
            .await
            .map_err(|e| Error::from_io(what, e))?;
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
        let (tmp, _) = self.write_temp(&what, super::single_chunk(data)).await?;
        let etag = Uuid::new_v4().simple().to_string();
        let part = dir.join(format!("part-{number:05}-{etag}"));
        if let Err(e) = tokio::fs::rename(&tmp, &part).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Error::from_io(what, e));
        }
        // A re-sent part replaces the earlier one with that number.
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| Error::from_io(what.clone(), e))?;
        let own = format!("part-{number:05}-");
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&own) && !name.ends_with(&etag) {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        Ok(PartId { number, etag })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<ObjectMeta> {
        let dir = self.check_upload(key, upload).await?;
        let what = format!("completing upload {upload} to {key} in {self}");
        let part_path = |p: &PartId| {
            // The etag comes back from the caller: only a plain token may name
            // a file.
            let token_ok = !p.etag.is_empty() && p.etag.bytes().all(|b| b.is_ascii_alphanumeric());
            token_ok.then(|| dir.join(format!("part-{:05}-{}", p.number, p.etag)))
        };
        let mut sizes = Vec::with_capacity(parts.len());
        for p in &parts {
            let size = match part_path(p) {
                Some(path) => tokio::fs::metadata(&path).await.ok().map(|m| m.len()),
                None => None,
            };
            sizes.push(size);
        }
        check_completion(key, &parts, &sizes)?;
        let paths: Vec<PathBuf> = parts.iter().filter_map(part_path).collect();
        let body = futures::stream::iter(paths)
            .then(|path| async move {
                tokio::fs::read(&path)
                    .await
                    .map(Bytes::from)
                    .map_err(|e| Error::from_io(format!("reading part {}", path.display()), e))
            })
            .boxed();
        let (tmp, _) = self.write_temp(&what, body).await?;
        let meta = self.commit(&what, &tmp, key).await?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(meta)
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &MultipartId) -> Result<()> {
        let dir = self.upload_dir(key, upload)?;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Error::from_io(
                format!("aborting upload {upload} to {key} in {self}"),
                e,
            )),
        }
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        _expires_in: Duration,
    ) -> Result<String> {
        Err(Error::not_supported(format!(
            "presigned {method:?} of {key}: {self} cannot sign URLs"
        )))
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
                root: root.clone(),
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
