//! List pages (SPEC §6): `limit` (default 50, at most 500) and `cursor`, answered as
//! `{"items": [...], "next_cursor": "..."|null}`. Handlers fetch one row more than the limit;
//! that extra row tells whether a next page exists.

use serde_json::{Value, json};

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

/// The page size a request asks for, within bounds.
pub fn page_limit(asked: Option<u64>) -> u64 {
    asked.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// One page of rows and the cursor of the next.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
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

    pub fn into_json(self, item: impl Fn(&T) -> Value) -> Value {
        let items: Vec<Value> = self.items.iter().map(item).collect();
        json!({ "items": items, "next_cursor": self.next_cursor })
    }
}
