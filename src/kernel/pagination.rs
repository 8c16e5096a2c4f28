//! Cursor pagination shared by every list: `?limit=` (default 20, max 100) and `?cursor=`.

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
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
            None => None,
            // Only the hyphenated form the API hands out, so the documented pattern is the rule.
            Some(c) if c.len() == 36 => Some(Uuid::parse_str(c).map_err(|_| ("cursor", PageError::Cursor))?),
            Some(_) => return Err(("cursor", PageError::Cursor)),
        };
        Ok(PageRequest { limit, after })
    }
}

impl PageRequest {
    /// Keyset pagination over a UUIDv7 `id` column, oldest first: ordered by `id`, continuing
    /// after the cursor, one row more than the page (see [`Page::from_rows`]). The query is
    /// otherwise untouched, so the caller's filters still apply.
    pub fn oldest_first<Q, C>(self, q: Q, id: C) -> Q
    where
        Q: QueryFilter + QueryOrder + QuerySelect,
        C: ColumnTrait,
    {
        let q = q.order_by_asc(id).limit(self.limit + 1);
        match self.after {
            Some(after) => q.filter(id.gt(after)),
            None => q,
        }
    }

    /// As [`PageRequest::oldest_first`], newest first.
    pub fn newest_first<Q, C>(self, q: Q, id: C) -> Q
    where
        Q: QueryFilter + QueryOrder + QuerySelect,
        C: ColumnTrait,
    {
        let q = q.order_by_desc(id).limit(self.limit + 1);
        match self.after {
            Some(after) => q.filter(id.lt(after)),
            None => q,
        }
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

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, EntityTrait, QueryTrait};

    use super::*;
    use crate::entities::notification;

    #[test]
    fn keyset_orders_continues_after_the_cursor_and_fetches_one_more() {
        let after = Uuid::now_v7();
        let page = PageRequest { limit: 20, after: Some(after) };
        let sql = |q: sea_orm::Select<notification::Entity>| q.build(DbBackend::Sqlite).to_string();
        let old = sql(page.oldest_first(notification::Entity::find(), notification::Column::Id));
        assert!(old.contains(&format!("\"id\" > '{after}'")), "{old}");
        assert!(old.contains("ORDER BY \"notifications\".\"id\" ASC LIMIT 21"), "{old}");
        let new = sql(page.newest_first(notification::Entity::find(), notification::Column::Id));
        assert!(new.contains(&format!("\"id\" < '{after}'")), "{new}");
        assert!(new.contains("ORDER BY \"notifications\".\"id\" DESC LIMIT 21"), "{new}");
        let first =
            sql(PageRequest { limit: 5, after: None }
                .oldest_first(notification::Entity::find(), notification::Column::Id));
        assert!(!first.contains("WHERE"), "{first}");
    }
}
