//! Enrollment, lesson progress, rollups and streaks. Knows the database and the audit trail,
//! nothing of HTTP.

pub mod service;

pub use service::{ProgressError, ProgressService};
