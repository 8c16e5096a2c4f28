//! Validation of catalog inputs: each failure names its field.

use super::{CatalogError, invalid};

// ---- validation ----

pub fn validate_slug(slug: &str) -> Result<(), CatalogError> {
    let ok = (3..=64).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(invalid("slug", "must be 3 to 64 characters of a-z, 0-9 and '-'")) }
}

pub(super) fn validate_title(field: &str, title: &str) -> Result<String, CatalogError> {
    let t = title.trim();
    let n = t.chars().count();
    if n == 0 || n > 200 {
        return Err(invalid(field, "must be 1 to 200 characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(t.to_string())
}

pub(super) fn validate_text(field: &str, text: &str, max: usize) -> Result<String, CatalogError> {
    if text.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    // Line breaks and tabs are normal in markdown; other control characters are not.
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(text.to_string())
}

pub(super) fn validate_position(pos: i32, max: i32) -> Result<i32, CatalogError> {
    if (1..=max).contains(&pos) { Ok(pos) } else { Err(invalid("position", format!("must be between 1 and {max}"))) }
}

/// Collects every field error of an input at once, so the client fixes them in one go.
pub(super) fn collect(results: Vec<Result<(), CatalogError>>) -> Result<(), CatalogError> {
    let errors: Vec<_> = results
        .into_iter()
        .filter_map(Result::err)
        .flat_map(|e| match e {
            CatalogError::Validation(v) => v,
            _ => vec![],
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(CatalogError::Validation(errors)) }
}

pub(super) const SUMMARY_MAX: usize = 2_000;
pub(super) const CONTENT_MAX: usize = 200_000;
