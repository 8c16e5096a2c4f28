//! An instructor's (or admin's) answer to a submission: approved, or changes requested with
//! feedback. Once per version: the answer is a conditional update, so two reviewers racing
//! cannot both answer.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{MAX_FEEDBACK_CHARS, ReviewInput, ReviewOutcome, SubmissionService, SubmissionView, SubmitError};
use crate::{
    catalog::access::is_owner_or_admin,
    entities::{
        course,
        enums::{ScanStatus, SubmissionStatus},
        lesson, submission, submission_file,
    },
    kernel::{
        context::{Principal, RequestContext},
        facts::{Fact, SubmissionReviewed},
        fields::FieldErrors,
        input::parse_text,
    },
};

impl SubmissionService {
    pub async fn review(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        id: Uuid,
        input: ReviewInput,
    ) -> Result<SubmissionView, SubmitError> {
        let mut errors = FieldErrors::new();
        let feedback = errors.check("feedback", parse_text(&input.feedback, MAX_FEEDBACK_CHARS));
        if feedback.as_deref().is_some_and(str::is_empty) {
            errors.push("feedback", "must not be empty");
        }
        let score = match input.score {
            Some(s) if !(0..=100).contains(&s) => {
                errors.push("score", "must be between 0 and 100");
                None
            }
            other => other.map(|s| s as i32),
        };
        errors.into_result()?;
        let feedback = feedback.expect("checked above");

        let txn = self.db.begin_write().await?;
        let s = submission::Entity::find_by_id(id).one(&*txn).await?.ok_or(SubmitError::NotFound)?;
        let c = course::Entity::find_by_id(s.course_id).one(&*txn).await?.ok_or(SubmitError::NotFound)?;
        if !is_owner_or_admin(c.instructor_id, p) {
            return Err(SubmitError::NotFound);
        }
        if s.status != SubmissionStatus::Submitted {
            return Err(SubmitError::Conflict("submission-not-reviewable", "this version was already answered".into()));
        }
        let unchecked = submission_file::Entity::find()
            .filter(submission_file::Column::SubmissionId.eq(s.id))
            .filter(submission_file::Column::ScanStatus.eq(ScanStatus::Pending))
            .count(&*txn)
            .await?;
        if unchecked > 0 {
            return Err(SubmitError::Conflict(
                "submission-not-reviewable",
                "some files are still waiting for their virus check".into(),
            ));
        }
        let status = match input.status {
            ReviewOutcome::Approved => SubmissionStatus::Approved,
            ReviewOutcome::ChangesRequested => SubmissionStatus::ChangesRequested,
        };
        let now = Utc::now();
        let updated = submission::Entity::update_many()
            .col_expr(submission::Column::Status, Expr::value(status))
            .col_expr(submission::Column::Feedback, Expr::value(Some(feedback.clone())))
            .col_expr(submission::Column::Score, Expr::value(score))
            .col_expr(submission::Column::ReviewedBy, Expr::value(Some(p.user_id)))
            .col_expr(submission::Column::ReviewedAt, Expr::value(Some(now)))
            .col_expr(submission::Column::UpdatedAt, Expr::value(now))
            .filter(submission::Column::Id.eq(s.id))
            .filter(submission::Column::Status.eq(SubmissionStatus::Submitted))
            .exec(&*txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(SubmitError::Conflict("submission-not-reviewable", "this version was already answered".into()));
        }
        let reviewed = submission::Model {
            status,
            feedback: Some(feedback),
            score,
            reviewed_by: Some(p.user_id),
            reviewed_at: Some(now),
            updated_at: now,
            ..s
        };
        let approved_projects = submission::Entity::find()
            .select_only()
            .column_as(Expr::col(submission::Column::LessonId).count_distinct(), "n")
            .filter(submission::Column::UserId.eq(reviewed.user_id))
            .filter(submission::Column::Status.eq(SubmissionStatus::Approved))
            .into_tuple::<i64>()
            .one(&*txn)
            .await?
            .unwrap_or(0) as u64;
        let lesson_title =
            lesson::Entity::find_by_id(reviewed.lesson_id).one(&*txn).await?.map(|l| l.title).unwrap_or_default();
        let fact = SubmissionReviewed { submission: reviewed, lesson_title, approved_projects };
        self.reactor.react(&txn, ctx, vec![Fact::SubmissionReviewed(fact)]).await?;
        txn.commit().await?;
        self.get(p, id).await
    }
}
