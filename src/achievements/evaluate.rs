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

/// The student's completion counts, the metrics of three rule kinds, in one statement. A
/// module counts when it has lessons and every one is completed; only modules of courses the
/// student has completed something in are looked at.
struct CompletionCounts {
    lessons: i64,
    modules: i64,
    courses: i64,
}

impl CompletionCounts {
    async fn read<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<CompletionCounts, DbErr> {
        let sql = "SELECT \
             (SELECT COUNT(*) FROM lesson_progress WHERE user_id = $1 AND status = 'completed') AS lessons, \
             (SELECT COUNT(*) FROM enrollments WHERE user_id = $1 AND completed_at IS NOT NULL) AS courses, \
             (SELECT COUNT(*) FROM modules m \
              WHERE m.course_id IN (SELECT course_id FROM lesson_progress \
                                    WHERE user_id = $1 AND status = 'completed') \
                AND EXISTS (SELECT 1 FROM lessons l WHERE l.module_id = m.id) \
                AND NOT EXISTS (SELECT 1 FROM lessons l WHERE l.module_id = m.id AND NOT EXISTS \
                    (SELECT 1 FROM lesson_progress lp WHERE lp.lesson_id = l.id \
                       AND lp.user_id = $1 AND lp.status = 'completed'))) AS modules";
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, [user_id.into()]);
        let row = db.query_one_raw(stmt).await?.ok_or_else(|| DbErr::Custom("counts returned no row".into()))?;
        Ok(CompletionCounts {
            lessons: row.try_get("", "lessons")?,
            modules: row.try_get("", "modules")?,
            courses: row.try_get("", "courses")?,
        })
    }

    fn of(&self, kind: AchievementKind) -> f64 {
        match kind {
            AchievementKind::LessonsCompleted => self.lessons as f64,
            AchievementKind::ModulesCompleted => self.modules as f64,
            AchievementKind::CoursesCompleted => self.courses as f64,
            _ => 0.0,
        }
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
    let mut counts = None;
    for &kind in kinds {
        let of_kind: Vec<achievement::Model> = rules.iter().filter(|r| r.kind == kind).cloned().collect();
        if of_kind.is_empty() {
            continue; // Nothing left to earn: skip the metric's query entirely.
        }
        let max = of_kind.iter().filter_map(threshold_of).fold(0.0, f64::max);
        let value = match (given, kind) {
            (Some(v), _) => v,
            (None, AchievementKind::StreakDays) => {
                let max_days = max.clamp(1.0, f64::from(streak::MAX_STREAK_DAYS)) as u32;
                f64::from(streak::streak_days(db, user_id, 0, max_days).await?)
            }
            (None, _) => {
                if counts.is_none() {
                    counts = Some(CompletionCounts::read(db, user_id).await?);
                }
                counts.as_ref().map_or(0.0, |c| c.of(kind))
            }
        };
        award_reached(db, user_id, &of_kind, value, &mut awards).await?;
    }
    Ok(awards)
}

/// Which progress achievements a fact may have moved: the completion counts (something was
/// completed) and the streak (the first activity of a day).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressDue {
    pub counts: bool,
    pub streak: bool,
}

/// After progress was recorded, the kinds `due` names; nothing at all when it names none.
pub async fn on_progress<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    due: ProgressDue,
) -> Result<Vec<AchievementAwarded>, DbErr> {
    use AchievementKind::*;
    let mut kinds = Vec::new();
    if due.counts {
        kinds.extend([LessonsCompleted, ModulesCompleted, CoursesCompleted]);
    }
    if due.streak {
        kinds.push(StreakDays);
    }
    if kinds.is_empty() {
        return Ok(vec![]);
    }
    evaluate(db, user_id, &kinds, None).await
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
