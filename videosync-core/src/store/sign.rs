//! Presigned URLs: the [`Signer`] contract.
//!
//! A presigned URL lets a client that holds no credentials (a browser) do
//! one thing to one object for a while: download it, upload it whole, or
//! upload one part of a multipart upload. The signature binds the method,
//! the key, the expiry and, where given, the content type and the exact
//! content length, so a `PUT` with another type or a larger body is refused
//! by the storage server itself.
//!
//! Signing is a capability of some stores only (S3); a store hands its
//! signer out through [`ObjectStore::signer`](super::ObjectStore::signer),
//! and the server keeps it as an `Option<Arc<dyn Signer>>`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::{check_part_number, MultipartId, ObjectKey, MAX_PRESIGN_EXPIRY};
use crate::{Error, Result, Timestamp};

/// What a presigned URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignMethod {
    /// `GET` the object.
    Get,
    /// `PUT` the whole object in one request.
    Put,
    /// `PUT` part `number` of the multipart upload `upload` (S3's
    /// `UploadPart`); the part's etag comes back in the answer's `ETag`
    /// header, for [`ObjectStore::complete_multipart`](super::ObjectStore::complete_multipart).
    UploadPart {
        /// The upload, from [`ObjectStore::create_multipart`](super::ObjectStore::create_multipart).
        upload: MultipartId,
        /// The part number, `1..=10000`.
        number: u32,
    },
}

impl SignMethod {
    /// The HTTP method the URL is for.
    pub fn http_method(&self) -> &'static str {
        match self {
            SignMethod::Get => "GET",
            SignMethod::Put | SignMethod::UploadPart { .. } => "PUT",
        }
    }
}

/// What to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// What the URL allows.
    pub method: SignMethod,
    /// The object.
    pub key: ObjectKey,
    /// How long from the signer's clock's `now` the URL works (1 s to
    /// [`MAX_PRESIGN_EXPIRY`]).
    pub expires_in: Duration,
    /// For a `PUT`: the `Content-Type` the client must send, which the
    /// object is then stored with.
    pub content_type: Option<String>,
    /// For a `PUT` or a part: the exact `Content-Length` the client must
    /// send; a larger (or smaller) body is refused.
    pub content_length: Option<u64>,
}

impl SignRequest {
    /// A `GET` of `key` for `expires_in`.
    pub fn get(key: ObjectKey, expires_in: Duration) -> Self {
        SignRequest {
            method: SignMethod::Get,
            key,
            expires_in,
            content_type: None,
            content_length: None,
        }
    }

    /// A `PUT` of `key` for `expires_in`, with no bound on type or length.
    pub fn put(key: ObjectKey, expires_in: Duration) -> Self {
        SignRequest {
            method: SignMethod::Put,
            ..SignRequest::get(key, expires_in)
        }
    }

    /// Binds the content type the client must send.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Binds the exact length the client must send.
    pub fn content_length(mut self, len: u64) -> Self {
        self.content_length = Some(len);
        self
    }

    /// Checks the request: the expiry within 1 s..=[`MAX_PRESIGN_EXPIRY`], a
    /// valid part number, no type or length on a `GET`, a printable ASCII
    /// content type.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] saying which rule the request breaks.
    pub fn check(&self) -> Result<()> {
        let key = &self.key;
        if self.expires_in < Duration::from_secs(1) || self.expires_in > MAX_PRESIGN_EXPIRY {
            return Err(Error::invalid_input(format!(
                "presigned URL for {key}: expiry of {}s is outside 1s..={}s",
                self.expires_in.as_secs(),
                MAX_PRESIGN_EXPIRY.as_secs()
            )));
        }
        if let SignMethod::UploadPart { number, .. } = &self.method {
            check_part_number(key, *number)?;
        }
        if self.method == SignMethod::Get
            && (self.content_type.is_some() || self.content_length.is_some())
        {
            return Err(Error::invalid_input(format!(
                "presigned GET of {key}: a content type or length binds uploads only"
            )));
        }
        if let Some(ct) = &self.content_type {
            let ok =
                !ct.is_empty() && ct.len() <= 1024 && ct.bytes().all(|b| (0x20..0x7f).contains(&b));
            if !ok {
                return Err(Error::invalid_input(format!(
                    "presigned URL for {key}: content type `{}` is empty, too long or not printable ASCII",
                    ct.escape_debug()
                )));
            }
        }
        Ok(())
    }
}

/// A presigned request: the URL and the headers the client must send with
/// it (those the signature covers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// `GET` or `PUT`.
    pub method: &'static str,
    /// The URL, on the signer's public endpoint.
    pub url: String,
    /// Headers the client must send exactly (`content-type`,
    /// `content-length`); `host` is implied by the URL.
    pub headers: Vec<(String, String)>,
    /// When the URL stops working, on the signer's clock.
    pub expires_at: Timestamp,
}

/// Makes presigned URLs for one store's objects.
///
/// # Contract
/// - A URL works with a plain HTTP client, for the method, key and headers
///   it was made for, until `expires_at`; afterwards, or with another
///   method, key, content type or length, or when tampered with, the
///   storage server refuses it (a 4xx).
/// - URLs name the signer's *public* endpoint, the address a browser
///   reaches, which may differ from the one the store itself talks to.
/// - The signing time is the injected [`Clock`](crate::Clock)'s `now`: a
///   signer on a clock set in the past makes URLs that are expired already.
/// - An unusable request (expiry out of bounds, bad part number) is
///   [`Error::InvalidInput`]; nothing is sent to the server.
///
/// # Implementing
/// Sign locally (no request to the server) and check the request with
/// [`SignRequest::check`]. `Display` names the store and the public
/// endpoint.
#[async_trait]
pub trait Signer: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Signs `request`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unusable request, or a backend error
    /// when the credentials cannot be loaded.
    async fn sign(&self, request: &SignRequest) -> Result<SignedRequest>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let key = ObjectKey::parse("a/b").unwrap_or_else(|e| panic!("{e}"));
        let ok = SignRequest::put(key.clone(), Duration::from_secs(60))
            .content_type("video/mp4")
            .content_length(10);
        assert!(ok.check().is_ok());
        for bad in [
            SignRequest::get(key.clone(), Duration::ZERO),
            SignRequest::get(key.clone(), MAX_PRESIGN_EXPIRY + Duration::from_secs(1)),
            SignRequest::get(key.clone(), Duration::from_secs(60)).content_length(1),
            SignRequest::put(key.clone(), Duration::from_secs(60)).content_type("a\nb"),
            SignRequest {
                method: SignMethod::UploadPart {
                    upload: MultipartId("u".into()),
                    number: 0,
                },
                ..SignRequest::get(key.clone(), Duration::from_secs(60))
            },
        ] {
            assert_eq!(
                bad.check().err().map(|e| e.kind()),
                Some(crate::ErrorKind::InvalidInput),
                "{bad:?}"
            );
        }
    }
}
