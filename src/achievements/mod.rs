//! Achievements: a catalog whose rows are the rules, evaluated on domain events inside the
//! transaction that caused them.
//!
//! A rule is `kind` (which metric) + `threshold` (JSON: `{"count": n}`, `{"days": n}` or
//! `{"min_score": n}`). Evaluating a kind computes the student's metric once and awards every
//! rule of that kind the student has reached and does not hold yet. An award is an insert that
//! does nothing on conflict with the unique (user_id, achievement_id) index, so concurrent
//! events, on one instance or several, award it exactly once; only the insert that actually
//! added the row creates the `achievement.awarded` notification and live event.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement, TryInsertResult, sea_query::Query,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    audit::{self, Event},
    context::{Principal, RequestContext},
    entities::{achievement, activity_hour, user_achievement},
    infra::db::{Db, is_unique_violation},
    notifications::{self, Outbox},
    pagination::{Page, PageRequest},
};

/// The metrics a rule can be about, and the threshold key each one reads.
pub const KINDS: &[(&str, &str)] = &[
    ("lessons_completed", "count"),
    ("modules_completed", "count"),
    ("courses_completed", "count"),
    ("streak_days", "days"),
    ("assessment_score", "min_score"),
    ("projects_approved", "count"),
];

fn threshold_key(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, key)| *key)
}

fn threshold_of(a: &achievement::Model) -> Option<f64> {
    a.threshold.get(threshold_key(&a.kind)?)?.as_f64()
}

#[derive(Debug, thiserror::Error)]
pub enum AchievementError {
    #[error("validation failed")]
    Validation(Vec<(String, String)>),
    #[error("an achievement with this code exists")]
    Conflict,
    #[error("database error: {0}")]
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
            kind: a.kind,
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
    pub code: String,
    pub title: String,
    pub description: String,
    pub icon: Option<String>,
    pub kind: String,
    /// `{"count": n}` (n ≥ 1) for counts, `{"days": n}` for streaks, `{"min_score": 0..100}`.
    #[schema(value_type = Object)]
    pub threshold: Value,
}

/// The catalog, oldest first.
pub async fn catalog(db: &Db, page: PageRequest) -> Result<Page<AchievementView>, DbErr> {
    let mut q = achievement::Entity::find().order_by_asc(achievement::Column::Id).limit(page.limit + 1);
    if let Some(after) = page.after {
        q = q.filter(achievement::Column::Id.gt(after));
    }
    let rows = q.all(&db.conn).await?.into_iter().map(AchievementView::from).collect();
    Ok(Page::from_rows(rows, page, |a| a.id))
}

/// A student's awards, newest first (the cursor is the award's id).
pub async fn awarded(db: &Db, user_id: Uuid, page: PageRequest) -> Result<Page<AwardView>, DbErr> {
    let mut q = user_achievement::Entity::find()
        .filter(user_achievement::Column::UserId.eq(user_id))
        .order_by_desc(user_achievement::Column::Id)
        .limit(page.limit + 1);
    if let Some(after) = page.after {
        q = q.filter(user_achievement::Column::Id.lt(after));
    }
    let awards = q.all(&db.conn).await?;
    let ids: Vec<Uuid> = awards.iter().map(|a| a.achievement_id).collect();
    let catalog: std::collections::HashMap<Uuid, achievement::Model> = if ids.is_empty() {
        Default::default()
    } else {
        achievement::Entity::find()
            .filter(achievement::Column::Id.is_in(ids))
            .all(&db.conn)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect()
    };
    let rows: Vec<(Uuid, AwardView)> = awards
        .into_iter()
        .filter_map(|ua| {
            let a = catalog.get(&ua.achievement_id)?.clone();
            Some((ua.id, AwardView { achievement: a.into(), awarded_at: ua.awarded_at }))
        })
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
    let mut errors = Vec::new();
    let code_ok = !input.code.is_empty()
        && input.code.len() <= 64
        && input.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !code_ok {
        errors.push(("code".to_string(), "must be 1 to 64 characters of a-z, 0-9 and _".to_string()));
    }
    let title = input.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        errors.push(("title".into(), "must be 1 to 200 characters".into()));
    }
    if input.description.chars().count() > 2000 {
        errors.push(("description".into(), "must be at most 2000 characters".into()));
    }
    let icon = input.icon.unwrap_or_else(|| "award".into());
    if icon.is_empty() || icon.chars().count() > 64 {
        errors.push(("icon".into(), "must be 1 to 64 characters".into()));
    }
    match threshold_key(&input.kind) {
        None => errors.push((
            "kind".into(),
            format!("must be one of {}", KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")),
        )),
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
                errors.push(("threshold".into(), format!("must be {{\"{key}\": {hint}}} for kind {}", input.kind)));
            }
        }
    }
    if !errors.is_empty() {
        return Err(AchievementError::Validation(errors));
    }
    let model = achievement::Model {
        id: Uuid::now_v7(),
        code: input.code,
        title: title.to_string(),
        description: input.description,
        icon,
        kind: input.kind,
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

/// Rules of these kinds that `user_id` does not hold yet.
async fn open_rules<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    kinds: &[&str],
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

/// Consecutive UTC days with activity ending today or yesterday, looking back at most `max` days.
async fn streak<C: ConnectionTrait>(db: &C, user_id: Uuid, max: i64) -> Result<f64, DbErr> {
    let now = Utc::now().timestamp();
    let since = (now - (max + 2) * 86_400).div_euclid(3600);
    let hours: Vec<i64> = activity_hour::Entity::find()
        .select_only()
        .column(activity_hour::Column::Hour)
        .filter(activity_hour::Column::UserId.eq(user_id))
        .filter(activity_hour::Column::Hour.gte(since))
        .into_tuple::<i64>()
        .all(db)
        .await?;
    let days: HashSet<i64> = hours.iter().map(|h| (h * 3600).div_euclid(86_400)).collect();
    let today = now.div_euclid(86_400);
    let mut d = if days.contains(&today) { today } else { today - 1 };
    let mut n = 0;
    while days.contains(&d) {
        n += 1;
        d -= 1;
    }
    Ok(n as f64)
}

/// The student's value of a metric, or `None` when the event carries it (assessment score,
/// approved projects) and the caller passes it in.
async fn metric<C: ConnectionTrait>(db: &C, user_id: Uuid, kind: &str, max_threshold: f64) -> Result<f64, DbErr> {
    match kind {
        "lessons_completed" => {
            count(db, "SELECT COUNT(*) FROM lesson_progress WHERE user_id = $1 AND status = 'completed'", user_id).await
        }
        "courses_completed" => {
            count(db, "SELECT COUNT(*) FROM enrollments WHERE user_id = $1 AND completed_at IS NOT NULL", user_id).await
        }
        // A module counts when it has lessons and every one is completed. Only modules of
        // courses the student has completed something in are looked at.
        "modules_completed" => {
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
        "streak_days" => streak(db, user_id, max_threshold.clamp(1.0, 400.0) as i64).await,
        _ => Ok(0.0),
    }
}

/// Awards every open rule of `kind` whose threshold `value` reaches, exactly once.
async fn award_reached<C: ConnectionTrait>(
    db: &C,
    ctx: &RequestContext,
    user_id: Uuid,
    rules: &[achievement::Model],
    value: f64,
    outbox: &mut Outbox,
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
        if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
            continue; // Someone else's transaction awarded it first.
        }
        let n = notifications::create(
            db,
            user_id,
            "achievement.awarded",
            &format!("Achievement unlocked: {}", a.title),
            &a.description,
            json!({"achievement_id": a.id, "code": a.code, "title": a.title, "icon": a.icon, "awarded_at": now}),
        )
        .await?;
        audit::record(
            db,
            ctx,
            Event::new("achievement.award", Some(user_id))
                .target("achievement", a.id)
                .details(json!({"code": a.code, "value": value})),
        )
        .await?;
        outbox.notification(&n);
    }
    Ok(())
}

async fn evaluate<C: ConnectionTrait>(
    db: &C,
    ctx: &RequestContext,
    user_id: Uuid,
    kinds: &[&str],
    given: Option<f64>,
) -> Result<Outbox, DbErr> {
    let mut outbox = Outbox::default();
    let rules = open_rules(db, user_id, kinds).await?;
    for kind in kinds {
        let of_kind: Vec<achievement::Model> = rules.iter().filter(|r| r.kind == *kind).cloned().collect();
        if of_kind.is_empty() {
            continue; // Nothing left to earn: skip the metric's query entirely.
        }
        let max = of_kind.iter().filter_map(threshold_of).fold(0.0, f64::max);
        let value = match given {
            Some(v) => v,
            None => metric(db, user_id, kind, max).await?,
        };
        award_reached(db, ctx, user_id, &of_kind, value, &mut outbox).await?;
    }
    Ok(outbox)
}

/// After progress was recorded: lesson/module/course counts when something was completed,
/// streaks on any activity. Call inside the progress transaction; publish after commit.
pub async fn on_progress<C: ConnectionTrait>(
    db: &C,
    ctx: &RequestContext,
    user_id: Uuid,
    something_completed: bool,
) -> Result<Outbox, DbErr> {
    let kinds: &[&str] = if something_completed {
        &["lessons_completed", "modules_completed", "courses_completed", "streak_days"]
    } else {
        &["streak_days"]
    };
    evaluate(db, ctx, user_id, kinds, None).await
}

/// For the assessments code: call inside the transaction that records a completed assessment
/// with its overall score (0 to 100); publish the returned outbox after commit.
pub async fn on_assessment_score<C: ConnectionTrait>(
    txn: &C,
    ctx: &RequestContext,
    user_id: Uuid,
    score: f64,
) -> Result<Outbox, DbErr> {
    evaluate(txn, ctx, user_id, &["assessment_score"], Some(score)).await
}

/// For the submissions code: call inside the transaction that approves a project, with the
/// student's number of approved projects including this one; publish the outbox after commit.
pub async fn on_project_approved<C: ConnectionTrait>(
    txn: &C,
    ctx: &RequestContext,
    user_id: Uuid,
    approved_projects: u64,
) -> Result<Outbox, DbErr> {
    evaluate(txn, ctx, user_id, &["projects_approved"], Some(approved_projects as f64)).await
}
