//! Evaluating rules on a student's metrics, inside the transaction of the fact that may have
//! moved them. An award is an insert that does nothing on conflict with the unique
//! (user_id, achievement_id) index, so concurrent facts, on one instance or several, award it
//! exactly once; only the insert that added the row reports [`AchievementAwarded`].

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Statement,
    TryInsertResult, sea_query::Query,
};
use uuid::Uuid;

use super::threshold_of;
use crate::{
    entities::{achievement, enums::AchievementKind, user_achievement},
    kernel::{facts::AchievementAwarded, streak},
};

/// Rules of these kinds that `user_id` does not hold yet.
async fn open_rules<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    kinds: &[AchievementKind],
) -> Result<Vec<achievement::Model>, DbErr> {
    achievement::Entity::find()
        .filter(achievement::Column::Kind.is_in(kinds.iter().copied()))
        .filter(
            achievement::Column::Id.not_in_subquery(
                Query::select()
                    .column(user_achievement::Column::AchievementId)
                    .from(user_achievement::Entity)
                    .and_where(user_achievement::Column::UserId.eq(user_id))
                    .to_owned(),
            ),
        )
        .order_by_asc(achievement::Column::Id)
        .all(db)
        .await
}

async fn count<C: ConnectionTrait>(db: &C, sql: &str, user_id: Uuid) -> Result<f64, DbErr> {
    let row =
        db.query_one_raw(Statement::from_sql_and_values(db.get_database_backend(), sql, [user_id.into()])).await?;
    Ok(row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0) as f64)
}

/// The student's value of a metric, or `None` when the event carries it (assessment score,
/// approved projects) and the caller passes it in.
async fn metric<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    kind: AchievementKind,
    max_threshold: f64,
) -> Result<f64, DbErr> {
    match kind {
        AchievementKind::LessonsCompleted => {
            count(db, "SELECT COUNT(*) FROM lesson_progress WHERE user_id = $1 AND status = 'completed'", user_id).await
        }
        AchievementKind::CoursesCompleted => {
            count(db, "SELECT COUNT(*) FROM enrollments WHERE user_id = $1 AND completed_at IS NOT NULL", user_id).await
        }
        // A module counts when it has lessons and every one is completed. Only modules of
        // courses the student has completed something in are looked at.
        AchievementKind::ModulesCompleted => {
            count(
                db,
                "SELECT COUNT(*) FROM modules m \
                 WHERE m.course_id IN (SELECT course_id FROM lesson_progress \
                                       WHERE user_id = $1 AND status = 'completed') \
                   AND EXISTS (SELECT 1 FROM lessons l WHERE l.module_id = m.id) \
                   AND NOT EXISTS (SELECT 1 FROM lessons l WHERE l.module_id = m.id AND NOT EXISTS \
                       (SELECT 1 FROM lesson_progress lp WHERE lp.lesson_id = l.id \
                          AND lp.user_id = $1 AND lp.status = 'completed'))",
                user_id,
            )
            .await
        }
        AchievementKind::StreakDays => {
            let max_days = max_threshold.clamp(1.0, f64::from(streak::MAX_STREAK_DAYS)) as u32;
            Ok(f64::from(streak::streak_days(db, user_id, 0, max_days).await?))
        }
        // Carried by the fact itself (`given`), never queried.
        AchievementKind::AssessmentScore | AchievementKind::ProjectsApproved => Ok(0.0),
    }
}

/// Awards every rule in `rules` whose threshold `value` reaches, exactly once.
async fn award_reached<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    rules: &[achievement::Model],
    value: f64,
    awards: &mut Vec<AchievementAwarded>,
) -> Result<(), DbErr> {
    for a in rules {
        let Some(t) = threshold_of(a) else { continue };
        if value < t {
            continue;
        }
        let now = Utc::now();
        let inserted = user_achievement::Entity::insert(user_achievement::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            achievement_id: Set(a.id),
            awarded_at: Set(now),
        })
        .on_conflict_do_nothing_on([user_achievement::Column::UserId, user_achievement::Column::AchievementId])
        .exec_without_returning(db)
        .await?;
        if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
            awards.push(AchievementAwarded { user_id, achievement: a.clone(), awarded_at: now, value });
        }
    }
    Ok(())
}

async fn evaluate<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    kinds: &[AchievementKind],
    given: Option<f64>,
) -> Result<Vec<AchievementAwarded>, DbErr> {
    let mut awards = Vec::new();
    let rules = open_rules(db, user_id, kinds).await?;
    for &kind in kinds {
        let of_kind: Vec<achievement::Model> = rules.iter().filter(|r| r.kind == kind).cloned().collect();
        if of_kind.is_empty() {
            continue; // Nothing left to earn: skip the metric's query entirely.
        }
        let max = of_kind.iter().filter_map(threshold_of).fold(0.0, f64::max);
        let value = match given {
            Some(v) => v,
            None => metric(db, user_id, kind, max).await?,
        };
        award_reached(db, user_id, &of_kind, value, &mut awards).await?;
    }
    Ok(awards)
}

/// After progress was recorded: lesson/module/course counts when something was completed,
/// streaks on any activity.
pub async fn on_progress<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    something_completed: bool,
) -> Result<Vec<AchievementAwarded>, DbErr> {
    use AchievementKind::*;
    let kinds: &[AchievementKind] = if something_completed {
        &[LessonsCompleted, ModulesCompleted, CoursesCompleted, StreakDays]
    } else {
        &[StreakDays]
    };
    evaluate(db, user_id, kinds, None).await
}

/// After an assessment completed with its overall score (0 to 100).
pub async fn on_assessment_score<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    score: f64,
) -> Result<Vec<AchievementAwarded>, DbErr> {
    evaluate(db, user_id, &[AchievementKind::AssessmentScore], Some(score)).await
}

/// After a project was approved, with the student's number of approved projects including
/// this one.
pub async fn on_project_approved<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    approved_projects: u64,
) -> Result<Vec<AchievementAwarded>, DbErr> {
    evaluate(db, user_id, &[AchievementKind::ProjectsApproved], Some(approved_projects as f64)).await
}
