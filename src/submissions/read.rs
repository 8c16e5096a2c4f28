//! Reading submissions and their files: the student who handed them in, the course's
//! instructor and admins; everyone else gets a 404.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use uuid::Uuid;

use super::{SubmissionService, SubmissionView, SubmitError, VersionRef};
use crate::{
    catalog::access::is_owner_or_admin,
    entities::{course, enums::SubmissionStatus, submission, submission_file},
    infra::storage::StoredObject,
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        pagination::{Page, PageRequest},
    },
};

#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    pub status: Option<SubmissionStatus>,
    pub lesson_id: Option<Uuid>,
}

/// A requested byte range (inclusive ends, as ranges are spoken of), resolved against the
/// file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    From(u64),
    Between(u64, u64),
    Last(u64),
}

impl ByteRange {
    /// The half-open range of a file of `size` bytes, or `None` when none of it is inside.
    pub fn resolve(self, size: u64) -> Option<std::ops::Range<u64>> {
        let (start, end) = match self {
            ByteRange::From(start) => (start, size),
            ByteRange::Between(first, last) => (first, last.saturating_add(1).min(size)),
            ByteRange::Last(n) => (size.saturating_sub(n), size),
        };
        (start < end && start < size).then_some(start..end)
    }
}

/// A file to send: what the response headers need and the bytes.
pub struct Download {
    pub filename: String,
    pub content_type: String,
    pub sha256: String,
    pub object: StoredObject,
}

impl SubmissionService {
    /// Whether `p` may read submissions of `course_id`'s students: its instructor and admins.
    async fn staff_of<C: ConnectionTrait>(&self, db: &C, p: &Principal, course_id: Uuid) -> Result<bool, SubmitError> {
        let c = course::Entity::find_by_id(course_id).one(db).await?;
        Ok(c.is_some_and(|c| is_owner_or_admin(c.instructor_id, p)))
    }

    /// The submission if `p` may read it; whether `p` reads it as staff (not its student).
    async fn readable(&self, p: &Principal, id: Uuid) -> Result<(submission::Model, bool), SubmitError> {
        let s = submission::Entity::find_by_id(id).one(&self.db.conn).await?.ok_or(SubmitError::NotFound)?;
        if s.user_id == p.user_id {
            return Ok((s, false));
        }
        if self.staff_of(&self.db.conn, p, s.course_id).await? {
            return Ok((s, true));
        }
        Err(SubmitError::NotFound)
    }

    pub async fn get(&self, p: &Principal, id: Uuid) -> Result<SubmissionView, SubmitError> {
        let (s, _) = self.readable(p, id).await?;
        let files = files_of(&self.db.conn, &[s.id]).await?;
        let mut view = SubmissionView::new(&s, files.get(&s.id).map_or(&[][..], Vec::as_slice));
        view.versions = submission::Entity::find()
            .filter(submission::Column::UserId.eq(s.user_id))
            .filter(submission::Column::LessonId.eq(s.lesson_id))
            .order_by_asc(submission::Column::Version)
            .all(&self.db.conn)
            .await?
            .into_iter()
            .map(|v| VersionRef { id: v.id, version: v.version, status: v.status, created_at: v.created_at })
            .collect();
        Ok(view)
    }

    /// The caller's own submissions, newest first.
    pub async fn list_mine(
        &self,
        p: &Principal,
        filter: ListFilter,
        page: PageRequest,
    ) -> Result<Page<SubmissionView>, SubmitError> {
        let mut q = submission::Entity::find().filter(submission::Column::UserId.eq(p.user_id));
        q = apply(q, filter);
        let rows = page.newest_first(q, submission::Column::Id).all(&self.db.conn).await?;
        self.page_of(rows, page).await
    }

    /// A course's submissions for its instructor and admins, oldest first: the review queue
    /// is `?status=submitted`.
    pub async fn list_course(
        &self,
        p: &Principal,
        course_id: Uuid,
        filter: ListFilter,
        page: PageRequest,
    ) -> Result<Page<SubmissionView>, SubmitError> {
        if !self.staff_of(&self.db.conn, p, course_id).await? {
            return Err(SubmitError::NotFound);
        }
        let q = apply(submission::Entity::find().filter(submission::Column::CourseId.eq(course_id)), filter);
        let rows = page.oldest_first(q, submission::Column::Id).all(&self.db.conn).await?;
        self.page_of(rows, page).await
    }

    async fn page_of(
        &self,
        rows: Vec<submission::Model>,
        page: PageRequest,
    ) -> Result<Page<SubmissionView>, SubmitError> {
        let ids: Vec<Uuid> = rows.iter().map(|s| s.id).collect();
        let files = files_of(&self.db.conn, &ids).await?;
        let views =
            rows.iter().map(|s| SubmissionView::new(s, files.get(&s.id).map_or(&[][..], Vec::as_slice))).collect();
        Ok(Page::from_rows(views, page, |v| v.id))
    }

    /// A file's bytes (optionally a range). Files still waiting for their virus check, or
    /// refused by it, are not given out. Staff reading a student's file is audited.
    pub async fn download(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        file_id: Uuid,
        range: Option<ByteRange>,
    ) -> Result<Download, SubmitError> {
        let f = submission_file::Entity::find_by_id(file_id).one(&self.db.conn).await?.ok_or(SubmitError::NotFound)?;
        let (s, as_staff) = self.readable(p, f.submission_id).await?;
        if !f.scan_status.downloadable() {
            use crate::entities::enums::ScanStatus;
            let detail = if f.scan_status == ScanStatus::Infected {
                "this file was removed because the virus check found something harmful in it"
            } else if f.scan_status == ScanStatus::Unscannable {
                "this file was removed because the virus check could not check it"
            } else {
                "this file is still waiting for its virus check; try again in a few minutes"
            };
            return Err(SubmitError::Conflict("file-not-available", detail.into()));
        }
        let size = f.size as u64;
        let range = match range {
            None => None,
            Some(r) => Some(r.resolve(size).ok_or(SubmitError::RangeNotSatisfiable(size))?),
        };
        let object = self.storage.get(&f.object_key, range).await?;
        if as_staff {
            let txn = self.db.begin_write().await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("file.download", Some(p.user_id))
                    .target("file", f.id)
                    .details(json!({"submission_id": s.id, "student_id": s.user_id})),
            )
            .await?;
            txn.commit().await?;
        }
        Ok(Download { filename: f.filename, content_type: f.content_type, sha256: f.sha256, object })
    }
}

fn apply(mut q: sea_orm::Select<submission::Entity>, filter: ListFilter) -> sea_orm::Select<submission::Entity> {
    if let Some(status) = filter.status {
        q = q.filter(submission::Column::Status.eq(status));
    }
    if let Some(lesson_id) = filter.lesson_id {
        q = q.filter(submission::Column::LessonId.eq(lesson_id));
    }
    q
}

/// The files of `ids`, in their order, in one query.
async fn files_of<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<submission_file::Model>>, SubmitError> {
    let mut by_submission: HashMap<Uuid, Vec<submission_file::Model>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_submission);
    }
    let files = submission_file::Entity::find()
        .filter(submission_file::Column::SubmissionId.is_in(ids.iter().copied()))
        .order_by_asc(submission_file::Column::SubmissionId)
        .order_by_asc(submission_file::Column::Position)
        .all(db)
        .await?;
    for f in files {
        by_submission.entry(f.submission_id).or_default().push(f);
    }
    Ok(by_submission)
}
