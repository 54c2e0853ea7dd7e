//! List pages (SPEC §6): `limit` (default 50, at most 500) and `cursor`, answered as
//! `{"items": [...], "next_cursor": "..."|null}`. Handlers fetch one row more than the limit;
//! that extra row tells whether a next page exists.

use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ApiError;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

/// The page size a request asks for: 1 to [`MAX_LIMIT`], as the API document says (a size
/// outside is refused rather than quietly changed, so the document and the server agree).
pub fn page_limit(asked: Option<u64>) -> Result<u64, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(limit @ 1..=MAX_LIMIT) => Ok(limit),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`limit` must be 1 to {MAX_LIMIT}, got {other}"
        ))),
    }
}

/// The time and id of a `<unix ms>.<id>` cursor (lists ordered by a time, then an id).
pub fn time_id_cursor(text: &str) -> Result<(i64, String), ApiError> {
    text.split_once('.')
        .filter(|(_, id)| !id.is_empty())
        .and_then(|(t, id)| Some((t.parse().ok()?, id.to_string())))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`cursor` `{text}` is not a cursor this API gave out"
            ))
        })
}

/// One page of a list, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass it back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A list answered whole (no cursor): `{"items": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

impl<T> Page<T> {
    /// Cuts `rows` (fetched with `limit + 1`) to `limit`; the last kept row gives the cursor.
    pub fn cut(mut rows: Vec<T>, limit: u64, cursor_of: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = more.then(|| rows.last().map(&cursor_of)).flatten();
        Page {
            items: rows,
            next_cursor,
        }
    }

    /// A list that is never cut: everything on one page.
    pub fn whole(items: Vec<T>) -> Page<T> {
        Page {
            items,
            next_cursor: None,
        }
    }

    /// The same page with each row turned into what the API shows.
    pub fn map<U>(self, item: impl Fn(&T) -> U) -> Page<U> {
        Page {
            items: self.items.iter().map(item).collect(),
            next_cursor: self.next_cursor,
        }
    }
}
