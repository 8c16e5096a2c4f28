//! The writes of progress: enrolling, one lesson's progress, and offline batches. Each write
//! reports what happened as facts; their consequences (audit, notifications, achievements,
//! live events) are the reactor's.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{SubsecRound, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use super::{
    ProgressError, ProgressService,
    access::complete_finished_enrollments,
    model::{
        BatchResult, EnrollmentView, LessonProgressResult, LessonProgressView, MAX_BATCH_EVENTS, ProgressBatch,
        ProgressEvent, ProgressStatus, ProgressUpdate, RejectedEvent,
    },
    store::{Normalized, course_rollup, hour_of, lock_enrollments, normalize, touch_activity, update_target, upsert},
};
use crate::{
    catalog::access::can_view,
    entities::{course, enrollment, lesson, progress_event},
    infra::db::WriteTxn,
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        facts::{CompletionCause, CourseCompleted, Fact, LessonProgressed, ProgressBatchApplied},
        fields::FieldErrors,
        input::ClientKey,
    },
};

/// Longest client-chosen event id.
const EVENT_ID_MAX: usize = 100;

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
            id: Set(Uuid::now_v7()),
            user_id: Set(p.user_id),
            course_id: Set(course_id),
            enrolled_at: Set(Utc::now()),
            completed_at: Set(None),
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
            .ok_or(ProgressError::NotFound)?;
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

    pub async fn put_lesson_progress(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        lesson_id: Uuid,
        input: ProgressUpdate,
    ) -> Result<LessonProgressResult, ProgressError> {
        let mut errors = FieldErrors::new();
        let u = normalize(input.status, input.progress, input.time_spent_seconds, input.score, &mut errors);
        errors.into_result()?;
        // To the microsecond, as PostgreSQL keeps it: the completion time answered here is the
        // one every later read returns.
        let now = Utc::now().trunc_subsecs(6);
        let txn = self.db.begin_write().await?;
        let target = update_target(&*txn, p.user_id, lesson_id, now).await?.ok_or(ProgressError::NotFound)?;
        let lesson = target.lesson();
        let row = upsert(&*txn, p.user_id, lesson, &u, now, now).await?.ok_or(ProgressError::NotFound)?;
        if !target.active_this_hour() {
            touch_activity(&*txn, p.user_id, [hour_of(now)]).await?;
        }
        let mut rollup = course_rollup(&*txn, p.user_id, lesson.course_id).await?;
        // Under the enrollment lock the counts are final: only the last lesson can finish it.
        let completed_course = row.status == ProgressStatus::Completed
            && rollup.completed_at.is_none()
            && rollup.total_lessons > 0
            && rollup.completed_lessons >= rollup.total_lessons
            && !complete_finished_enrollments(&*txn, lesson.course_id, Some(p.user_id), now).await?.is_empty();
        if completed_course {
            rollup.completed_at = Some(now);
        }
        let mut facts = vec![Fact::LessonProgressed(LessonProgressed {
            user_id: p.user_id,
            progress: row.clone(),
            course: rollup.clone(),
            instructor_id: target.instructor_id,
            first_activity_today: !target.active_today(),
        })];
        if completed_course {
            facts.push(Fact::CourseCompleted(CourseCompleted {
                user_id: p.user_id,
                course_id: lesson.course_id,
                at: now,
                cause: CompletionCause::Progress,
            }));
        }
        self.reactor.react(&txn, ctx, facts).await?;
        txn.commit().await?;
        Ok(LessonProgressResult { lesson: LessonProgressView::from(row), course: rollup })
    }

    pub async fn apply_batch(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        batch: ProgressBatch,
    ) -> Result<BatchResult, ProgressError> {
        let events = validate_batch(&batch)?;
        let now = Utc::now();
        let txn = self.db.begin_write().await?;
        let lessons = self.batch_lessons(&txn, p.user_id, &events).await?;
        let enrolled = lessons.enrolled;
        let lessons = lessons.lessons;

        let mut result =
            BatchResult { received: events.len(), applied: 0, duplicates: 0, rejected: vec![], courses: vec![] };
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        let mut hours: BTreeSet<i64> = BTreeSet::new();
        let mut completed_lessons = false;
        let mut completions = Vec::new();
        for (e, u) in &events {
            let Some(l) = lessons.get(&e.lesson_id).filter(|l| enrolled.contains(&l.course_id)) else {
                result.rejected.push(RejectedEvent { event_id: e.event_id.clone(), reason: "not_found".into() });
                continue;
            };
            // A client clock in the future does not get to date progress ahead of the server.
            let at = e.occurred_at.min(now);
            let fresh = progress_event::Entity::insert(progress_event::ActiveModel {
                user_id: Set(p.user_id),
                event_id: Set(e.event_id.clone()),
                lesson_id: Set(l.id),
                occurred_at: Set(at),
                received_at: Set(now),
            })
            .on_conflict_do_nothing_on([progress_event::Column::UserId, progress_event::Column::EventId])
            .exec_without_returning(&*txn)
            .await?;
            if !matches!(fresh, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
                result.duplicates += 1;
                continue;
            }
            // The lessons were read again under the enrollment locks: none can be gone.
            let row = upsert(&*txn, p.user_id, l.into(), u, at, now).await?.ok_or(ProgressError::NotFound)?;
            result.applied += 1;
            touched.insert(l.course_id);
            hours.insert(hour_of(at));
            if row.status == ProgressStatus::Completed {
                completed_lessons = true;
                if !complete_finished_enrollments(&*txn, l.course_id, Some(p.user_id), at).await?.is_empty() {
                    completions.push(Fact::CourseCompleted(CourseCompleted {
                        user_id: p.user_id,
                        course_id: l.course_id,
                        at,
                        cause: CompletionCause::Progress,
                    }));
                }
            }
        }
        touch_activity(&*txn, p.user_id, hours).await?;
        for c in &touched {
            result.courses.push(course_rollup(&*txn, p.user_id, *c).await?);
        }
        let mut facts = vec![Fact::ProgressBatchApplied(ProgressBatchApplied {
            user_id: p.user_id,
            received: result.received,
            applied: result.applied,
            duplicates: result.duplicates,
            rejected: result.rejected.len(),
            courses: result.courses.clone(),
            completed_lessons,
        })];
        facts.extend(completions);
        self.reactor.react(&txn, ctx, facts).await?;
        txn.commit().await?;
        Ok(result)
    }

    /// The lessons a batch names, and the courses among theirs the student is enrolled in
    /// (their enrollment rows locked, as for a single update).
    async fn batch_lessons(
        &self,
        txn: &WriteTxn,
        user_id: Uuid,
        events: &[(&ProgressEvent, Normalized)],
    ) -> Result<BatchLessons, ProgressError> {
        let lesson_ids: HashSet<Uuid> = events.iter().map(|(e, _)| e.lesson_id).collect();
        let find = |ids: Vec<Uuid>| async move {
            if ids.is_empty() {
                return Ok(HashMap::new());
            }
            Ok::<_, sea_orm::DbErr>(
                lesson::Entity::find()
                    .filter(lesson::Column::Id.is_in(ids))
                    .all(&**txn)
                    .await?
                    .into_iter()
                    .map(|l| (l.id, l))
                    .collect::<HashMap<Uuid, lesson::Model>>(),
            )
        };
        let lessons = find(lesson_ids.into_iter().collect()).await?;
        let course_ids: BTreeSet<Uuid> = lessons.values().map(|l| l.course_id).collect();
        let enrolled: HashSet<Uuid> =
            lock_enrollments(&**txn, user_id, &course_ids.into_iter().collect::<Vec<_>>()).await?.into_keys().collect();
        // As in `put_lesson_progress`: a lesson deleted while we waited for the locks is gone.
        let lessons = if txn.get_database_backend() == DbBackend::Postgres {
            find(lessons.keys().copied().collect()).await?
        } else {
            lessons
        };
        Ok(BatchLessons { lessons, enrolled })
    }
}

struct BatchLessons {
    lessons: HashMap<Uuid, lesson::Model>,
    enrolled: HashSet<Uuid>,
}

/// Validates every event first (one bad event rejects the batch and nothing is written), then
/// orders them as they happened; the index breaks ties, so the order is deterministic.
fn validate_batch(batch: &ProgressBatch) -> Result<Vec<(&ProgressEvent, Normalized)>, ProgressError> {
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(FieldErrors::one("events", format!("at most {MAX_BATCH_EVENTS} events per batch")).into());
    }
    let mut errors = FieldErrors::new();
    let mut events: Vec<(usize, &ProgressEvent, Normalized)> = Vec::new();
    for (i, e) in batch.events.iter().enumerate() {
        let mut event_errors = FieldErrors::new();
        event_errors.check("event_id", ClientKey::parse(&e.event_id, EVENT_ID_MAX));
        let u = normalize(e.status, e.progress, e.time_spent_seconds, e.score, &mut event_errors);
        errors.nest(&format!("events[{i}]"), event_errors);
        events.push((i, e, u));
    }
    errors.into_result()?;
    events.sort_by_key(|(i, e, _)| (e.occurred_at, *i));
    Ok(events.into_iter().map(|(_, e, u)| (e, u)).collect())
}
