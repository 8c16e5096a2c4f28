//! Handing in a project: who may, the checks every file passes, and the one transaction that
//! turns stored objects into a submission.

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};
use uuid::Uuid;

use super::{
    MAX_NOTE_CHARS, Staging, SubmissionService, SubmissionView, SubmitError, field,
    inspect::{self, ArchiveLimits, Refusal},
    object_key,
    staging::{display, megabytes},
};
use crate::{
    entities::{
        enrollment,
        enums::{LessonKind, ScanStatus, SubmissionStatus},
        lesson, submission, submission_file, user,
    },
    infra::{db::is_unique_violation, scanner::Verdict},
    kernel::{
        context::{Principal, RequestContext, Role},
        facts::{Fact, SubmissionCreated},
        input::parse_text,
    },
};

/// A file that passed inspection, on its way to the store.
struct Prepared {
    id: Uuid,
    filename: String,
    content_type: &'static str,
    path: std::path::PathBuf,
    size: u64,
    sha256: String,
    scan: ScanStatus,
    signature: Option<String>,
}

impl SubmissionService {
    /// Whether `p` may hand in a project for `lesson_id` now: asked before the body is read,
    /// so a refused upload costs the client a round trip, not a 100 MB transfer.
    pub async fn may_submit(&self, p: &Principal, lesson_id: Uuid) -> Result<(), SubmitError> {
        self.next_version(&self.db.conn, p, lesson_id).await.map(drop)
    }

    /// The lesson and the version a new hand-in would get. Only an enrolled student may hand
    /// in, only for a project lesson, and only when the previous version is not waiting for
    /// review nor approved.
    async fn next_version<C: ConnectionTrait>(
        &self,
        db: &C,
        p: &Principal,
        lesson_id: Uuid,
    ) -> Result<(lesson::Model, i32), SubmitError> {
        if p.role != Role::Student {
            return Err(SubmitError::NotFound);
        }
        let lesson = lesson::Entity::find_by_id(lesson_id).one(db).await?.ok_or(SubmitError::NotFound)?;
        let enrolled = enrollment::Entity::find()
            .filter(enrollment::Column::UserId.eq(p.user_id))
            .filter(enrollment::Column::CourseId.eq(lesson.course_id))
            .one(db)
            .await?
            .is_some();
        if !enrolled {
            return Err(SubmitError::NotFound);
        }
        if lesson.kind != LessonKind::Project {
            return Err(SubmitError::Conflict("not-a-project", "this lesson takes no project files".into()));
        }
        let latest = submission::Entity::find()
            .filter(submission::Column::UserId.eq(p.user_id))
            .filter(submission::Column::LessonId.eq(lesson_id))
            .order_by_desc(submission::Column::Version)
            .one(db)
            .await?;
        let version = match latest {
            None => 1,
            Some(s) => match s.status {
                SubmissionStatus::Submitted => {
                    return Err(SubmitError::Conflict(
                        "submission-awaiting-review",
                        "your last version is waiting for review; you can hand in again if changes are requested"
                            .into(),
                    ));
                }
                SubmissionStatus::Approved => {
                    return Err(SubmitError::Conflict(
                        "submission-approved",
                        "this project is already approved".into(),
                    ));
                }
                SubmissionStatus::ChangesRequested | SubmissionStatus::Rejected => s.version + 1,
            },
        };
        Ok((lesson, version))
    }

    /// Bytes the student's stored files take (files refused as infected were never stored).
    async fn used_bytes<C: ConnectionTrait>(&self, db: &C, user_id: Uuid) -> Result<u64, SubmitError> {
        // PostgreSQL sums a BIGINT as NUMERIC: cast back so both backends decode an i64.
        let used: Option<i64> = submission_file::Entity::find()
            .select_only()
            .column_as(Expr::cust("CAST(COALESCE(SUM(size), 0) AS BIGINT)"), "used")
            .filter(submission_file::Column::UserId.eq(user_id))
            .filter(submission_file::Column::ScanStatus.is_not_in([ScanStatus::Infected, ScanStatus::Unscannable]))
            .into_tuple::<i64>()
            .one(db)
            .await?;
        Ok(used.unwrap_or(0).max(0) as u64)
    }

    fn check_quota(&self, used: u64, adding: u64) -> Result<(), SubmitError> {
        if used + adding > self.limits.quota_bytes {
            let left = self.limits.quota_bytes.saturating_sub(used);
            return Err(SubmitError::QuotaExceeded(format!(
                "your projects may take {} in all and {} are left",
                super::staging::megabytes(self.limits.quota_bytes),
                super::staging::megabytes(left)
            )));
        }
        Ok(())
    }

    /// Hands in the staged files. Nothing partial is kept: a refusal at any step leaves no
    /// row, and objects already stored are deleted (or, if that fails too, swept later).
    pub async fn submit(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        lesson_id: Uuid,
        staging: Staging,
        note: &str,
    ) -> Result<SubmissionView, SubmitError> {
        let note = parse_text(note, MAX_NOTE_CHARS).map_err(|m| field("note", m))?;
        if staging.files().is_empty() {
            return Err(field("files", "hand in at least one file"));
        }
        self.next_version(&self.db.conn, p, lesson_id).await?;
        self.check_quota(self.used_bytes(&self.db.conn, p.user_id).await?, staging.total_bytes())?;
        let mut prepared = self.inspect_all(&staging).await?;
        self.scan_all(&mut prepared).await?;
        let mut stored = Vec::new();
        for f in prepared.iter().filter(|f| f.scan != ScanStatus::Infected) {
            let key = object_key(f.id);
            if let Err(e) = self.storage.put_file(&key, &f.path).await {
                self.forget(&stored).await;
                return Err(e.into());
            }
            stored.push(key);
        }
        let committed = self.commit(ctx, p, lesson_id, note, &prepared).await;
        if committed.is_err() {
            self.forget(&stored).await;
        }
        drop(staging);
        committed
    }

    async fn inspect_all(&self, staging: &Staging) -> Result<Vec<Prepared>, SubmitError> {
        let archive = ArchiveLimits {
            max_entries: self.limits.zip_max_entries,
            max_total_uncompressed: self.limits.zip_max_uncompressed_bytes,
            max_ratio: self.limits.zip_max_ratio,
        };
        let mut prepared = Vec::with_capacity(staging.files().len());
        for (index, f) in staging.files().iter().enumerate() {
            let (path, name, limits) = (f.path.clone(), f.declared_name.clone(), archive);
            let turn = self.slots.inspection().await;
            let inspected = tokio::task::spawn_blocking(move || inspect::inspect(&path, &name, &limits))
                .await
                .map_err(|e| SubmitError::Io(std::io::Error::other(e)))?;
            drop(turn);
            let inspected = inspected.map_err(|r| refusal(format!("files[{index}]"), r))?;
            let (path, size, sha256) = match inspected.rewritten {
                Some(rewritten) => {
                    let (size, sha256) = hash_file(rewritten.clone()).await?;
                    (rewritten, size, sha256)
                }
                None => (f.path.clone(), f.size, f.sha256.clone()),
            };
            // A re-encoded picture can be larger than the upload: the limits hold for what is stored.
            if size > self.limits.max_file_bytes {
                return Err(SubmitError::TooLarge {
                    field: format!("files[{index}]"),
                    detail: format!(
                        "{} is larger than {}",
                        display(&f.declared_name),
                        megabytes(self.limits.max_file_bytes)
                    ),
                });
            }
            prepared.push(Prepared {
                id: Uuid::now_v7(),
                filename: inspected.filename,
                content_type: inspected.content_type,
                path,
                size,
                sha256,
                scan: ScanStatus::NotScanned,
                signature: None,
            });
        }
        if prepared.iter().map(|f| f.size).sum::<u64>() > self.limits.max_submission_bytes {
            return Err(SubmitError::TooLarge {
                field: "files".into(),
                detail: format!("the files together are larger than {}", megabytes(self.limits.max_submission_bytes)),
            });
        }
        Ok(prepared)
    }

    /// A scanner that cannot answer leaves the file `pending` (retried later, not
    /// downloadable meanwhile): never `clean` by default.
    async fn scan_all(&self, prepared: &mut [Prepared]) -> Result<(), SubmitError> {
        if !self.scanner.enabled() {
            return Ok(());
        }
        let mut reachable = true;
        for f in prepared.iter_mut() {
            // Once the scanner failed, the rest wait for the retry too: a hung scanner must not
            // spend the upload's whole deadline, one timeout per file.
            if !reachable {
                f.scan = ScanStatus::Pending;
                continue;
            }
            let file = tokio::fs::File::open(&f.path).await.map_err(SubmitError::Io)?;
            match self.scanner.scan(file).await {
                Ok(Verdict::Clean) => f.scan = ScanStatus::Clean,
                Ok(Verdict::Infected { signature }) => {
                    f.scan = ScanStatus::Infected;
                    f.signature = Some(signature.chars().take(200).collect());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "malware scan unavailable during upload; the file waits for a retry");
                    f.scan = ScanStatus::Pending;
                    reachable = false;
                }
            }
        }
        Ok(())
    }

    async fn commit(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        lesson_id: Uuid,
        note: String,
        prepared: &[Prepared],
    ) -> Result<SubmissionView, SubmitError> {
        let txn = self.db.begin_write().await?;
        // Still active: an upload can run for minutes, and a student deactivated meanwhile
        // hands in nothing.
        let mut owner = user::Entity::find_by_id(p.user_id).filter(user::Column::IsActive.eq(true));
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            // Serialises one student's uploads, so two racing for the last bytes of the quota
            // cannot both fit; SQLite's writer lock already does.
            owner = owner.lock_exclusive();
        }
        owner.one(&*txn).await?.ok_or(SubmitError::NotFound)?;
        let (lesson, version) = self.next_version(&*txn, p, lesson_id).await?;
        let adding: u64 = prepared.iter().filter(|f| f.scan != ScanStatus::Infected).map(|f| f.size).sum();
        self.check_quota(self.used_bytes(&*txn, p.user_id).await?, adding)?;
        let now = Utc::now();
        let infected = prepared.iter().any(|f| f.scan == ScanStatus::Infected);
        let s = submission::Model {
            id: Uuid::now_v7(),
            user_id: p.user_id,
            lesson_id,
            course_id: lesson.course_id,
            version,
            status: if infected { SubmissionStatus::Rejected } else { SubmissionStatus::Submitted },
            note,
            feedback: None,
            score: None,
            reviewed_by: None,
            reviewed_at: None,
            total_bytes: adding as i64,
            created_at: now,
            updated_at: now,
        };
        let inserted =
            submission::Entity::insert(submission::ActiveModel::from(s.clone())).exec_without_returning(&*txn).await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(SubmitError::Conflict(
                    "submission-in-progress",
                    "another hand-in of this project arrived at the same time".into(),
                ));
            }
            other => other?,
        };
        let files: Vec<submission_file::Model> = prepared
            .iter()
            .enumerate()
            .map(|(position, f)| submission_file::Model {
                id: f.id,
                submission_id: s.id,
                user_id: p.user_id,
                position: position as i32,
                filename: f.filename.clone(),
                size: f.size as i64,
                content_type: f.content_type.to_string(),
                sha256: f.sha256.clone(),
                object_key: object_key(f.id),
                scan_status: f.scan,
                scan_signature: f.signature.clone(),
                scan_attempts: 0,
                scan_next_at: (f.scan == ScanStatus::Pending).then_some(now),
                scan_locked_until: None,
                created_at: now,
            })
            .collect();
        submission_file::Entity::insert_many(files.iter().cloned().map(submission_file::ActiveModel::from))
            .exec_without_returning(&*txn)
            .await?;
        let view = SubmissionView::new(&s, &files);
        let fact = SubmissionCreated { submission: s, files, lesson_title: lesson.title };
        self.reactor.react(&txn, ctx, vec![Fact::SubmissionCreated(fact)]).await?;
        txn.commit().await?;
        Ok(view)
    }

    /// Best effort: what stays behind is swept by the janitor.
    pub(super) async fn forget(&self, keys: &[String]) {
        for key in keys {
            if let Err(e) = self.storage.delete(key).await {
                tracing::warn!(error = %e, "could not delete an object of a refused upload; the janitor will");
            }
        }
    }
}

/// An inspection's refusal of the file named `field` (`files[i]`), as the error the API gives.
pub fn refusal(field: String, r: Refusal) -> SubmitError {
    match r {
        Refusal::Unsupported { filename, reason } => {
            SubmitError::Unsupported { field, detail: format!("{}: {reason}", display(&filename)) }
        }
        Refusal::Invalid { filename, reason } => super::field(field, format!("{}: {reason}", display(&filename))),
        Refusal::Io { error, .. } => SubmitError::Io(error),
    }
}

async fn hash_file(path: std::path::PathBuf) -> Result<(u64, String), SubmitError> {
    tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha256};
        let mut file = std::fs::File::open(&path)?;
        let mut hash = Sha256::new();
        let size = std::io::copy(&mut file, &mut hash)?;
        Ok((size, hex::encode(hash.finalize())))
    })
    .await
    .map_err(|e| SubmitError::Io(std::io::Error::other(e)))?
    .map_err(SubmitError::Io)
}
