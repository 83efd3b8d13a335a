//! Cursor pagination: [`Page`] and the opaque [`Cursor`] that leads to the
//! next one.
//!
//! A listing that can grow answers a page at a time. The caller passes the
//! `next` cursor of one page to get the page after it; `next: None` means
//! the listing has no more items (at the time of the call). A cursor is
//! opaque: it can travel through a URL or a JSON body and come back, but only
//! the listing that made it can read it, and a cursor that was altered is
//! [`Error::InvalidInput`] there.
//!
//! # Examples
//! ```
//! use videosync_core::page::Cursor;
//!
//! // A cursor crosses the wire as text and comes back as itself.
//! # let cursor: Cursor = "3132".parse()?;
//! let text = cursor.to_string();
//! assert_eq!(text.parse::<Cursor>()?, cursor);
//! # Ok::<(), videosync_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Most items a page may hold; larger limits are cut to this.
pub const MAX_PAGE_LEN: usize = 1000;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Where the next page starts, or `None` when this page is the last.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// A page of `items` with no page after it.
    pub fn last(items: Vec<T>) -> Self {
        Page { items, next: None }
    }

    /// The same page with its items mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// A position in a listing, opaque to callers.
///
/// Its text form (`Display`/`FromStr`, and serde) is lowercase hexadecimal,
/// safe in URLs and JSON. Listings build and read cursors inside the crate;
/// from outside, a cursor can only be passed back.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor(String);

impl Cursor {
    /// A cursor holding `position` (a listing's own encoding of where it
    /// stopped).
    #[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
    pub(crate) fn new(position: impl Into<String>) -> Self {
        Cursor(position.into())
    }

    /// The position the listing put in.
    #[cfg_attr(not(any(feature = "sql", feature = "redis")), allow(dead_code))]
    pub(crate) fn position(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({self})")
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid_input(format!("`{}` is not a page cursor", s.escape_debug()));
        if s.len() % 2 != 0 || s.len() > 2048 {
            return Err(bad());
        }
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<u8>>>()?;
        String::from_utf8(bytes).map(Cursor).map_err(|_| bad())
    }
}

impl TryFrom<String> for Cursor {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.to_string()
    }
}

/// Checks a page limit: at least 1, cut to [`MAX_PAGE_LEN`].
///
/// # Errors
/// [`Error::InvalidInput`] for a limit of 0 (a page that can hold nothing
/// would never move forward).
pub fn check_limit(limit: usize) -> Result<usize> {
    if limit == 0 {
        return Err(Error::invalid_input(
            "a page limit of 0 can list nothing; ask for at least 1 item",
        ));
    }
    Ok(limit.min(MAX_PAGE_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_as_text_and_json() {
        let c = Cursor::new("17:0042:ü");
        let text = c.to_string();
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
        assert_eq!(text.parse::<Cursor>().unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), c);
        assert_eq!(c.position(), "17:0042:ü");
    }

    #[test]
    fn altered_cursors_are_invalid_input() {
        for bad in ["1", "zz", "ff", "c3"] {
            let err = bad.parse::<Cursor>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(serde_json::from_str::<Cursor>("\"xyz\"").is_err());
    }

    #[test]
    fn limits() {
        assert!(check_limit(0).is_err());
        assert_eq!(check_limit(5).unwrap(), 5);
        assert_eq!(check_limit(usize::MAX).unwrap(), MAX_PAGE_LEN);
    }
}
