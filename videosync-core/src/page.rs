//! Cursor pagination: a [`Page`] of items and an opaque [`Cursor`] to the next.
//!
//! A cursor is a position, not an offset: items inserted before it do not
//! shift what the next page holds. Callers treat it as an opaque string
//! (it travels through URLs as `?cursor=`), and a backend decodes what it
//! encoded itself; a cursor that was tampered with is [`Error::InvalidInput`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest page any list answers, whatever the caller asks for.
pub const MAX_PAGE: usize = 200;

/// Page size when the caller names none.
pub const DEFAULT_PAGE: usize = 50;

/// An opaque position in a list: `v1.` followed by the backend's fields,
/// separated by `.`, each URL-safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor from the fields that locate the next item (each must be
    /// URL-safe text without `.`: numbers and ids).
    pub fn from_fields(fields: &[&str]) -> Self {
        Cursor(format!("v1.{}", fields.join(".")))
    }

    /// A cursor a caller sent back, checked for shape only.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when it is not one of ours.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = s.len() <= 256
            && s.starts_with("v1.")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok {
            Ok(Cursor(s.to_owned()))
        } else {
            Err(invalid(s))
        }
    }

    /// The fields, when there are exactly `n` of them.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for another count.
    pub fn fields(&self, n: usize) -> Result<Vec<&str>> {
        let fields: Vec<&str> = self.0.strip_prefix("v1.").unwrap_or("").split('.').collect();
        if fields.len() == n {
            Ok(fields)
        } else {
            Err(invalid(&self.0))
        }
    }

    /// The one field, read as a number.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the cursor does not hold exactly one number.
    pub fn number(&self) -> Result<i64> {
        let fields = self.fields(1)?;
        fields
            .first()
            .and_then(|f| f.parse::<i64>().ok())
            .ok_or_else(|| invalid(&self.0))
    }

    /// The cursor as sent over the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(s: &str) -> Error {
    Error::invalid_input(format!(
        "`{}` is not a cursor this list gave out",
        s.chars().take(64).collect::<String>().escape_debug()
    ))
}

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

/// Items of a list and where the next page starts (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// This page's items, in the list's order.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` when this is the last.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// A page from `limit + 1` fetched rows: when the extra row is there, it is
    /// dropped and `next` is the cursor of the last item kept.
    pub fn from_overfetch(mut rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> Cursor) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(cursor_of) } else { None };
        Page { items: rows, next }
    }

    /// The same page with each item mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = Cursor::from_fields(&["42"]);
        assert_eq!(Cursor::parse(c.as_str()).unwrap().number().unwrap(), 42);
        assert!(Cursor::parse("v2.1").is_err());
        assert!(Cursor::parse("v1.1;drop").is_err());
        assert!(Cursor::parse(&format!("v1.{}", "9".repeat(300))).is_err());
        assert!(Cursor::parse("v1.abc").unwrap().number().is_err());
        assert!(Cursor::parse("v1.1.2").unwrap().number().is_err());
    }

    #[test]
    fn overfetch_sets_next_only_when_more() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, |n| Cursor::from_fields(&[&n.to_string()]));
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next.unwrap().number().unwrap(), 2);
        let page = Page::from_overfetch(vec![1, 2], 2, |n| Cursor::from_fields(&[&n.to_string()]));
        assert!(page.next.is_none());
    }
}
