//! Enrollment, lesson progress, rollups and streaks. Knows the database and the audit trail,
//! nothing of HTTP.
//!
//! Progress only ever moves forward: every write is one UPSERT whose conflict branch takes the
//! maximum of the stored and the reported values, so retries, duplicates and two devices
//! racing on one lesson all end in the same row, in any order.

pub mod access;
mod model;
mod read;
mod store;
mod write;

use std::sync::Arc;

use sea_orm::DbErr;

pub use model::*;

use crate::{
    infra::db::Db,
    kernel::{
        facts::{ReactionError, Reactor},
        fields::FieldErrors,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("validation failed")]
    Validation(#[from] FieldErrors),
    /// Unknown, not visible, or not enrolled: indistinguishable on purpose.
    #[error("not found")]
    NotFound,
    #[error("database")]
    Db(#[from] DbErr),
    #[error("consequences of progress")]
    Reaction(#[from] ReactionError),
}

pub struct ProgressService {
    pub db: Db,
    /// Decides what follows each progress fact (audit, notifications, achievements, paths).
    pub reactor: Arc<dyn Reactor>,
}
