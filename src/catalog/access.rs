//! Who may see and change a course, and which instructor teaches which student. The small
//! surface other domains use to decide what a caller may read.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::{Query, SimpleExpr},
};
use uuid::Uuid;

use crate::{
    entities::{course, enrollment},
    kernel::context::{Principal, Role},
};

/// Who may see a course: everyone once published; before that its instructor and admins.
pub fn can_view(c: &course::Model, p: &Principal) -> bool {
    c.published || can_edit(c, p)
}

/// Who may change a course: its instructor (while still an instructor) and admins.
pub fn can_edit(c: &course::Model, p: &Principal) -> bool {
    is_owner_or_admin(c.instructor_id, p)
}

/// Whether `p` is the instructor `instructor_id` (still an instructor) or an admin.
pub fn is_owner_or_admin(instructor_id: Uuid, p: &Principal) -> bool {
    p.role == Role::Admin || (p.role == Role::Instructor && instructor_id == p.user_id)
}

/// A filter on enrollments: those in courses taught by `instructor`.
pub fn in_courses_taught_by(instructor: Uuid) -> SimpleExpr {
    enrollment::Column::CourseId.in_subquery(
        Query::select()
            .column(course::Column::Id)
            .from(course::Entity)
            .and_where(course::Column::InstructorId.eq(instructor))
            .to_owned(),
    )
}

/// Whether `student` is enrolled in a course that `instructor` teaches.
pub async fn teaches<C: ConnectionTrait>(db: &C, instructor: Uuid, student: Uuid) -> Result<bool, DbErr> {
    Ok(enrollment::Entity::find()
        .filter(enrollment::Column::UserId.eq(student))
        .filter(in_courses_taught_by(instructor))
        .count(db)
        .await?
        > 0)
}
