//! Validation of catalog inputs: each failure names its field.

use super::CatalogError;
use crate::kernel::{
    fields::FieldErrors,
    input::{Slug, Title},
};

pub(super) const TITLE_MAX: usize = 200;
pub(super) const SUMMARY_MAX: usize = 2_000;
pub(super) const CONTENT_MAX: usize = 200_000;

pub fn validate_slug(slug: &str) -> Result<(), CatalogError> {
    Slug::parse(slug).map(drop).map_err(|e| FieldErrors::one("slug", e.to_string()).into())
}

pub(super) use crate::kernel::input::parse_text;

pub(super) fn parse_title(title: &str) -> Result<String, crate::kernel::input::InputError> {
    Title::parse(title, TITLE_MAX).map(Title::into_inner)
}

/// Opens the slot a new row takes in `parent`: the requested position (later rows move down;
/// one past the end or beyond is the end) or, when none is asked for, the end.
pub(super) async fn open_slot<C: sea_orm::ConnectionTrait>(
    db: &C,
    what: super::positions::Ordered,
    parent: uuid::Uuid,
    requested: Option<i32>,
) -> Result<i32, CatalogError> {
    let count = super::positions::count(db, what, parent).await?;
    let position = match requested {
        Some(pos) => validate_position(pos, count + 1)?,
        None => count + 1,
    };
    super::positions::shift(db, what, parent, position, 1).await?;
    Ok(position)
}

/// A 1-based position among `last` slots. Beyond the end means the end: a client that asks
/// for position 10 in a list of three wants it last, and only the server knows the count.
pub(super) fn validate_position(pos: i32, last: i32) -> Result<i32, CatalogError> {
    if pos < 1 {
        return Err(FieldErrors::one("position", "must be at least 1").into());
    }
    Ok(pos.min(last))
}
