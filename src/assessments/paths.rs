//! Loading the engine's inputs from the database and storing its output. Runs inside the
//! caller's transaction, so a path always matches the skills and progress it was built from.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::OnConflict,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::engine::{self, CatalogCourse, ContinueAt, Inputs, LearningRules, Step};
use crate::entities::{course, enrollment, learning_path, lesson, module, skill_level};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LearningPathView {
    /// Null until the first assessment is completed.
    pub generated_at: Option<DateTime<Utc>>,
    pub based_on_assessment_id: Option<Uuid>,
    pub steps: Vec<Step>,
}

impl LearningPathView {
    pub fn empty() -> Self {
        LearningPathView { generated_at: None, based_on_assessment_id: None, steps: vec![] }
    }
}

impl From<learning_path::Model> for LearningPathView {
    fn from(m: learning_path::Model) -> Self {
        LearningPathView {
            generated_at: Some(m.generated_at),
            based_on_assessment_id: m.based_on_assessment_id,
            steps: serde_json::from_value(m.steps).unwrap_or_default(),
        }
    }
}

pub async fn load<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<LearningPathView, DbErr> {
    Ok(learning_path::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map(Into::into)
        .unwrap_or_else(LearningPathView::empty))
}

/// Recomputes and stores `user_id`'s path. `based_on` is the assessment that triggered it;
/// `None` keeps the previous one (a course completion changes progress, not skills).
pub async fn recompute<C: ConnectionTrait>(
    db: &C,
    rules: &LearningRules,
    user_id: Uuid,
    based_on: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<LearningPathView, DbErr> {
    let skills: BTreeMap<String, f64> = skill_level::Entity::find()
        .filter(skill_level::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.skill, s.score))
        .collect();
    // Only the courses some rule names can appear in a path: read just those.
    let slugs: HashSet<&str> = rules.rules.iter().flat_map(|r| r.courses.iter().map(String::as_str)).collect();
    let catalog: Vec<CatalogCourse> = if slugs.is_empty() {
        vec![]
    } else {
        course::Entity::find()
            .filter(course::Column::Published.eq(true))
            .filter(course::Column::Slug.is_in(slugs))
            .all(db)
            .await?
            .into_iter()
            .map(|c| CatalogCourse { id: c.id, slug: c.slug, title: c.title, level: c.level.as_str().to_string() })
            .collect()
    };
    let enrollments = enrollment::Entity::find().filter(enrollment::Column::UserId.eq(user_id)).all(db).await?;
    let completed: HashSet<Uuid> =
        enrollments.iter().filter(|e| e.completed_at.is_some()).map(|e| e.course_id).collect();
    let catalog_ids: HashSet<Uuid> = catalog.iter().map(|c| c.id).collect();
    let open: Vec<Uuid> = enrollments
        .iter()
        .filter(|e| e.completed_at.is_none() && catalog_ids.contains(&e.course_id))
        .map(|e| e.course_id)
        .collect();
    let mut enrolled: HashMap<Uuid, Option<ContinueAt>> = open.iter().map(|c| (*c, None)).collect();
    if !open.is_empty() {
        let modules = module::Entity::find()
            .filter(module::Column::CourseId.is_in(open.clone()))
            .order_by_asc(module::Column::CourseId)
            .order_by_asc(module::Column::Position)
            .all(db)
            .await?;
        let lessons: Vec<(Uuid, Uuid)> = lesson::Entity::find()
            .select_only()
            .column(lesson::Column::Id)
            .column(lesson::Column::ModuleId)
            .filter(lesson::Column::CourseId.is_in(open.clone()))
            .into_tuple()
            .all(db)
            .await?;
        let done = crate::progress::access::completed_lessons(db, user_id, &open).await?;
        for m in &modules {
            let slot = enrolled.entry(m.course_id).or_default();
            if slot.is_none() && lessons.iter().any(|(l, mid)| *mid == m.id && !done.contains(l)) {
                *slot = Some(ContinueAt { module_id: m.id, module_title: m.title.clone() });
            }
        }
    }
    let steps = engine::recommend(
        rules,
        &Inputs { skills: &skills, completed_courses: &completed, enrolled: &enrolled, catalog: &catalog },
    );
    let based_on = match based_on {
        Some(a) => Some(a),
        None => learning_path::Entity::find_by_id(user_id).one(db).await?.and_then(|p| p.based_on_assessment_id),
    };
    let row = learning_path::ActiveModel {
        user_id: Set(user_id),
        generated_at: Set(now),
        based_on_assessment_id: Set(based_on),
        steps: Set(serde_json::to_value(&steps).map_err(|e| DbErr::Custom(e.to_string()))?),
    };
    learning_path::Entity::insert(row)
        .on_conflict(
            OnConflict::column(learning_path::Column::UserId)
                .update_columns([
                    learning_path::Column::GeneratedAt,
                    learning_path::Column::BasedOnAssessmentId,
                    learning_path::Column::Steps,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(LearningPathView { generated_at: Some(now), based_on_assessment_id: based_on, steps })
}

/// The hook `progress` calls when a student completes a course: a student who has a path gets
/// it recomputed (the finished course drops out) in the same transaction. Students who never
/// took an assessment have no path, and get none.
pub async fn on_course_completed<C: ConnectionTrait>(
    db: &C,
    rules: &LearningRules,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    if learning_path::Entity::find_by_id(user_id).one(db).await?.is_none() {
        return Ok(false);
    }
    recompute(db, rules, user_id, None, now).await?;
    Ok(true)
}
