//! What progress tells users: a live `progress.updated` (not stored, see the module docs), a
//! stored `course.completed`, and any achievements it earns. The student's instructor sees the
//! student's progress and completions live too (never stored for the instructor: their feed
//! would grow with every student's every lesson).

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use super::{Outbox, create};
use crate::{
    achievements,
    context::RequestContext,
    entities::course,
    progress::service::{CourseRollup, LessonProgressView},
};

/// Call inside the progress transaction, after the writes; publish the outbox after commit.
/// `lesson` is the lesson just written (single update) or `None` (batch); `rollups` are the
/// touched courses; `completed_courses` those this write completed.
pub async fn after_progress<C: ConnectionTrait>(
    db: &C,
    ctx: &RequestContext,
    user_id: Uuid,
    lesson: Option<&LessonProgressView>,
    rollups: &[CourseRollup],
    completed_courses: &[Uuid],
) -> Result<Outbox, DbErr> {
    let mut outbox = Outbox::default();
    let ids: Vec<Uuid> = rollups.iter().map(|r| r.course_id).chain(completed_courses.iter().copied()).collect();
    let courses: HashMap<Uuid, course::Model> = if ids.is_empty() {
        HashMap::new()
    } else {
        course::Entity::find()
            .filter(course::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect()
    };
    let instructor = |course_id: &Uuid| -> Vec<Uuid> {
        courses.get(course_id).map(|c| c.instructor_id).filter(|i| *i != user_id).into_iter().collect()
    };
    for r in rollups {
        let lesson = lesson.filter(|l| l.course_id == r.course_id);
        outbox.live(
            user_id,
            "progress.updated",
            json!({"user_id": user_id, "lesson": lesson, "course": r}),
            instructor(&r.course_id),
        );
    }
    for c in completed_courses {
        let title = courses.get(c).map(|c| c.title.as_str()).unwrap_or("a course");
        let n = create(
            db,
            user_id,
            "course.completed",
            &format!("Course completed: {title}"),
            "You finished every lesson of this course.",
            json!({"user_id": user_id, "course_id": c}),
        )
        .await?;
        outbox.notification_to(&n, instructor(c));
    }
    let something_completed = !completed_courses.is_empty()
        || lesson.is_some_and(|l| l.completed_at.is_some())
        || (lesson.is_none() && rollups.iter().any(|r| r.completed_lessons > 0));
    outbox.extend(achievements::on_progress(db, ctx, user_id, something_completed).await?);
    Ok(outbox)
}
