//! Project submissions: students hand in files for `project` lessons, instructors review them.
//!
//! An upload streams to a local staging directory ([`staging`]), each file is inspected
//! ([`inspect`]: the bytes decide the type; archives are opened and checked; images lose their
//! metadata) and scanned for malware when a scanner is configured, then stored under a key of
//! ours, and only then does one transaction make it a submission. Until that commit nothing
//! refers to the stored objects, and the [`janitor`] removes objects nothing refers to.
//!
//! Domain code only: the HTTP edge parses the multipart body into a [`Staging`].

pub mod inspect;
pub mod janitor;
pub mod scan;
pub mod slots;
pub mod staging;

mod model;
mod read;
mod review;
mod submit;

use std::sync::Arc;

use sea_orm::DbErr;

pub use self::{
    model::*,
    read::{ByteRange, Download, ListFilter},
    staging::{Staging, staging_root},
    submit::refusal,
};
use crate::{
    config::UploadLimits,
    infra::{db::Db, scanner::Scanner, storage::Storage},
    kernel::{facts::ReactionError, fields::FieldErrors},
};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("validation failed")]
    Validation(#[from] FieldErrors),
    #[error("not found")]
    NotFound,
    /// Over a size or count limit; `field` names what was too large.
    #[error("too large: {detail}")]
    TooLarge { field: String, detail: String },
    #[error("storage quota exceeded: {0}")]
    QuotaExceeded(String),
    /// A file whose type is not on the allow-list.
    #[error("unsupported file: {detail}")]
    Unsupported { field: String, detail: String },
    #[error("conflict: {1}")]
    Conflict(&'static str, String),
    /// A byte range outside the file; carries the file's size.
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// Too many uploads at once, for this student or this instance.
    #[error("busy")]
    Busy(slots::Busy),
    #[error("file storage unavailable")]
    StorageUnavailable(#[source] crate::infra::storage::StorageError),
    #[error("staging an upload")]
    Io(#[source] std::io::Error),
    #[error("database")]
    Db(#[from] DbErr),
    #[error("consequences of a submission")]
    Reaction(#[from] ReactionError),
}

impl From<crate::infra::storage::StorageError> for SubmitError {
    fn from(e: crate::infra::storage::StorageError) -> Self {
        match e {
            crate::infra::storage::StorageError::RangeNotSatisfiable { size } => SubmitError::RangeNotSatisfiable(size),
            other => SubmitError::StorageUnavailable(other),
        }
    }
}

pub(crate) fn field(f: impl Into<String>, m: impl Into<String>) -> SubmitError {
    FieldErrors::one(f, m).into()
}

pub struct SubmissionService {
    pub db: Db,
    pub reactor: Arc<dyn crate::kernel::facts::Reactor>,
    pub storage: Arc<Storage>,
    pub scanner: Arc<Scanner>,
    pub limits: UploadLimits,
    pub staging_root: std::path::PathBuf,
    pub slots: slots::Slots,
}

/// Where a file's bytes live in the store: our ids only, never a name a user chose.
pub fn object_key(file_id: uuid::Uuid) -> String {
    format!("{OBJECT_PREFIX}{}", file_id.simple())
}

pub const OBJECT_PREFIX: &str = "submissions/";
