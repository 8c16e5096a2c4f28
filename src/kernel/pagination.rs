//! Cursor pagination shared by every list: `?limit=` (default 20, max 100) and `?cursor=`.

use serde::Serialize;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u64,
    /// Items strictly after this id in the list's order. Ids are UUIDv7, so id order is
    /// creation order and a cursor stays valid while rows are added.
    pub after: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("must be between 1 and 100")]
    Limit,
    #[error("is not a cursor returned by this API")]
    Cursor,
}

impl PageRequest {
    pub fn parse(limit: Option<u64>, cursor: Option<&str>) -> Result<PageRequest, (&'static str, PageError)> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(("limit", PageError::Limit));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(Uuid::parse_str(c).map_err(|_| ("cursor", PageError::Cursor))?),
        };
        Ok(PageRequest { limit, after })
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only says "there is more".
    pub fn from_rows(mut rows: Vec<T>, req: PageRequest, id_of: impl Fn(&T) -> Uuid) -> Page<T> {
        let more = rows.len() as u64 > req.limit;
        rows.truncate(req.limit as usize);
        let next_cursor = if more { rows.last().map(|r| id_of(r).to_string()) } else { None };
        Page { items: rows, next_cursor }
    }
}
