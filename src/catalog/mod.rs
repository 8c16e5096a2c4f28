//! Courses, modules and lessons: authoring and browsing. Knows the database and the audit
//! trail, nothing of HTTP.

pub mod access;
pub mod positions;
pub mod service;

pub use service::{CatalogCache, CatalogError, CatalogService};
