//! Multipart uploads: the streaming put and the requests behind the
//! store's multipart methods.

use std::collections::HashMap;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;

use super::error::{chain, sdk_error};
use super::{size_of, S3Store, STREAM_PART_SIZE};
use crate::store::{ByteStream, ObjectKey, ObjectMeta, PutMode, PutOptions, MAX_PART_NUMBER};
use crate::{Error, Result};

impl S3Store {
    /// Writes a stream: one `PutObject` when it fits in one part, a multipart
    /// upload otherwise (see the module docs).
    pub(super) async fn put_stream(
        &self,
        key: &ObjectKey,
        full: &str,
        mut body: ByteStream,
        opts: &PutOptions,
        what: &str,
    ) -> Result<ObjectMeta> {
        let mut buf = BytesMut::new();
        if fill(&mut body, &mut buf, STREAM_PART_SIZE).await? {
            return self.put_bytes(key, full, buf.freeze(), opts, what).await;
        }
        let upload_id = self.start_upload(full, opts, what).await?;
        let mut guard = AbortOnDrop {
            store: Some((self.clone(), full.to_owned(), upload_id.clone())),
        };
        let result = self
            .stream_parts(key, full, &upload_id, body, buf, opts, what)
            .await;
        guard.store = None;
        if result.is_err() {
            self.abort_quietly(full, &upload_id).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)] // The state of one upload, passed down once.
    async fn stream_parts(
        &self,
        key: &ObjectKey,
        full: &str,
        upload_id: &str,
        mut body: ByteStream,
        mut buf: BytesMut,
        opts: &PutOptions,
        what: &str,
    ) -> Result<ObjectMeta> {
        let mut parts = Vec::new();
        let mut size = 0u64;
        let mut ended = false;
        loop {
            // Here the buffer holds more than a part, or the stream has ended.
            if ended && buf.len() <= STREAM_PART_SIZE {
                if !buf.is_empty() {
                    let number = next_part_number(&parts, what)?;
                    let data = buf.split().freeze();
                    size += data.len() as u64;
                    let etag = self.send_part(full, upload_id, number, data, what).await?;
                    parts.push(completed_part(number, etag));
                }
                break;
            }
            let number = next_part_number(&parts, what)?;
            let data = buf.split_to(STREAM_PART_SIZE).freeze();
            size += data.len() as u64;
            let etag = if ended {
                self.send_part(full, upload_id, number, data, what).await?
            } else {
                // Read the next part while this one is on the wire.
                let (etag, now_ended) = tokio::try_join!(
                    self.send_part(full, upload_id, number, data, what),
                    fill(&mut body, &mut buf, STREAM_PART_SIZE),
                )?;
                ended = now_ended;
                etag
            };
            parts.push(completed_part(number, etag));
        }
        let etag = self
            .finish_upload(full, upload_id, parts, &opts.mode, what)
            .await?;
        Ok(ObjectMeta {
            content_type: opts.content_type.clone(),
            cache_control: opts.cache_control.clone(),
            ..ObjectMeta::new(key.clone(), size, self.clock.now(), etag)
        })
    }

    /// Starts a multipart upload whose object gets the attributes of `opts`.
    pub(super) async fn start_upload(
        &self,
        full: &str,
        opts: &PutOptions,
        what: &str,
    ) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .set_content_type(opts.content_type.clone())
            .set_cache_control(opts.cache_control.clone())
            .send()
            .await
            .map_err(|e| sdk_error(what, e))?;
        out.upload_id
            .ok_or_else(|| Error::backend(what, "the server returned no upload id"))
    }

    pub(super) async fn send_part(
        &self,
        full: &str,
        upload_id: &str,
        number: u32,
        data: Bytes,
        what: &str,
    ) -> Result<String> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(part_number_i32(number))
            .body(data.into())
            .send()
            .await
            .map_err(|e| sdk_error(what, e))?;
        out.e_tag.ok_or_else(|| {
            Error::backend(
                what,
                format!("the server returned no ETag for part {number}"),
            )
        })
    }

    pub(super) async fn finish_upload(
        &self,
        full: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        mode: &PutMode,
        what: &str,
    ) -> Result<Option<String>> {
        let (if_none_match, if_match) = super::conditions(mode);
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .send()
            .await
            .map_err(|e| super::conditional_error(mode, sdk_error(what, e)))?;
        Ok(out.e_tag)
    }

    /// Aborts an upload after a failure; the failure is what the caller
    /// hears about, so an abort that fails too is only logged.
    pub(super) async fn abort_quietly(&self, full: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(
                store = %self,
                key = full,
                upload_id,
                error = %chain(&e),
                "aborting a failed multipart upload failed; its parts stay until the bucket's lifecycle rules remove them"
            );
        }
    }

    /// The parts uploaded so far: number to (ETag, size).
    pub(super) async fn uploaded_parts(
        &self,
        full: &str,
        upload_id: &str,
        what: &str,
    ) -> Result<HashMap<u32, (String, u64)>> {
        let mut parts = HashMap::new();
        let mut pages = self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(what, e))?;
            for part in page.parts() {
                let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) else {
                    continue;
                };
                let Ok(number) = u32::try_from(number) else {
                    continue;
                };
                parts.insert(number, (etag.to_owned(), size_of(part.size())));
            }
        }
        Ok(parts)
    }
}

/// Aborts a multipart upload in the background when a streamed put is
/// dropped before it finished (its future cancelled), so that its parts do
/// not linger.
struct AbortOnDrop {
    store: Option<(S3Store, String, String)>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some((store, full, upload_id)) = self.store.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { store.abort_quietly(&full, &upload_id).await });
        }
    }
}

/// Reads from `body` into `buf` until it holds more than `want` bytes or the
/// body ends; returns whether it ended.
async fn fill(body: &mut ByteStream, buf: &mut BytesMut, want: usize) -> Result<bool> {
    while buf.len() <= want {
        match body.try_next().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Ok(true),
        }
    }
    Ok(false)
}

/// The number of the part after `parts`.
///
/// # Errors
/// [`Error::InvalidInput`] when the stream needs more than
/// [`MAX_PART_NUMBER`] parts.
fn next_part_number(parts: &[CompletedPart], what: &str) -> Result<u32> {
    let number = u32::try_from(parts.len() + 1).unwrap_or(u32::MAX);
    if number > MAX_PART_NUMBER {
        return Err(Error::invalid_input(format!(
            "{what}: the stream is longer than {MAX_PART_NUMBER} parts of {STREAM_PART_SIZE} bytes"
        )));
    }
    Ok(number)
}

pub(super) fn completed_part(number: u32, etag: String) -> CompletedPart {
    CompletedPart::builder()
        .part_number(part_number_i32(number))
        .e_tag(etag)
        .build()
}

/// A part number as the SDK wants it; numbers are checked against
/// `1..=10000` before they get here.
pub(super) fn part_number_i32(number: u32) -> i32 {
    i32::try_from(number).unwrap_or(i32::MAX)
}
