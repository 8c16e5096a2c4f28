//! Enrollment and progress tracking.
//!
//! Progress only ever moves forward: every write is one UPSERT whose conflict branch takes the
//! maximum of the stored and the reported values, so retries, duplicates and two devices
//! racing on one lesson all end in the same row, in any order.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value, sea_query::Query,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    audit::{self, Event},
    catalog::service::can_view,
    context::{Principal, RequestContext, Role},
    entities::{activity_hour, course, enrollment, lesson, lesson_progress, module, progress_event},
    infra::db::Db,
    pagination::{Page, PageRequest},
};

#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("validation failed")]
    Validation(Vec<(String, String)>),
    /// Unknown, not visible, or not enrolled: indistinguishable on purpose.
    #[error("not found")]
    NotFound,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbErr> for ProgressError {
    fn from(e: DbErr) -> Self {
        ProgressError::Internal(e.to_string())
    }
}

/// Most time one update may add to a lesson's total. A client reporting more (a clock jump,
/// a tab left open for a week, a hostile value) is clamped, not refused.
pub const MAX_TIME_STEP_SECS: i64 = 86_400;
/// Most events in one batch; more is a 422 (and a body over the size limit is a 413 first).
pub const MAX_BATCH_EVENTS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    InProgress,
    Completed,
}

impl ProgressStatus {
    fn parse(s: &str) -> Self {
        if s == "completed" { ProgressStatus::Completed } else { ProgressStatus::InProgress }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressUpdate {
    pub status: ProgressStatus,
    /// 0.0 to 1.0; completing a lesson sets it to 1.0.
    pub progress: Option<f64>,
    /// The total time spent on the lesson so far, as the client counts it. The stored total
    /// only grows, by at most 86,400 per update.
    pub time_spent_seconds: Option<i64>,
    /// 0 to 100; the best score is kept.
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressEvent {
    /// Client-chosen, unique per user (1 to 100 characters). A repeat is skipped.
    pub event_id: String,
    pub lesson_id: Uuid,
    pub status: ProgressStatus,
    pub progress: Option<f64>,
    pub time_spent_seconds: Option<i64>,
    pub score: Option<f64>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBatch {
    /// At most 500.
    pub events: Vec<ProgressEvent>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LessonProgressView {
    pub lesson_id: Uuid,
    pub course_id: Uuid,
    pub status: ProgressStatus,
    pub progress: f64,
    pub time_spent_seconds: i64,
    pub score: Option<f64>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<lesson_progress::Model> for LessonProgressView {
    fn from(r: lesson_progress::Model) -> Self {
        LessonProgressView {
            lesson_id: r.lesson_id,
            course_id: r.course_id,
            status: ProgressStatus::parse(&r.status),
            progress: r.progress,
            time_spent_seconds: r.time_spent_seconds,
            score: r.score,
            completed_at: r.completed_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseRollup {
    pub course_id: Uuid,
    pub completed_lessons: u64,
    pub total_lessons: u64,
    /// 0 to 100, one decimal.
    pub percent: f64,
    /// When the student first finished every lesson; set once, never cleared.
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LessonProgressResult {
    pub lesson: LessonProgressView,
    pub course: CourseRollup,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedEvent {
    pub event_id: String,
    /// `not_found`: the lesson does not exist or is not in a course you are enrolled in.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResult {
    pub received: usize,
    pub applied: usize,
    /// Events whose `event_id` had been seen before (also within this batch).
    pub duplicates: usize,
    /// Events not applied and not remembered: a later retry may still apply them.
    pub rejected: Vec<RejectedEvent>,
    /// The rollups of every course an applied event touched.
    pub courses: Vec<CourseRollup>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModuleRollup {
    pub module_id: Uuid,
    pub completed_lessons: u64,
    pub total_lessons: u64,
    pub percent: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseProgress {
    pub course_id: Uuid,
    pub title: String,
    pub completed_lessons: u64,
    pub total_lessons: u64,
    pub percent: f64,
    /// The first lesson in outline order that is not completed; null when all are.
    pub next_lesson_id: Option<Uuid>,
    pub completed_at: Option<DateTime<Utc>>,
    pub enrolled_at: DateTime<Utc>,
    pub modules: Vec<ModuleRollup>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnrollmentView {
    pub id: Uuid,
    pub course_id: Uuid,
    pub enrolled_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<enrollment::Model> for EnrollmentView {
    fn from(e: enrollment::Model) -> Self {
        EnrollmentView { id: e.id, course_id: e.course_id, enrolled_at: e.enrolled_at, completed_at: e.completed_at }
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { ((done as f64) * 1000.0 / (total as f64)).round() / 10.0 }
}

/// A validated update, ready for the UPSERT.
struct Normalized {
    completed: bool,
    progress: f64,
    /// As reported (≥ 0); the SQL clamps the growth.
    time_spent: i64,
    score: Option<f64>,
}

fn normalize(
    prefix: &str,
    status: ProgressStatus,
    progress: Option<f64>,
    time_spent: Option<i64>,
    score: Option<f64>,
    errors: &mut Vec<(String, String)>,
) -> Normalized {
    if let Some(p) = progress
        && !(0.0..=1.0).contains(&p)
    {
        errors.push((format!("{prefix}progress"), "must be between 0.0 and 1.0".into()));
    }
    if let Some(t) = time_spent
        && t < 0
    {
        errors.push((format!("{prefix}time_spent_seconds"), "must not be negative".into()));
    }
    if let Some(s) = score
        && !(0.0..=100.0).contains(&s)
    {
        errors.push((format!("{prefix}score"), "must be between 0 and 100".into()));
    }
    let completed = status == ProgressStatus::Completed;
    Normalized {
        completed,
        progress: if completed { 1.0 } else { progress.unwrap_or(0.0).clamp(0.0, 1.0) },
        time_spent: time_spent.unwrap_or(0).max(0),
        score,
    }
}

/// The one write of a lesson's progress. Monotonic in every column, so it commutes with any
/// concurrent or repeated write of the same lesson.
async fn upsert<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    l: &lesson::Model,
    u: &Normalized,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<lesson_progress::Model, DbErr> {
    let backend = db.get_database_backend();
    // PostgreSQL's GREATEST/LEAST are SQLite's two-argument MAX/MIN.
    let (max, min) = match backend {
        DbBackend::Postgres => ("GREATEST", "LEAST"),
        _ => ("MAX", "MIN"),
    };
    let sql = format!(
        "INSERT INTO lesson_progress (id, user_id, lesson_id, course_id, status, progress, \
             time_spent_seconds, score, completed_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (user_id, lesson_id) DO UPDATE SET \
             status = CASE WHEN lesson_progress.status = 'completed' THEN 'completed' \
                      ELSE excluded.status END, \
             progress = {max}(lesson_progress.progress, excluded.progress), \
             time_spent_seconds = {max}(lesson_progress.time_spent_seconds, \
                 {min}($11, lesson_progress.time_spent_seconds + $12)), \
             score = {max}(COALESCE(lesson_progress.score, excluded.score), \
                 COALESCE(excluded.score, lesson_progress.score)), \
             completed_at = COALESCE(lesson_progress.completed_at, excluded.completed_at), \
             updated_at = excluded.updated_at \
         RETURNING *"
    );
    let values: Vec<Value> = vec![
        Uuid::now_v7().into(),
        user_id.into(),
        l.id.into(),
        l.course_id.into(),
        (if u.completed { "completed" } else { "in_progress" }).into(),
        u.progress.into(),
        u.time_spent.min(MAX_TIME_STEP_SECS).into(),
        u.score.into(),
        (u.completed.then_some(at)).into(),
        now.into(),
        u.time_spent.into(),
        MAX_TIME_STEP_SECS.into(),
    ];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| DbErr::Custom("upsert returned no row".into()))?;
    lesson_progress::Model::from_query_result(&row, "").map_err(|e| DbErr::Custom(e.to_string()))
}

/// Marks enrollments of `course_id` (one student's, or everyone's) complete when every lesson
/// of the course is completed. Conditional on `completed_at IS NULL`, so it sets the date once.
/// Returns how many enrollments it completed.
pub async fn complete_finished_enrollments<C: ConnectionTrait>(
    db: &C,
    course_id: Uuid,
    user_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut sql = "UPDATE enrollments SET completed_at = $1 \
         WHERE course_id = $2 AND completed_at IS NULL \
           AND (SELECT COUNT(*) FROM lessons WHERE lessons.course_id = $2) > 0 \
           AND (SELECT COUNT(*) FROM lesson_progress lp WHERE lp.course_id = $2 \
                  AND lp.user_id = enrollments.user_id AND lp.status = 'completed') \
               >= (SELECT COUNT(*) FROM lessons WHERE lessons.course_id = $2)"
        .to_string();
    let mut values: Vec<Value> = vec![at.into(), course_id.into()];
    if let Some(u) = user_id {
        sql.push_str(" AND user_id = $3");
        values.push(u.into());
    }
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    Ok(db.execute_raw(stmt).await?.rows_affected())
}

/// Remembers that the user learned during `at`'s hour (for streaks).
async fn touch_activity<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    hours: impl IntoIterator<Item = i64>,
) -> Result<(), DbErr> {
    let rows: Vec<activity_hour::ActiveModel> = hours
        .into_iter()
        .map(|hour| activity_hour::ActiveModel {
            user_id: sea_orm::ActiveValue::Set(user_id),
            hour: sea_orm::ActiveValue::Set(hour),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    activity_hour::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([activity_hour::Column::UserId, activity_hour::Column::Hour])
        .exec_without_returning(db)
        .await?;
    Ok(())
}

fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3600)
}

/// The enrollment rows of a user in some courses, locked on PostgreSQL (in course order, so
/// two batches never deadlock). The lock serialises one student's writes to one course, which
/// makes "was that the last lesson?" race-free: each write counts after the previous commits.
async fn lock_enrollments<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    course_ids: &[Uuid],
) -> Result<HashMap<Uuid, enrollment::Model>, DbErr> {
    if course_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = enrollment::Entity::find()
        .filter(enrollment::Column::UserId.eq(user_id))
        .filter(enrollment::Column::CourseId.is_in(course_ids.iter().copied()))
        .order_by_asc(enrollment::Column::CourseId);
    if db.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    Ok(q.all(db).await?.into_iter().map(|e| (e.course_id, e)).collect())
}

async fn course_rollup<C: ConnectionTrait>(db: &C, user_id: Uuid, course_id: Uuid) -> Result<CourseRollup, DbErr> {
    let total = lesson::Entity::find().filter(lesson::Column::CourseId.eq(course_id)).count(db).await?;
    let completed = lesson_progress::Entity::find()
        .filter(lesson_progress::Column::UserId.eq(user_id))
        .filter(lesson_progress::Column::CourseId.eq(course_id))
        .filter(lesson_progress::Column::Status.eq("completed"))
        .count(db)
        .await?;
    let completed_at = enrollment::Entity::find()
        .filter(enrollment::Column::UserId.eq(user_id))
        .filter(enrollment::Column::CourseId.eq(course_id))
        .one(db)
        .await?
        .and_then(|e| e.completed_at);
    Ok(CourseRollup {
        course_id,
        completed_lessons: completed,
        total_lessons: total,
        percent: percent(completed, total),
        completed_at,
    })
}

/// Enrollments in courses taught by `instructor`.
fn taught_by(instructor: Uuid) -> sea_orm::sea_query::SimpleExpr {
    enrollment::Column::CourseId.in_subquery(
        Query::select()
            .column(course::Column::Id)
            .from(course::Entity)
            .and_where(course::Column::InstructorId.eq(instructor))
            .to_owned(),
    )
}

/// The lessons of `course_ids` that `user_id` has completed.
pub async fn completed_lessons<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    course_ids: &[Uuid],
) -> Result<HashSet<Uuid>, DbErr> {
    Ok(lesson_progress::Entity::find()
        .select_only()
        .column(lesson_progress::Column::LessonId)
        .filter(lesson_progress::Column::UserId.eq(user_id))
        .filter(lesson_progress::Column::CourseId.is_in(course_ids.iter().copied()))
        .filter(lesson_progress::Column::Status.eq("completed"))
        .into_tuple::<Uuid>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

pub struct ProgressService {
    pub db: Db,
    /// For recomputing a learning path when a course is completed (assessments integration).
    pub learning_rules: std::sync::Arc<crate::assessments::engine::LearningRules>,
    /// Live events (issue 5), published after each progress transaction commits.
    pub events: crate::infra::realtime::EventBus,
    /// Achievement emails are queued in the transaction that awards them.
    pub email: crate::email::EmailService,
}

impl ProgressService {
    /// Enrolls a student in a course they can see. Returns the enrollment and whether it is new.
    pub async fn enroll(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        course_id: Uuid,
    ) -> Result<(EnrollmentView, bool), ProgressError> {
        let txn = self.db.begin_write().await?;
        let visible = course::Entity::find_by_id(course_id).one(&*txn).await?.is_some_and(|c| can_view(&c, p));
        if !visible {
            return Err(ProgressError::NotFound);
        }
        // The unique (user, course) index makes enrolling twice, even concurrently, one row.
        let inserted = enrollment::Entity::insert(enrollment::ActiveModel {
            id: sea_orm::ActiveValue::Set(Uuid::now_v7()),
            user_id: sea_orm::ActiveValue::Set(p.user_id),
            course_id: sea_orm::ActiveValue::Set(course_id),
            enrolled_at: sea_orm::ActiveValue::Set(Utc::now()),
            completed_at: sea_orm::ActiveValue::Set(None),
        })
        .on_conflict_do_nothing_on([enrollment::Column::UserId, enrollment::Column::CourseId])
        .exec_without_returning(&*txn)
        .await?;
        let created = matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0);
        let e = enrollment::Entity::find()
            .filter(enrollment::Column::UserId.eq(p.user_id))
            .filter(enrollment::Column::CourseId.eq(course_id))
            .one(&*txn)
            .await?
            .ok_or_else(|| ProgressError::Internal("enrollment vanished".into()))?;
        if created {
            audit::record(
                &*txn,
                ctx,
                Event::new("enrollment.create", Some(p.user_id))
                    .target("course", course_id)
                    .details(json!({"enrollment_id": e.id})),
            )
            .await?;
        }
        txn.commit().await?;
        Ok((e.into(), created))
    }

    pub async fn list_enrollments(
        &self,
        p: &Principal,
        page: PageRequest,
    ) -> Result<Page<EnrollmentView>, ProgressError> {
        let mut q = enrollment::Entity::find()
            .filter(enrollment::Column::UserId.eq(p.user_id))
            .order_by_asc(enrollment::Column::Id)
            .limit(page.limit + 1);
        if let Some(after) = page.after {
            q = q.filter(enrollment::Column::Id.gt(after));
        }
        let rows = q.all(&self.db.conn).await?;
        Ok(Page::from_rows(rows.into_iter().map(EnrollmentView::from).collect(), page, |e| e.id))
    }

    pub async fn put_lesson_progress(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        lesson_id: Uuid,
        input: ProgressUpdate,
    ) -> Result<LessonProgressResult, ProgressError> {
        let mut errors = Vec::new();
        let u = normalize("", input.status, input.progress, input.time_spent_seconds, input.score, &mut errors);
        if !errors.is_empty() {
            return Err(ProgressError::Validation(errors));
        }
        let now = Utc::now();
        let txn = self.db.begin_write().await?;
        let l = lesson::Entity::find_by_id(lesson_id).one(&*txn).await?.ok_or(ProgressError::NotFound)?;
        if lock_enrollments(&*txn, p.user_id, &[l.course_id]).await?.is_empty() {
            return Err(ProgressError::NotFound);
        }
        // Deletes take the enrollment locks before removing lessons, so once we hold them no
        // delete is in flight, but one may have committed while we waited: look again.
        if txn.get_database_backend() == DbBackend::Postgres
            && lesson::Entity::find_by_id(lesson_id).one(&*txn).await?.is_none()
        {
            return Err(ProgressError::NotFound);
        }
        let row = upsert(&*txn, p.user_id, &l, &u, now, now).await?;
        touch_activity(&*txn, p.user_id, [hour_of(now)]).await?;
        let course_completed = if row.status == "completed" {
            complete_finished_enrollments(&*txn, l.course_id, Some(p.user_id), now).await? > 0
        } else {
            false
        };
        let rollup = course_rollup(&*txn, p.user_id, l.course_id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("progress.update", Some(p.user_id)).target("lesson", l.id).details(json!({
                "course_id": l.course_id,
                "status": row.status,
                "progress": row.progress,
                "time_spent_seconds": row.time_spent_seconds,
                "score": row.score,
            })),
        )
        .await?;
        if course_completed {
            audit::record(&*txn, ctx, Event::new("course.completed", Some(p.user_id)).target("course", l.course_id))
                .await?;
        }
        // Assessments integration: a completed course leaves the student's learning path.
        if course_completed {
            crate::assessments::paths::on_course_completed(&*txn, &self.learning_rules, p.user_id, now).await?;
        }
        // Issue 5 (live progress): notifications and achievements are written in this
        // transaction; their live events are published only once it has committed.
        let lesson_view = LessonProgressView::from(row);
        let completed: &[Uuid] = if course_completed { &[l.course_id] } else { &[] };
        let live = crate::notifications::progress::after_progress(
            &*txn,
            ctx,
            p.user_id,
            Some(&lesson_view),
            std::slice::from_ref(&rollup),
            completed,
        )
        .await?;
        self.email.enqueue_awards(&*txn, &live).await?;
        txn.commit().await?;
        self.email.notify_committed();
        live.publish(&self.events);
        Ok(LessonProgressResult { lesson: lesson_view, course: rollup })
    }

    pub async fn apply_batch(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        batch: ProgressBatch,
    ) -> Result<BatchResult, ProgressError> {
        if batch.events.len() > MAX_BATCH_EVENTS {
            return Err(ProgressError::Validation(vec![(
                "events".into(),
                format!("at most {MAX_BATCH_EVENTS} events per batch"),
            )]));
        }
        // Validate everything first: one bad event rejects the batch and nothing is written.
        let mut errors = Vec::new();
        let mut events: Vec<(usize, &ProgressEvent, Normalized)> = Vec::new();
        for (i, e) in batch.events.iter().enumerate() {
            let prefix = format!("events[{i}].");
            let n = e.event_id.chars().count();
            if n == 0 || n > 100 || e.event_id.chars().any(char::is_control) {
                errors.push((format!("{prefix}event_id"), "must be 1 to 100 printable characters".into()));
            }
            let u = normalize(&prefix, e.status, e.progress, e.time_spent_seconds, e.score, &mut errors);
            events.push((i, e, u));
        }
        if !errors.is_empty() {
            return Err(ProgressError::Validation(errors));
        }
        // Applied in the order they happened; the index breaks ties, so order is deterministic.
        events.sort_by_key(|(i, e, _)| (e.occurred_at, *i));

        let now = Utc::now();
        let txn = self.db.begin_write().await?;
        let lesson_ids: HashSet<Uuid> = events.iter().map(|(_, e, _)| e.lesson_id).collect();
        let lessons: HashMap<Uuid, lesson::Model> = if lesson_ids.is_empty() {
            HashMap::new()
        } else {
            lesson::Entity::find()
                .filter(lesson::Column::Id.is_in(lesson_ids))
                .all(&*txn)
                .await?
                .into_iter()
                .map(|l| (l.id, l))
                .collect()
        };
        let course_ids: BTreeSet<Uuid> = lessons.values().map(|l| l.course_id).collect();
        let enrolled = lock_enrollments(&*txn, p.user_id, &course_ids.into_iter().collect::<Vec<_>>()).await?;
        // As in `put_lesson_progress`: a lesson deleted while we waited for the locks is gone.
        let lessons = if txn.get_database_backend() == DbBackend::Postgres && !lessons.is_empty() {
            lesson::Entity::find()
                .filter(lesson::Column::Id.is_in(lessons.keys().copied()))
                .all(&*txn)
                .await?
                .into_iter()
                .map(|l| (l.id, l))
                .collect()
        } else {
            lessons
        };

        let mut result =
            BatchResult { received: events.len(), applied: 0, duplicates: 0, rejected: vec![], courses: vec![] };
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        let mut hours: BTreeSet<i64> = BTreeSet::new();
        let mut completed_courses: Vec<Uuid> = Vec::new();
        for (_, e, u) in &events {
            let Some(l) = lessons.get(&e.lesson_id).filter(|l| enrolled.contains_key(&l.course_id)) else {
                result.rejected.push(RejectedEvent { event_id: e.event_id.clone(), reason: "not_found".into() });
                continue;
            };
            // A client clock in the future does not get to date progress ahead of the server.
            let at = e.occurred_at.min(now);
            let fresh = progress_event::Entity::insert(progress_event::ActiveModel {
                user_id: sea_orm::ActiveValue::Set(p.user_id),
                event_id: sea_orm::ActiveValue::Set(e.event_id.clone()),
                lesson_id: sea_orm::ActiveValue::Set(l.id),
                occurred_at: sea_orm::ActiveValue::Set(at),
                received_at: sea_orm::ActiveValue::Set(now),
            })
            .on_conflict_do_nothing_on([progress_event::Column::UserId, progress_event::Column::EventId])
            .exec_without_returning(&*txn)
            .await?;
            if !matches!(fresh, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
                result.duplicates += 1;
                continue;
            }
            let row = upsert(&*txn, p.user_id, l, u, at, now).await?;
            result.applied += 1;
            touched.insert(l.course_id);
            hours.insert(hour_of(at));
            if row.status == "completed"
                && complete_finished_enrollments(&*txn, l.course_id, Some(p.user_id), at).await? > 0
            {
                completed_courses.push(l.course_id);
            }
        }
        touch_activity(&*txn, p.user_id, hours).await?;
        for c in &touched {
            result.courses.push(course_rollup(&*txn, p.user_id, *c).await?);
        }
        audit::record(
            &*txn,
            ctx,
            Event::new("progress.batch", Some(p.user_id)).target("user", p.user_id).details(json!({
                "received": result.received,
                "applied": result.applied,
                "duplicates": result.duplicates,
                "rejected": result.rejected.len(),
                "courses": touched,
            })),
        )
        .await?;
        // Assessments integration: a completed course leaves the student's learning path.
        if !completed_courses.is_empty() {
            crate::assessments::paths::on_course_completed(&*txn, &self.learning_rules, p.user_id, now).await?;
        }
        for c in &completed_courses {
            audit::record(&*txn, ctx, Event::new("course.completed", Some(p.user_id)).target("course", c)).await?;
        }
        // Issue 5 (live progress): as in `put_lesson_progress`; nothing applied, nothing to say.
        let live = if result.applied > 0 {
            crate::notifications::progress::after_progress(
                &*txn,
                ctx,
                p.user_id,
                None,
                &result.courses,
                &completed_courses,
            )
            .await?
        } else {
            Default::default()
        };
        self.email.enqueue_awards(&*txn, &live).await?;
        txn.commit().await?;
        self.email.notify_committed();
        live.publish(&self.events);
        Ok(result)
    }

    /// Per-course progress of `user_id`'s enrollments, optionally only in courses taught by
    /// `instructor`. Rollups are computed from the current outline on every read, so adding or
    /// removing lessons is reflected at once.
    pub async fn course_progress(
        &self,
        user_id: Uuid,
        instructor: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Page<CourseProgress>, ProgressError> {
        let db = &self.db.conn;
        let mut q = enrollment::Entity::find()
            .filter(enrollment::Column::UserId.eq(user_id))
            .order_by_asc(enrollment::Column::Id)
            .limit(page.limit + 1);
        if let Some(after) = page.after {
            q = q.filter(enrollment::Column::Id.gt(after));
        }
        if let Some(i) = instructor {
            q = q.filter(taught_by(i));
        }
        let enrollments = q.all(db).await?;
        // Only the page's courses are loaded; the extra "is there more" row is included, which
        // costs a little and keeps the code simple.
        let ids: Vec<Uuid> = enrollments.iter().map(|e| e.course_id).collect();
        let (courses, modules, lessons, done) = if ids.is_empty() {
            Default::default()
        } else {
            let courses: HashMap<Uuid, course::Model> = course::Entity::find()
                .filter(course::Column::Id.is_in(ids.clone()))
                .all(db)
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect();
            let modules = module::Entity::find()
                .filter(module::Column::CourseId.is_in(ids.clone()))
                .order_by_asc(module::Column::CourseId)
                .order_by_asc(module::Column::Position)
                .all(db)
                .await?;
            let lessons = lesson::Entity::find()
                .filter(lesson::Column::CourseId.is_in(ids.clone()))
                .order_by_asc(lesson::Column::Position)
                .all(db)
                .await?;
            let done = completed_lessons(db, user_id, &ids).await?;
            (courses, modules, lessons, done)
        };
        let mut lessons_by_module: HashMap<Uuid, Vec<&lesson::Model>> = HashMap::new();
        for l in &lessons {
            lessons_by_module.entry(l.module_id).or_default().push(l);
        }
        let items = enrollments
            .into_iter()
            .map(|e| {
                let mut out = CourseProgress {
                    course_id: e.course_id,
                    title: courses.get(&e.course_id).map(|c| c.title.clone()).unwrap_or_default(),
                    completed_lessons: 0,
                    total_lessons: 0,
                    percent: 0.0,
                    next_lesson_id: None,
                    completed_at: e.completed_at,
                    enrolled_at: e.enrolled_at,
                    modules: vec![],
                };
                // `modules` is ordered by course then position, lessons by position: walking
                // them in order visits the outline in reading order.
                for m in modules.iter().filter(|m| m.course_id == e.course_id) {
                    let ls = lessons_by_module.get(&m.id).map(Vec::as_slice).unwrap_or(&[]);
                    let completed = ls.iter().filter(|l| done.contains(&l.id)).count() as u64;
                    if out.next_lesson_id.is_none() {
                        out.next_lesson_id = ls.iter().find(|l| !done.contains(&l.id)).map(|l| l.id);
                    }
                    out.completed_lessons += completed;
                    out.total_lessons += ls.len() as u64;
                    out.modules.push(ModuleRollup {
                        module_id: m.id,
                        completed_lessons: completed,
                        total_lessons: ls.len() as u64,
                        percent: percent(completed, ls.len() as u64),
                    });
                }
                out.percent = percent(out.completed_lessons, out.total_lessons);
                (e.id, out)
            })
            .collect::<Vec<_>>();
        let page = Page::from_rows(items, page, |(id, _)| *id);
        Ok(Page { items: page.items.into_iter().map(|(_, c)| c).collect(), next_cursor: page.next_cursor })
    }

    /// `GET /users/{id}/progress`: admins see every course; an instructor only the courses
    /// they teach, and only for a student enrolled in one of them. Anyone else: 404.
    pub async fn user_progress(
        &self,
        p: &Principal,
        user_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<CourseProgress>, ProgressError> {
        let instructor = match p.role {
            Role::Admin => None,
            Role::Instructor => Some(p.user_id),
            Role::Student => return Err(ProgressError::NotFound),
        };
        let exists = match instructor {
            None => crate::entities::user::Entity::find_by_id(user_id).count(&self.db.conn).await? > 0,
            Some(i) => {
                enrollment::Entity::find()
                    .filter(enrollment::Column::UserId.eq(user_id))
                    .filter(taught_by(i))
                    .count(&self.db.conn)
                    .await?
                    > 0
            }
        };
        if !exists {
            return Err(ProgressError::NotFound);
        }
        self.course_progress(user_id, instructor, page).await
    }

    /// Consecutive days with any progress, ending today or yesterday (a streak is not broken
    /// until a whole day passes without learning), in the given UTC offset.
    pub async fn streak_days(&self, user_id: Uuid, utc_offset_minutes: i32) -> Result<u32, ProgressError> {
        let now = Utc::now();
        // A year and a bit bounds the read; a longer streak shows as that long.
        let since = hour_of(now - Duration::days(400));
        let hours: Vec<i64> = activity_hour::Entity::find()
            .select_only()
            .column(activity_hour::Column::Hour)
            .filter(activity_hour::Column::UserId.eq(user_id))
            .filter(activity_hour::Column::Hour.gte(since))
            .into_tuple::<i64>()
            .all(&self.db.conn)
            .await?;
        let offset = i64::from(utc_offset_minutes) * 60;
        let day = |secs: i64| (secs + offset).div_euclid(86_400);
        let days: HashSet<i64> = hours.iter().map(|h| day(h * 3600)).collect();
        let today = day(now.timestamp());
        let mut d = if days.contains(&today) { today } else { today - 1 };
        let mut streak = 0;
        while days.contains(&d) {
            streak += 1;
            d -= 1;
        }
        Ok(streak)
    }
}
