//! The tus 1.0 protocol's headers: parsing and checking what clients send,
//! and the values the server answers with. Pure functions; the handlers in
//! the parent module do the IO.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use sha1::Digest;

use crate::error::ApiError;

/// The protocol version this server speaks.
pub const VERSION: &str = "1.0.0";
/// The extensions it implements.
pub const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration";
/// The checksum algorithms it accepts.
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
/// The content type of every body carrying upload bytes.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The protocol version of a request or answer.
pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
/// The versions the server speaks (`OPTIONS`).
pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
/// The extensions the server implements (`OPTIONS`).
pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
/// The largest upload (`OPTIONS`).
pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
/// The checksum algorithms accepted (`OPTIONS`).
pub const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
/// Where the bytes of a `PATCH` go, and where an upload stands.
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
/// The whole upload's length.
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
/// `1`: the length comes later.
pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
/// Key and base64 value pairs.
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
/// The digest of a `PATCH` body.
pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
/// When an idle upload expires.
pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
/// The video an upload becomes (this server's addition).
pub const VIDEO_ID: HeaderName = HeaderName::from_static("videosync-video-id");

/// tus' own status for a checksum that does not match the body.
pub const CHECKSUM_MISMATCH: u16 = 460;

/// Checks `Tus-Resumable` on every request but `OPTIONS`.
///
/// # Errors
/// 412 when it is missing or names another version.
pub fn check_resumable(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(TUS_RESUMABLE).map(HeaderValue::to_str) {
        Some(Ok(VERSION)) => Ok(()),
        Some(_) => Err(precondition(format!(
            "this server speaks tus {VERSION} only (Tus-Resumable)"
        ))),
        None => Err(precondition(format!(
            "the Tus-Resumable: {VERSION} header is required"
        ))),
    }
}

fn precondition(message: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PRECONDITION_FAILED,
        crate::error::code::TUS_VERSION,
        message,
    )
}

/// A header that must be a whole number of bytes, if present.
///
/// # Errors
/// 400 naming the header.
pub fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default();
    // Digits only: `+1`, ` 1` and `0x1` are not numbers here.
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "{name} must be a whole number of bytes"
        )));
    }
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("{name} is out of range")))
}

/// The length a creation request declares: `Some(n)` for `Upload-Length`,
/// `None` for `Upload-Defer-Length: 1`.
///
/// # Errors
/// 400 unless exactly one of the two is given, well formed.
pub fn creation_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let length = number(headers, &UPLOAD_LENGTH)?;
    let deferred = headers.get(UPLOAD_DEFER_LENGTH);
    match (length, deferred) {
        (Some(n), None) => Ok(Some(n)),
        (None, Some(v)) if v.as_bytes() == b"1" => Ok(None),
        (None, Some(_)) => Err(ApiError::bad_request("Upload-Defer-Length must be 1")),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give Upload-Length or Upload-Defer-Length, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "Upload-Length (or Upload-Defer-Length: 1) is required",
        )),
    }
}

/// Parses `Upload-Metadata`: comma-separated `key base64(value)` pairs
/// (the value may be absent). Values must be UTF-8 here.
///
/// # Errors
/// 400 for a malformed pair, a duplicate key or a value that is not
/// base64 or UTF-8.
pub fn metadata(headers: &HeaderMap) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(raw) = headers.get(UPLOAD_METADATA) else {
        return Ok(out);
    };
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::bad_request("Upload-Metadata must be ASCII"))?;
    let bad = |why: &str| ApiError::bad_request(format!("Upload-Metadata: {why}"));
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.split(' ');
        let key = parts.next().unwrap_or_default();
        let value = parts.next();
        if parts.next().is_some() {
            return Err(bad("a pair is a key and one base64 value"));
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("a key is printable ASCII without spaces or commas"));
        }
        let value = match value {
            None => String::new(),
            Some(v) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| bad(&format!("the value of `{key}` is not base64")))?;
                String::from_utf8(bytes)
                    .map_err(|_| bad(&format!("the value of `{key}` is not UTF-8")))?
            }
        };
        if out.insert(key.to_owned(), value).is_some() {
            return Err(bad(&format!("`{key}` is given twice")));
        }
    }
    Ok(out)
}

/// `Upload-Metadata` as sent back by `HEAD`.
pub fn encode_metadata<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    entries
        .into_iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.to_owned()
            } else {
                format!(
                    "{k} {}",
                    base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
                )
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A checksum the client sent with a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// Which digest.
    pub algorithm: Algorithm,
    /// Its value.
    pub digest: Vec<u8>,
}

/// A supported checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

/// Parses `Upload-Checksum: <algorithm> <base64 digest>`, if present.
///
/// # Errors
/// 400 for an unsupported algorithm or a malformed digest (tus says 400).
pub fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    let Some(raw) = headers.get(UPLOAD_CHECKSUM) else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or_default();
    let (name, digest) = raw
        .split_once(' ')
        .ok_or_else(|| ApiError::bad_request("Upload-Checksum is `<algorithm> <base64 digest>`"))?;
    let (algorithm, len) = match name {
        "sha1" => (Algorithm::Sha1, 20),
        "sha256" => (Algorithm::Sha256, 32),
        _ => {
            return Err(ApiError::bad_request(format!(
                "checksum algorithm `{}` is not supported ({CHECKSUM_ALGORITHMS})",
                name.escape_debug()
            )))
        }
    };
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .ok()
        .filter(|d| d.len() == len)
        .ok_or_else(|| {
            ApiError::bad_request(format!("the {name} digest must be {len} bytes in base64"))
        })?;
    Ok(Some(Checksum { algorithm, digest }))
}

/// A running digest of a chunk.
#[derive(Debug, Clone)]
pub enum Hasher {
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-256.
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// A fresh digest.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// The digest of everything added.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// An HTTP date (RFC 9110 IMF-fixdate) for `Upload-Expires`.
pub fn http_date(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn metadata_round_trips_and_refuses_garbage() {
        let h = headers(&[("upload-metadata", "title aGVsbG8gd29ybGQ=,empty, n w6k=")]);
        let m = metadata(&h).unwrap();
        assert_eq!(m["title"], "hello world");
        assert_eq!(m["empty"], "");
        assert_eq!(m["n"], "é");
        let back = encode_metadata(m.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(
            metadata(&headers(&[("upload-metadata", &back)])).unwrap(),
            m
        );
        for bad in [
            "title not-base64!",
            "a YQ==,a YQ==",
            "a YQ== extra",
            "a /w==",
            "a\tb YQ==",
        ] {
            assert!(
                metadata(&headers(&[("upload-metadata", bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn lengths_and_offsets_are_whole_numbers() {
        assert_eq!(
            creation_length(&headers(&[("upload-length", "10")])).unwrap(),
            Some(10)
        );
        assert_eq!(
            creation_length(&headers(&[("upload-defer-length", "1")])).unwrap(),
            None
        );
        for bad in [
            vec![],
            vec![("upload-length", "-1")],
            vec![("upload-length", "+1")],
            vec![("upload-length", "1e3")],
            vec![("upload-length", "99999999999999999999")],
            vec![("upload-length", "1"), ("upload-defer-length", "1")],
            vec![("upload-defer-length", "0")],
        ] {
            assert!(creation_length(&headers(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checksums_name_a_supported_algorithm() {
        let c = checksum(&headers(&[(
            "upload-checksum",
            "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha1);
        let mut h = Hasher::new(Algorithm::Sha1);
        h.update(b"hello world");
        assert_eq!(h.finish(), c.digest);
        for bad in [
            "md5 AAAA",
            "sha1",
            "sha1 short",
            "sha256 Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
        ] {
            assert!(
                checksum(&headers(&[("upload-checksum", bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_version_is_checked() {
        assert!(check_resumable(&headers(&[("tus-resumable", "1.0.0")])).is_ok());
        for bad in [vec![], vec![("tus-resumable", "0.2.2")]] {
            let e = check_resumable(&headers(&bad)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::PRECONDITION_FAILED);
        }
    }
}
