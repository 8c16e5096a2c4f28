//! Achievements: a catalog whose rows are the rules, evaluated on facts inside the transaction
//! that caused them (see [`evaluate`]).
//!
//! A rule is `kind` (which metric) + `threshold` (JSON: `{"count": n}`, `{"days": n}` or
//! `{"min_score": n}`). Evaluating a kind computes the student's metric once and awards every
//! rule of that kind the student has reached and does not hold yet.

mod evaluate;

pub use evaluate::{ProgressDue, on_assessment_score, on_progress, on_project_approved};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, Iterable, JoinType, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    entities::{achievement, enums::AchievementKind, user_achievement},
    infra::db::{Db, is_unique_violation},
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        fields::FieldErrors,
        input::{Title, schema},
        pagination::{Page, PageRequest},
    },
};

/// The threshold key a rule of `kind` reads.
fn threshold_key(kind: AchievementKind) -> &'static str {
    match kind {
        AchievementKind::StreakDays => "days",
        AchievementKind::AssessmentScore => "min_score",
        AchievementKind::LessonsCompleted
        | AchievementKind::ModulesCompleted
        | AchievementKind::CoursesCompleted
        | AchievementKind::ProjectsApproved => "count",
    }
}

fn threshold_of(a: &achievement::Model) -> Option<f64> {
    a.threshold.get(threshold_key(a.kind))?.as_f64()
}

#[derive(Debug, thiserror::Error)]
pub enum AchievementError {
    #[error("validation failed")]
    Validation(#[from] FieldErrors),
    #[error("an achievement with this code exists")]
    Conflict,
    #[error("database")]
    Db(#[from] DbErr),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AchievementView {
    pub id: Uuid,
    pub code: String,
    pub title: String,
    pub description: String,
    pub icon: String,
    /// The metric the rule is about (one of `lessons_completed`, `modules_completed`,
    /// `courses_completed`, `streak_days`, `assessment_score`, `projects_approved`).
    pub kind: String,
    /// E.g. `{"count": 1}`, `{"days": 7}`, `{"min_score": 90}`.
    #[schema(value_type = Object)]
    pub threshold: Value,
}

impl From<achievement::Model> for AchievementView {
    fn from(a: achievement::Model) -> Self {
        AchievementView {
            id: a.id,
            code: a.code,
            title: a.title,
            description: a.description,
            icon: a.icon,
            kind: a.kind.as_str().to_string(),
            threshold: a.threshold,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AwardView {
    pub achievement: AchievementView,
    pub awarded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAchievement {
    /// 1 to 64 characters of `a-z`, `0-9` and `_`; unique.
    #[schema(pattern = "^[a-z0-9_]{1,64}$")]
    pub code: String,
    #[schema(schema_with = schema::title::<200>)]
    pub title: String,
    #[schema(max_length = 2000)]
    pub description: String,
    /// Default `award`.
    #[schema(schema_with = schema::title_or_null::<64>)]
    pub icon: Option<String>,
    #[schema(value_type = AchievementKind)]
    pub kind: String,
    /// `{"count": n}` (n ≥ 1) for counts, `{"days": n}` for streaks, `{"min_score": 0..100}`.
    #[schema(value_type = Object)]
    pub threshold: Value,
}

/// The catalog, oldest first.
pub async fn catalog(db: &Db, page: PageRequest) -> Result<Page<AchievementView>, DbErr> {
    let q = page.oldest_first(achievement::Entity::find(), achievement::Column::Id);
    let rows = q.all(&db.conn).await?.into_iter().map(AchievementView::from).collect();
    Ok(Page::from_rows(rows, page, |a| a.id))
}

/// A student's awards, newest first (the cursor is the award's id), each with its rule: one
/// statement.
pub async fn awarded(db: &Db, user_id: Uuid, page: PageRequest) -> Result<Page<AwardView>, DbErr> {
    let rule = user_achievement::Entity::belongs_to(achievement::Entity)
        .from(user_achievement::Column::AchievementId)
        .to(achievement::Column::Id)
        .into();
    let q = page.newest_first(
        user_achievement::Entity::find().filter(user_achievement::Column::UserId.eq(user_id)),
        user_achievement::Column::Id,
    );
    let rows: Vec<(Uuid, AwardView)> = q
        .join(JoinType::InnerJoin, rule)
        .select_also(achievement::Entity)
        .all(&db.conn)
        .await?
        .into_iter()
        .filter_map(|(ua, a)| Some((ua.id, AwardView { achievement: a?.into(), awarded_at: ua.awarded_at })))
        .collect();
    let page = Page::from_rows(rows, page, |(id, _)| *id);
    Ok(Page { items: page.items.into_iter().map(|(_, a)| a).collect(), next_cursor: page.next_cursor })
}

/// The `n` most recent awards (dashboard).
pub async fn recent(db: &Db, user_id: Uuid, n: u64) -> Result<Vec<AwardView>, DbErr> {
    Ok(awarded(db, user_id, PageRequest { limit: n, after: None }).await?.items)
}

/// Adds a rule (admin). Takes effect on the next matching event; no rebuild, no restart.
pub async fn create(
    db: &Db,
    ctx: &RequestContext,
    admin: &Principal,
    input: NewAchievement,
) -> Result<AchievementView, AchievementError> {
    let mut errors = FieldErrors::new();
    let code_ok = !input.code.is_empty()
        && input.code.len() <= 64
        && input.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !code_ok {
        errors.push("code", "must be 1 to 64 characters of a-z, 0-9 and _");
    }
    let title = errors.check("title", Title::parse(&input.title, 200));
    if input.description.chars().count() > 2000 {
        errors.push("description", "must be at most 2000 characters");
    }
    let icon = input.icon.unwrap_or_else(|| "award".into());
    errors.check("icon", Title::parse(&icon, 64).map(drop));
    let kind = input.kind.parse::<AchievementKind>().ok();
    match kind.map(threshold_key) {
        None => {
            let all: Vec<_> = AchievementKind::iter().map(AchievementKind::as_str).collect();
            errors.push("kind", format!("must be one of {}", all.join(", ")));
        }
        Some(key) => {
            let obj = input.threshold.as_object();
            let v = obj.and_then(|o| o.get(key)).and_then(Value::as_f64);
            let valid = obj.is_some_and(|o| o.len() == 1)
                && match (key, v) {
                    ("min_score", Some(s)) => (0.0..=100.0).contains(&s),
                    (_, Some(n)) => n >= 1.0 && n.fract() == 0.0 && n <= 100_000.0,
                    _ => false,
                };
            if !valid {
                let hint = if key == "min_score" { "0 to 100" } else { "a whole number ≥ 1" };
                errors.push("threshold", format!("must be {{\"{key}\": {hint}}} for kind {}", input.kind));
            }
        }
    }
    let (Some(title), Some(kind)) = (title, kind) else { return Err(errors.into()) };
    errors.into_result()?;
    let model = achievement::Model {
        id: Uuid::now_v7(),
        code: input.code,
        title: title.into_inner(),
        description: input.description,
        icon,
        kind,
        threshold: input.threshold,
        created_at: Utc::now(),
    };
    let txn = db.begin_write().await?;
    let am: achievement::ActiveModel = model.clone().into();
    if let Err(e) = achievement::Entity::insert(am).exec_without_returning(&*txn).await {
        return Err(if is_unique_violation(&e) { AchievementError::Conflict } else { e.into() });
    }
    audit::record(
        &*txn,
        ctx,
        Event::new("achievement.create", Some(admin.user_id))
            .target("achievement", model.id)
            .details(json!({"code": model.code, "kind": model.kind, "threshold": model.threshold})),
    )
    .await?;
    txn.commit().await?;
    Ok(model.into())
}
