//! What follows progress: its audit rows, the live `progress.updated`, a stored
//! `course.completed`, learning-path recomputes and progress achievements.
//!
//! `progress.updated` is live-only: it fires on every lesson update (many per minute while a
//! student watches a video), its state is in `/me/progress` anyway, and storing it would bury
//! the notifications that matter. The student's instructor sees it live too, never stored for
//! them: their feed would grow with every student's every lesson.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::{Pass, Reactions};
use crate::{
    achievements::ProgressDue,
    assessments::paths,
    entities::learning_path,
    infra::realtime::RealtimeEvent,
    kernel::{
        audit::{self, Event},
        facts::{
            CompletionCause, CourseCompleted, Fact, LessonProgressed, OutlineShrunk, ProgressBatchApplied,
            ReactionError,
        },
    },
    notifications::{self, NewNotification},
    progress::{LessonProgressView, access::complete_finished_enrollments},
};

impl Reactions {
    pub(super) async fn lesson_progressed(
        &self,
        pass: &mut Pass<'_>,
        f: LessonProgressed,
    ) -> Result<(), ReactionError> {
        let row = &f.progress;
        audit::record(
            &**pass.txn,
            pass.ctx,
            Event::new("progress.update", Some(f.user_id)).target("lesson", row.lesson_id).details(json!({
                "course_id": row.course_id,
                "status": row.status,
                "progress": row.progress,
                "time_spent_seconds": row.time_spent_seconds,
                "score": row.score,
            })),
        )
        .await?;
        let lesson = LessonProgressView::from(f.progress.clone());
        pass.knows_instructor(row.course_id, f.instructor_id);
        self.progress_updated(pass, f.user_id, Some(&lesson), &f.course).await?;
        // Counts move only when something is completed; a streak of UTC days only on the
        // first activity of a day.
        pass.achievements_due(
            f.user_id,
            ProgressDue { counts: lesson.completed_at.is_some(), streak: f.first_activity_today },
        );
        Ok(())
    }

    pub(super) async fn batch_applied(
        &self,
        pass: &mut Pass<'_>,
        f: ProgressBatchApplied,
    ) -> Result<(), ReactionError> {
        let courses: Vec<Uuid> = f.courses.iter().map(|c| c.course_id).collect();
        audit::record(
            &**pass.txn,
            pass.ctx,
            Event::new("progress.batch", Some(f.user_id)).target("user", f.user_id).details(json!({
                "received": f.received,
                "applied": f.applied,
                "duplicates": f.duplicates,
                "rejected": f.rejected,
                "courses": courses,
            })),
        )
        .await?;
        // Nothing applied, nothing to say.
        if f.applied == 0 {
            return Ok(());
        }
        for course in &f.courses {
            self.progress_updated(pass, f.user_id, None, course).await?;
        }
        let something_completed = f.completed_lessons || f.courses.iter().any(|c| c.completed_lessons > 0);
        // Offline events may fall on any day: the streak is looked at whenever one applied.
        pass.achievements_due(f.user_id, ProgressDue { counts: something_completed, streak: true });
        Ok(())
    }

    /// The live `progress.updated`, to the student and their instructor.
    async fn progress_updated(
        &self,
        pass: &mut Pass<'_>,
        user_id: Uuid,
        lesson: Option<&LessonProgressView>,
        course: &crate::kernel::facts::CourseRollup,
    ) -> Result<(), ReactionError> {
        let also_to = pass.instructor_besides(course.course_id, user_id).await?;
        let event = RealtimeEvent {
            id: Uuid::now_v7(),
            user_id,
            kind: "progress.updated".into(),
            data: json!({"user_id": user_id, "lesson": lesson, "course": course}),
            created_at: Utc::now(),
        };
        self.events.publish_after_commit(pass.txn, event, also_to);
        Ok(())
    }

    pub(super) async fn course_completed(&self, pass: &mut Pass<'_>, f: CourseCompleted) -> Result<(), ReactionError> {
        let event = match f.cause {
            CompletionCause::Progress => Event::new("course.completed", Some(f.user_id)),
            // The instructor acted; the row says whose course it completed and why.
            CompletionCause::OutlineShrunk { by } => Event::new("course.completed", Some(by))
                .details(json!({"user_id": f.user_id, "cause": "outline_shrunk"})),
        };
        audit::record(&**pass.txn, pass.ctx, event.target("course", f.course_id)).await?;
        let also_to = pass.instructor_besides(f.course_id, f.user_id).await?;
        let title = pass.course(f.course_id).await?.map(|c| c.title.clone()).unwrap_or_else(|| "a course".into());
        notifications::create(
            pass.txn,
            &self.events,
            NewNotification {
                user_id: f.user_id,
                kind: "course.completed",
                title: &format!("Course completed: {title}"),
                body: "You finished every lesson of this course.",
                data: json!({"user_id": f.user_id, "course_id": f.course_id}),
            },
            also_to,
        )
        .await?;
        pass.paths_due.insert(f.user_id);
        pass.achievements_due(f.user_id, ProgressDue { counts: true, streak: false });
        Ok(())
    }

    /// Removing the lessons a student had left finishes the course for them, with every
    /// consequence of finishing it by progress.
    pub(super) async fn outline_shrunk(&self, pass: &mut Pass<'_>, f: OutlineShrunk) -> Result<(), ReactionError> {
        let now = Utc::now();
        for user_id in complete_finished_enrollments(&**pass.txn, f.course_id, None, now).await? {
            pass.queue.push_back(Fact::CourseCompleted(CourseCompleted {
                user_id,
                course_id: f.course_id,
                at: now,
                cause: CompletionCause::OutlineShrunk { by: f.by },
            }));
        }
        Ok(())
    }

    /// A student who has a path gets it recomputed (a finished course drops out). Students who
    /// never took an assessment have no path, and get none.
    pub(super) async fn recompute_path_if_any(&self, pass: &Pass<'_>, user_id: Uuid) -> Result<(), ReactionError> {
        use sea_orm::EntityTrait;
        if learning_path::Entity::find_by_id(user_id).one(&**pass.txn).await?.is_some() {
            paths::recompute(&**pass.txn, &self.rules, user_id, None, Utc::now()).await?;
        }
        Ok(())
    }
}
