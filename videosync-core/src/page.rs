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
    /// A page from `limit + 1` fetched rows: when the extra row is there, it
    /// is dropped and `next` is the cursor of the last item kept.
    pub fn from_overfetch(
        mut rows: Vec<T>,
        limit: usize,
        cursor_of: impl Fn(&T) -> Cursor,
    ) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page { items: rows, next }
    }

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

    /// A cursor from the fields that locate the next item (numbers and ids,
    /// none containing `:`).
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn from_fields(fields: &[&str]) -> Self {
        Cursor::new(fields.join(":"))
    }

    /// The fields, when there are exactly `n` of them.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for another count: the cursor came from
    /// another listing, or was made up.
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn fields(&self, n: usize) -> Result<Vec<&str>> {
        let fields: Vec<&str> = self.0.split(':').collect();
        if fields.len() == n {
            Ok(fields)
        } else {
            Err(self.foreign())
        }
    }

    /// The one field, read as a number.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the cursor does not hold exactly one number.
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn number(&self) -> Result<i64> {
        self.fields(1)?
            .first()
            .and_then(|f| f.parse::<i64>().ok())
            .ok_or_else(|| self.foreign())
    }

    fn foreign(&self) -> Error {
        Error::invalid_input(format!("`{self}` is not a cursor this listing gave out"))
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

/// Longest page a repository list answers, whatever the caller asks for.
pub const MAX_PAGE: usize = 200;

/// Page size when the caller names none.
pub const DEFAULT_PAGE: usize = 50;

/// Which page of a list to answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Where to continue: the `next` of the previous page, or `None` for the first.
    pub cursor: Option<Cursor>,
    /// How many at most ([`DEFAULT_PAGE`] when `None`, capped at [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        PageRequest {
            cursor: None,
            limit: Some(limit),
        }
    }

    /// The page after `cursor`.
    pub fn after(cursor: Cursor, limit: usize) -> Self {
        PageRequest {
            cursor: Some(cursor),
            limit: Some(limit),
        }
    }

    /// The page size to use: the request's, clamped to `1..=MAX_PAGE`.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
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
    fn fields_round_trip_and_foreign_cursors_are_refused() {
        let c = Cursor::from_fields(&["42"]);
        assert_eq!(
            c.to_string().parse::<Cursor>().unwrap().number().unwrap(),
            42
        );
        assert!(Cursor::from_fields(&["1", "2"]).number().is_err());
        assert!(Cursor::from_fields(&["abc"]).number().is_err());
        assert_eq!(
            Cursor::from_fields(&["7", "id"]).fields(2).unwrap(),
            ["7", "id"]
        );
        let page =
            Page::from_overfetch(vec![1, 2, 3], 2, |n| Cursor::from_fields(&[&n.to_string()]));
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next.unwrap().number().unwrap(), 2);
        assert!(
            Page::from_overfetch(vec![1], 2, |_| Cursor::from_fields(&[]))
                .next
                .is_none()
        );
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
