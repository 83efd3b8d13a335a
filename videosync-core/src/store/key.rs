//! [`ObjectKey`]: the validated name of an object.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest key in bytes; S3's own limit.
pub const MAX_KEY_LEN: usize = 1024;

/// Longest segment of a key in bytes: the longest file name common
/// filesystems (ext4, XFS, btrfs, APFS) take, so that a key valid on S3 is
/// valid on the filesystem backend too.
pub const MAX_SEGMENT_LEN: usize = 255;

/// The name of an object: `/`-separated segments, safe on every backend.
///
/// A key is checked once, when it is made, so that no backend has to
/// second-guess it. It has no leading or trailing `/`, no empty segment, no
/// `.` or `..` segment, no backslash, no NUL or other control character, no
/// segment longer than [`MAX_SEGMENT_LEN`] bytes, and at most
/// [`MAX_KEY_LEN`] bytes. A filesystem backend can therefore map a
/// key under its root without ever leaving it.
///
/// # Examples
/// ```
/// use videosync_core::ObjectKey;
///
/// let key = ObjectKey::parse("videos/7f3a/720p/seg-00001.m4s")?;
/// assert_eq!(key.file_name(), "seg-00001.m4s");
/// assert!(ObjectKey::parse("../etc/passwd").is_err());
/// assert!(ObjectKey::parse("/abs").is_err());
/// # Ok::<(), videosync_core::KeyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

/// Why a string is not an [`ObjectKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("object key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] bytes.
    #[error("object key is {len} bytes long; the limit is {MAX_KEY_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The key starts or ends with `/`, or has `//`.
    #[error("object key `{key}` has an empty segment (leading, trailing or double `/`)")]
    EmptySegment {
        /// The key, escaped.
        key: String,
    },
    /// The key has a `.` or `..` segment.
    #[error("object key `{key}` has a `.` or `..` segment")]
    DotSegment {
        /// The key, escaped.
        key: String,
    },
    /// A segment is longer than [`MAX_SEGMENT_LEN`] bytes.
    #[error("object key `{key}` has a segment of {len} bytes; the limit is {MAX_SEGMENT_LEN}")]
    SegmentTooLong {
        /// The key, escaped.
        key: String,
        /// The long segment's length in bytes.
        len: usize,
    },
    /// The key has a control character or a backslash.
    #[error("object key `{key}` has a forbidden character {ch:?}")]
    ForbiddenChar {
        /// The key, escaped.
        key: String,
        /// The first forbidden character.
        ch: char,
    },
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::invalid_input(e.to_string())
    }
}

impl ObjectKey {
    /// Checks `s` and makes it a key.
    ///
    /// # Errors
    /// A [`KeyError`] saying which rule `s` breaks.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        if s.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong { len: s.len() });
        }
        let shown = || s.escape_debug().to_string();
        if let Some(ch) = s.chars().find(|c| c.is_control() || *c == '\\') {
            return Err(KeyError::ForbiddenChar { key: shown(), ch });
        }
        for segment in s.split('/') {
            match segment {
                "" => return Err(KeyError::EmptySegment { key: shown() }),
                "." | ".." => return Err(KeyError::DotSegment { key: shown() }),
                long if long.len() > MAX_SEGMENT_LEN => {
                    return Err(KeyError::SegmentTooLong {
                        key: shown(),
                        len: long.len(),
                    })
                }
                _ => {}
            }
        }
        Ok(ObjectKey(s.to_owned()))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// This key with `segment` (itself possibly several segments) appended.
    ///
    /// # Errors
    /// A [`KeyError`] when the result is not a valid key.
    pub fn join(&self, segment: &str) -> Result<ObjectKey, KeyError> {
        ObjectKey::parse(&format!("{}/{}", self.0, segment))
    }

    /// Whether this key lies under `prefix`, segment-wise: `a/b/c` lies under
    /// `a/b` and `a`, but not under `a/bc` nor under itself.
    pub fn starts_with(&self, prefix: &ObjectKey) -> bool {
        self.0.len() > prefix.0.len()
            && self.0.starts_with(&prefix.0)
            && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        ObjectKey::parse(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = KeyError;

    fn try_from(s: String) -> Result<Self, KeyError> {
        ObjectKey::parse(&s)
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ObjectKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for ok in [
            "a",
            "videos/abc/720p/seg-00001.m4s",
            ".hidden/file",
            "a..b/c",
            "unicodé/ファイル",
            "with space/and+plus",
        ] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_hostile_keys_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("/etc/passwd", "empty segment"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("../a", "`.` or `..`"),
            ("a/../../b", "`.` or `..`"),
            ("a/./b", "`.` or `..`"),
            ("a\0b", "forbidden character"),
            ("a\nb", "forbidden character"),
            ("a\\..\\b", "forbidden character"),
        ];
        for (input, why) in cases {
            let err = ObjectKey::parse(input).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(why)),
                "{input:?}: {err:?}"
            );
        }
        let segment = "s".repeat(MAX_SEGMENT_LEN);
        assert!(ObjectKey::parse(&format!("a/{segment}")).is_ok());
        assert_eq!(
            ObjectKey::parse(&format!("a/{segment}x/b")),
            Err(KeyError::SegmentTooLong {
                key: format!("a/{segment}x/b"),
                len: MAX_SEGMENT_LEN + 1
            })
        );
        let long = ["a"; MAX_KEY_LEN / 2 + 1].join("/");
        assert_eq!(
            ObjectKey::parse(&long),
            Err(KeyError::TooLong {
                len: MAX_KEY_LEN + 1
            })
        );
    }

    #[test]
    fn prefix_is_segment_wise() {
        let k = |s: &str| ObjectKey::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(k("a/b/c").starts_with(&k("a/b")));
        assert!(k("a/b/c").starts_with(&k("a")));
        assert!(!k("a/bc").starts_with(&k("a/b")));
        assert!(!k("a/b").starts_with(&k("a/b")));
    }

    #[test]
    fn deserialize_checks() {
        let bad: Result<ObjectKey, _> = serde_json::from_str("\"../x\"");
        assert!(bad.is_err());
        let good: Result<ObjectKey, _> = serde_json::from_str("\"x/y\"");
        assert!(good.is_ok());
    }
}
