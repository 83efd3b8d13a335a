//! [`MemoryStore`]: objects in a map, for tests and short-lived processes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use uuid::Uuid;

use super::{
    check_completion, check_part_number, payload_stream, single_chunk, GetOptions, GetResult,
    MultipartId, ObjectKey, ObjectMeta, ObjectStore, PartId, PresignMethod, PutPayload,
};
use crate::{Clock, Error, Result, SystemClock};

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

    fn insert(&self, key: &ObjectKey, data: Bytes) -> ObjectMeta {
        let mut state = self.lock();
        state.version += 1;
        let meta = ObjectMeta {
            key: key.clone(),
            size: data.len() as u64,
            last_modified: self.clock.now(),
            etag: Some(format!("\"m{}\"", state.version)),
        };
        state.objects.insert(key.clone(), (data, meta.clone()));
        meta
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
    async fn put(&self, key: &ObjectKey, payload: PutPayload) -> Result<ObjectMeta> {
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
        Ok(self.insert(key, data))
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        let (data, meta) = self
            .lock()
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| self.not_found("get", key))?;
        let range = match &opts.range {
            Some(r) => r.resolve(meta.size, key)?,
            None => 0..meta.size,
        };
        // Ranges are within `data`: `resolve` clamps them to the size.
        let body = data.slice(range.start as usize..range.end as usize);
        Ok(GetResult {
            meta,
            range,
            body: single_chunk(body),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.lock()
            .objects
            .get(key)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| self.not_found("head", key))
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .lock()
            .objects
            .values()
            .filter(|(_, m)| prefix.is_none_or(|p| m.key.starts_with(p)))
            .map(|(_, m)| m.clone())
            .collect())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let data = self
            .lock()
            .objects
            .get(from)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| self.not_found("copy", from))?;
        self.insert(to, data);
        Ok(())
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
        self.lock().uploads.remove(&upload.0);
        Ok(self.insert(key, data))
    }

    async fn abort_multipart(&self, _key: &ObjectKey, upload: &MultipartId) -> Result<()> {
        self.lock().uploads.remove(&upload.0);
        Ok(())
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
