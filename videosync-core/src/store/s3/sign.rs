//! [`S3Signer`]: presigned URLs (SigV4 query parameters) for an
//! [`S3Store`]'s objects.
//!
//! Signing happens locally with `aws-sdk-s3`'s presigning, on a client that
//! carries the store's credentials and region but the *public* endpoint
//! (see [`S3StoreBuilder::public_endpoint`](super::S3StoreBuilder::public_endpoint)),
//! since the host is part of what is signed. The signing time is the store's
//! [`Clock`](crate::Clock), so a URL expires on that clock. A content type
//! and a content length, when asked for, are signed headers: the server
//! refuses a request that sends other values.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};

use super::error::sdk_error;
use super::multipart::part_number_i32;
use super::S3Store;
use crate::store::sign::{SignMethod, SignRequest, SignedRequest, Signer};
use crate::{Error, Result};

/// Presigns requests for one [`S3Store`]'s objects.
#[derive(Debug, Clone)]
pub struct S3Signer {
    store: S3Store,
}

impl fmt::Display for S3Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self
            .store
            .public_endpoint
            .as_deref()
            .or(self.store.endpoint.as_deref())
            .unwrap_or("AWS");
        write!(f, "{} signing for {endpoint}", self.store)
    }
}

impl S3Signer {
    /// A signer for `store`'s objects, on its public endpoint and clock.
    pub fn new(store: S3Store) -> Self {
        S3Signer { store }
    }
}

#[async_trait]
impl Signer for S3Signer {
    async fn sign(&self, request: &SignRequest) -> Result<SignedRequest> {
        let store = &self.store;
        let key = &request.key;
        request.check().map_err(|e| store.located(e))?;
        let what = format!(
            "presigning a {} of {key} in {store}",
            request.method.http_method()
        );
        let now = store.clock.now();
        let start = UNIX_EPOCH
            + Duration::from_millis(u64::try_from(now.as_millis()).map_err(|_| {
                Error::invalid_input(format!("{what}: the clock reads {now}, before 1970"))
            })?);
        let config = PresigningConfig::builder()
            .start_time(start)
            .expires_in(request.expires_in)
            .build()
            .map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
        let length = request
            .content_length
            .map(i64::try_from)
            .transpose()
            .map_err(|_| {
                Error::invalid_input(format!("{what}: the content length is too large"))
            })?;
        let client = &store.signing_client;
        let full = store.full_key(key);
        let presigned: PresignedRequest = match &request.method {
            SignMethod::Get => client
                .get_object()
                .bucket(&store.bucket)
                .key(full)
                .presigned(config)
                .await
                .map_err(|e| sdk_error(&what, e))?,
            SignMethod::Put => client
                .put_object()
                .bucket(&store.bucket)
                .key(full)
                .set_content_type(request.content_type.clone())
                .set_content_length(length)
                .presigned(config)
                .await
                .map_err(|e| sdk_error(&what, e))?,
            SignMethod::UploadPart { upload, number } => client
                .upload_part()
                .bucket(&store.bucket)
                .key(full)
                .upload_id(&upload.0)
                .part_number(part_number_i32(*number))
                .set_content_length(length)
                .presigned(config)
                .await
                .map_err(|e| sdk_error(&what, e))?,
        };
        let headers = presigned
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(SignedRequest {
            method: request.method.http_method(),
            url: presigned.uri().to_owned(),
            headers,
            expires_at: now.saturating_add(request.expires_in),
        })
    }
}
