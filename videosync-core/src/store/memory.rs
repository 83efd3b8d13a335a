//! [`MemoryStore`]: objects in a map, for tests and short-lived processes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use super::{
    check_completion, check_part_number, etag_matches, listed, payload_stream, single_chunk,
    GetOptions, GetResult, MultipartId, ObjectKey, ObjectMeta, ObjectStore, PartId, PutMode,
    PutOptions, PutPayload, StoredPart,
};
use crate::{Clock, Error, Result, SystemClock};

/// Size of the pieces a get hands out.
const READ_CHUNK: usize = 1024 * 1024;

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<ObjectKey, (Bytes, ObjectMeta)>,
    uploads: HashMap<String, Upload>,
    version: u64,
}

#[derive(Debug)]
struct Upload {
    key: ObjectKey,
    parts: BTreeMap<u32, (String, Bytes)>,
}

/// Objects held in memory; gone when the last clone is dropped.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memory")
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        MemoryStore::with_clock(Arc::new(SystemClock::new()))
    }

    /// An empty store stamping objects with `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            state: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written object:
        // every mutation is a single map operation. So a poisoned lock is safe
        // to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `data` under `key` if `mode` allows, in one critical section,
    /// so that conditional writes are atomic.
    fn insert(
        &self,
        key: &ObjectKey,
        data: Bytes,
        mode: &PutMode,
        attrs: (Option<String>, Option<String>),
    ) -> Result<ObjectMeta> {
        let mut state = self.lock();
        let current = state.objects.get(key).map(|(_, m)| m.etag.clone());
        match (mode, current) {
            (PutMode::Overwrite, _) | (PutMode::Create, None) => {}
            (PutMode::Create, Some(_)) => {
                return Err(Error::already_exists(format!(
                    "create of {key} in {self}: the object exists"
                )))
            }
            (PutMode::IfMatch(want), Some(Some(etag))) if super::same_etag(want, &etag) => {}
            (PutMode::IfMatch(want), current) => {
                return Err(Error::precondition(format!(
                    "put of {key} in {self} if its etag is {want}: {}",
                    match current {
                        Some(Some(etag)) => format!("the etag is {etag}"),
                        _ => "there is no such object".to_owned(),
                    }
                )))
            }
        }
        state.version += 1;
        let meta = ObjectMeta {
            content_type: attrs.0,
            cache_control: attrs.1,
            ..ObjectMeta::new(
                key.clone(),
                data.len() as u64,
                self.clock.now(),
                Some(format!("\"m{}\"", state.version)),
            )
        };
        state.objects.insert(key.clone(), (data, meta.clone()));
        Ok(meta)
    }

    fn not_found(&self, op: &str, key: &ObjectKey) -> Error {
        Error::not_found(format!("{op} of {key} from {self}: no such object"))
    }

    fn no_upload(&self, key: &ObjectKey, upload: &MultipartId) -> Error {
        Error::not_found(format!(
            "multipart upload {upload} to {key} in {self}: no such upload"
        ))
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put_opts(
        &self,
        key: &ObjectKey,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        opts.check(key)?;
        let data = match payload {
            PutPayload::Bytes(b) => b,
            stream => {
                let mut buf = BytesMut::new();
                let mut body = payload_stream(stream);
                while let Some(chunk) = body.try_next().await? {
                    buf.extend_from_slice(&chunk);
                }
                buf.freeze()
            }
        };
        self.insert(
            key,
            data,
            &opts.mode,
            (opts.content_type, opts.cache_control),
        )
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        let (data, meta) = self
            .lock()
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| self.not_found("get", key))?;
        if let Some(wanted) = &opts.if_none_match {
            if etag_matches(wanted, meta.etag.as_deref()) {
                return Err(Error::not_modified(format!(
                    "get of {key} from {self}: not modified (etag {wanted})"
                )));
            }
        }
        let range = match &opts.range {
            Some(r) => r.resolve(meta.size, key)?,
            None => 0..meta.size,
        };
        // Ranges are within `data`: `resolve` clamps them to the size.
        let body = data.slice(range.start as usize..range.end as usize);
        // Handed out in pieces, as the other backends stream, so that callers
        // tested on memory do not come to rely on one chunk (the slices share
        // the buffer: no copy).
        let pieces: Vec<Result<Bytes>> = (0..body.len())
            .step_by(READ_CHUNK)
            .map(|at| Ok(body.slice(at..body.len().min(at + READ_CHUNK))))
            .collect();
        let body = if pieces.is_empty() {
            single_chunk(body)
        } else {
            futures::stream::iter(pieces).boxed()
        };
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.lock()
            .objects
            .get(key)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| self.not_found("head", key))
    }

    fn list_stream(
        &self,
        prefix: Option<&ObjectKey>,
        start_after: Option<&ObjectKey>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        // A snapshot: the map is in memory already, and holding the lock
        // across the stream's lifetime would block every writer.
        let metas: Vec<Result<ObjectMeta>> = self
            .lock()
            .objects
            .values()
            .filter(|(_, m)| listed(&m.key, prefix, start_after))
            .map(|(_, m)| {
                Ok(ObjectMeta {
                    content_type: None,
                    cache_control: None,
                    ..m.clone()
                })
            })
            .collect();
        futures::stream::iter(metas).boxed()
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let (data, meta) = self
            .lock()
            .objects
            .get(from)
            .cloned()
            .ok_or_else(|| self.not_found("copy", from))?;
        self.insert(
            to,
            data,
            &PutMode::Overwrite,
            (meta.content_type, meta.cache_control),
        )
        .map(|_| ())
    }

    async fn create_multipart(&self, key: &ObjectKey) -> Result<MultipartId> {
        let id = Uuid::new_v4().simple().to_string();
        self.lock().uploads.insert(
            id.clone(),
            Upload {
                key: key.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(MultipartId(id))
    }

    async fn put_part(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        number: u32,
        data: Bytes,
    ) -> Result<PartId> {
        check_part_number(key, number)?;
        let mut state = self.lock();
        let up = state
            .uploads
            .get_mut(&upload.0)
            .filter(|u| &u.key == key)
            .ok_or_else(|| self.no_upload(key, upload))?;
        let etag = format!("\"p{number}-{}\"", Uuid::new_v4().simple());
        up.parts.insert(number, (etag.clone(), data));
        Ok(PartId { number, etag })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<ObjectMeta> {
        let data = {
            let state = self.lock();
            let up = state
                .uploads
                .get(&upload.0)
                .filter(|u| &u.key == key)
                .ok_or_else(|| self.no_upload(key, upload))?;
            let sizes: Vec<Option<u64>> = parts
                .iter()
                .map(|p| {
                    up.parts
                        .get(&p.number)
                        .filter(|(etag, _)| *etag == p.etag)
                        .map(|(_, d)| d.len() as u64)
                })
                .collect();
            check_completion(key, &parts, &sizes)?;
            let mut buf = BytesMut::new();
            for p in &parts {
                if let Some((_, d)) = up.parts.get(&p.number) {
                    buf.extend_from_slice(d);
                }
            }
            buf.freeze()
        };
        // Completing twice, or racing an abort: only the first to take the
        // upload out of the map writes the object.
        if self.lock().uploads.remove(&upload.0).is_none() {
            return Err(self.no_upload(key, upload));
        }
        self.insert(key, data, &PutMode::Overwrite, (None, None))
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &MultipartId) -> Result<Vec<StoredPart>> {
        let state = self.lock();
        let up = state
            .uploads
            .get(&upload.0)
            .filter(|u| &u.key == key)
            .ok_or_else(|| self.no_upload(key, upload))?;
        Ok(up
            .parts
            .iter()
            .map(|(&number, (etag, data))| StoredPart {
                id: PartId {
                    number,
                    etag: etag.clone(),
                },
                size: data.len() as u64,
            })
            .collect())
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &MultipartId) -> Result<()> {
        let mut state = self.lock();
        // An id given with another key names no upload of that key: nothing
        // to abort, and the real upload stays.
        if state.uploads.get(&upload.0).is_some_and(|u| &u.key == key) {
            state.uploads.remove(&upload.0);
        }
        Ok(())
    }
}
