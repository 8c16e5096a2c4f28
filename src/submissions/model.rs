//! What the API shows of submissions and what it accepts for a review.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::entities::{
    enums::{ScanStatus, SubmissionStatus},
    submission, submission_file,
};

pub const MAX_NOTE_CHARS: usize = 5000;
pub const MAX_FEEDBACK_CHARS: usize = 5000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileView {
    pub id: Uuid,
    /// The name the student gave the file; shown, never used as a path.
    pub filename: String,
    /// Bytes as stored (an image is re-encoded without its metadata, so it may differ from
    /// the upload).
    pub size: i64,
    /// Decided from the bytes, not from the name or the declared type.
    pub content_type: String,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// `pending` files are not downloadable until the virus check ran; `infected` ones never.
    pub scan_status: ScanStatus,
    /// Where the bytes are, for those allowed to read them.
    pub download_path: String,
}

impl From<&submission_file::Model> for FileView {
    fn from(f: &submission_file::Model) -> Self {
        FileView {
            id: f.id,
            filename: f.filename.clone(),
            size: f.size,
            content_type: f.content_type.clone(),
            sha256: f.sha256.clone(),
            scan_status: f.scan_status,
            download_path: format!("/api/v1/files/{}", f.id),
        }
    }
}

/// Another version of the same student's project for the same lesson.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionRef {
    pub id: Uuid,
    pub version: i32,
    pub status: SubmissionStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubmissionView {
    pub id: Uuid,
    pub lesson_id: Uuid,
    pub course_id: Uuid,
    pub user_id: Uuid,
    /// 1 for the first hand-in, one more for each resubmission.
    pub version: i32,
    /// `submitted` (waiting for review), `approved`, `changes_requested` (the student may hand
    /// in a new version), or `rejected` (a file carried malware; hand in again).
    pub status: SubmissionStatus,
    pub note: String,
    pub files: Vec<FileView>,
    pub feedback: Option<String>,
    /// 0 to 100, when the reviewer gave one.
    pub score: Option<i32>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub total_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every version of this project, oldest first (this one included). Filled on single
    /// reads; lists leave it empty.
    pub versions: Vec<VersionRef>,
}

impl SubmissionView {
    pub fn new(s: &submission::Model, files: &[submission_file::Model]) -> Self {
        SubmissionView {
            id: s.id,
            lesson_id: s.lesson_id,
            course_id: s.course_id,
            user_id: s.user_id,
            version: s.version,
            status: s.status,
            note: s.note.clone(),
            files: files.iter().map(FileView::from).collect(),
            feedback: s.feedback.clone(),
            score: s.score,
            reviewed_by: s.reviewed_by,
            reviewed_at: s.reviewed_at,
            total_bytes: s.total_bytes,
            created_at: s.created_at,
            updated_at: s.updated_at,
            versions: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    Approved,
    ChangesRequested,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    pub status: ReviewOutcome,
    /// What the student reads: 1 to 5000 characters.
    #[schema(schema_with = crate::kernel::input::schema::required_text::<5000>)]
    pub feedback: String,
    #[schema(minimum = 0, maximum = 100)]
    pub score: Option<i64>,
}
