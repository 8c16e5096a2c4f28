//! Malware scans that could not run during the upload (the scanner was down or timed out):
//! each such file is `pending`, not downloadable, and retried from the store with a growing
//! delay until the scanner gives a verdict. A lease keeps two instances off the same file.

use std::time::Duration;

use chrono::Utc;
use futures_util::TryStreamExt;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{SubmissionService, SubmitError};
use crate::{
    entities::{
        enums::{ScanStatus, SubmissionStatus},
        submission, submission_file,
    },
    infra::scanner::Verdict,
    kernel::{
        context::RequestContext,
        facts::{Fact, FileScanned},
    },
};

/// Files claimed per pass.
const BATCH: u64 = 20;
/// Longer than a scan of the largest file can take; a crashed scanner's claim lapses then.
const LEASE: Duration = Duration::from_secs(600);
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Attempts before a file counts as one the scanner cannot check (about a day of retries once
/// the delay reached an hour): the student hears so and may hand in again.
pub const MAX_ATTEMPTS: i32 = 30;

impl SubmissionService {
    /// One pass over the due pending files; returns how many got a verdict.
    pub async fn retry_scans(&self) -> Result<usize, SubmitError> {
        if !self.scanner.enabled() {
            return Ok(0);
        }
        let now = Utc::now();
        let due = submission_file::Entity::find()
            .filter(submission_file::Column::ScanStatus.eq(ScanStatus::Pending))
            .filter(submission_file::Column::ScanNextAt.lte(now))
            .filter(
                Condition::any()
                    .add(submission_file::Column::ScanLockedUntil.is_null())
                    .add(submission_file::Column::ScanLockedUntil.lt(now)),
            )
            .order_by_asc(submission_file::Column::ScanNextAt)
            .limit(BATCH)
            .all(&self.db.conn)
            .await?;
        let mut verdicts = 0;
        for file in due {
            if !self.claim(&file).await? {
                continue;
            }
            match self.scan_stored(&file).await {
                Ok(verdict) => {
                    self.record_verdict(file, verdict).await?;
                    verdicts += 1;
                }
                Err(why) if file.scan_attempts.saturating_add(1) >= MAX_ATTEMPTS => {
                    tracing::warn!(file_id = %file.id, error = %why, "malware scan failed too often; the file is refused");
                    self.record_outcome(file, ScanStatus::Unscannable, None).await?;
                    verdicts += 1;
                }
                Err(why) => {
                    tracing::warn!(file_id = %file.id, error = %why, "malware scan retry failed; trying again later");
                    self.postpone(&file).await?;
                }
            }
        }
        Ok(verdicts)
    }

    /// Takes the file for this instance unless another took it meanwhile.
    async fn claim(&self, file: &submission_file::Model) -> Result<bool, SubmitError> {
        let now = Utc::now();
        let txn = self.db.begin_write().await?;
        let taken = submission_file::Entity::update_many()
            .col_expr(submission_file::Column::ScanLockedUntil, Expr::value(Some(now + LEASE)))
            .filter(submission_file::Column::Id.eq(file.id))
            .filter(submission_file::Column::ScanStatus.eq(ScanStatus::Pending))
            .filter(
                Condition::any()
                    .add(submission_file::Column::ScanLockedUntil.is_null())
                    .add(submission_file::Column::ScanLockedUntil.lt(now)),
            )
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(taken.rows_affected == 1)
    }

    async fn scan_stored(&self, file: &submission_file::Model) -> Result<Verdict, String> {
        let object = self.storage.get(&file.object_key, None).await.map_err(|e| e.to_string())?;
        let reader = tokio_util::io::StreamReader::new(object.stream.map_err(std::io::Error::other));
        self.scanner.scan(reader).await.map_err(|e| e.to_string())
    }

    async fn postpone(&self, file: &submission_file::Model) -> Result<(), SubmitError> {
        let attempts = file.scan_attempts.saturating_add(1);
        let delay = self.limits.scan_retry_interval.saturating_mul(1 << attempts.clamp(0, 6) as u32).min(MAX_DELAY);
        let txn = self.db.begin_write().await?;
        submission_file::Entity::update_many()
            .col_expr(submission_file::Column::ScanAttempts, Expr::value(attempts))
            .col_expr(
                submission_file::Column::ScanNextAt,
                Expr::value(Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default())),
            )
            .col_expr(submission_file::Column::ScanLockedUntil, Expr::value(None::<chrono::DateTime<Utc>>))
            .filter(submission_file::Column::Id.eq(file.id))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn record_verdict(&self, file: submission_file::Model, verdict: Verdict) -> Result<(), SubmitError> {
        match verdict {
            Verdict::Clean => self.record_outcome(file, ScanStatus::Clean, None).await,
            Verdict::Infected { signature } => {
                self.record_outcome(file, ScanStatus::Infected, Some(signature.chars().take(200).collect())).await
            }
        }
    }

    async fn record_outcome(
        &self,
        file: submission_file::Model,
        status: ScanStatus,
        signature: Option<String>,
    ) -> Result<(), SubmitError> {
        let txn = self.db.begin_write().await?;
        let written = submission_file::Entity::update_many()
            .col_expr(submission_file::Column::ScanStatus, Expr::value(status))
            .col_expr(submission_file::Column::ScanSignature, Expr::value(signature.clone()))
            .col_expr(submission_file::Column::ScanAttempts, Expr::value(file.scan_attempts.saturating_add(1)))
            .col_expr(submission_file::Column::ScanNextAt, Expr::value(None::<chrono::DateTime<Utc>>))
            .col_expr(submission_file::Column::ScanLockedUntil, Expr::value(None::<chrono::DateTime<Utc>>))
            .filter(submission_file::Column::Id.eq(file.id))
            .filter(submission_file::Column::ScanStatus.eq(ScanStatus::Pending))
            .exec(&*txn)
            .await?;
        if written.rows_affected == 0 {
            // Another instance gave the verdict first (its lease lapsed meanwhile).
            return Ok(());
        }
        let mut rejected = false;
        if status.refused() {
            // Review waits for every verdict, so the submission is still `submitted` here.
            rejected = submission::Entity::update_many()
                .col_expr(submission::Column::Status, Expr::value(SubmissionStatus::Rejected))
                .col_expr(submission::Column::TotalBytes, Expr::col(submission::Column::TotalBytes).sub(file.size))
                .col_expr(submission::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(submission::Column::Id.eq(file.submission_id))
                .filter(submission::Column::Status.eq(SubmissionStatus::Submitted))
                .exec(&*txn)
                .await?
                .rows_affected
                == 1;
            let storage = self.storage.clone();
            let key = file.object_key.clone();
            txn.on_commit(async move {
                if let Err(e) = storage.delete(&key).await {
                    tracing::warn!(error = %e, "could not delete an infected file; it stays unreachable");
                }
            });
        }
        let submission =
            submission::Entity::find_by_id(file.submission_id).one(&*txn).await?.ok_or(SubmitError::NotFound)?;
        let file = submission_file::Model { scan_status: status, scan_signature: signature, ..file };
        let fact = FileScanned { file, submission, rejected };
        self.reactor.react(&txn, &RequestContext::default(), vec![Fact::FileScanned(fact)]).await?;
        txn.commit().await?;
        Ok(())
    }
}
