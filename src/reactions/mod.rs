//! What follows what. Domain writes report facts ([`Fact`]); this module alone decides their
//! consequences — audit rows, notifications, learning-path recomputes, achievements, queued
//! emails and live events — inside the transaction that made the fact, so that every door to
//! the same fact (a lesson completed by one update, by an offline batch, or a course finished
//! because its instructor removed the lessons a student had left) has the same consequences.
//!
//! Live events and worker wake-ups are registered on the transaction and leave only when it
//! commits.
//!
//! Dependency rule: `reactions` may import every domain; no domain imports `reactions`. Domains
//! reach it through the [`Reactor`] trait that the composition root wires in.

mod achievements;
mod assessments;
mod progress;
mod submissions;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

use futures_util::future::BoxFuture;
use sea_orm::{DbErr, EntityTrait};
use uuid::Uuid;

use crate::{
    assessments::engine::LearningRules,
    email::{EmailError, EmailService},
    entities::{course, enums::Role, user},
    infra::{db::WriteTxn, realtime::EventBus},
    kernel::{
        context::RequestContext,
        facts::{Fact, ReactionError, Reactor},
    },
};

pub struct Reactions {
    pub events: EventBus,
    pub email: EmailService,
    pub rules: Arc<LearningRules>,
}

impl Reactor for Reactions {
    fn react<'a>(
        &'a self,
        txn: &'a WriteTxn,
        ctx: &'a RequestContext,
        facts: Vec<Fact>,
    ) -> BoxFuture<'a, Result<(), ReactionError>> {
        Box::pin(self.apply(txn, ctx, facts))
    }
}

/// The state of one reaction pass: facts still to handle and work that is done once per
/// student however many facts asked for it.
struct Pass<'a> {
    txn: &'a WriteTxn,
    ctx: &'a RequestContext,
    queue: VecDeque<Fact>,
    /// Students whose learning path may have changed (a course completed).
    paths_due: BTreeSet<Uuid>,
    /// Students whose progress-based achievements are due, and which.
    achievements_due: BTreeMap<Uuid, crate::achievements::ProgressDue>,
    courses: HashMap<Uuid, Option<course::Model>>,
    /// A course's instructor when still an active instructor, once known.
    instructors: HashMap<Uuid, Option<Uuid>>,
}

impl Pass<'_> {
    /// The course's instructor, when they are not `user_id` and still an active instructor:
    /// they watch their students live. A demoted or deactivated one sees nothing, exactly as
    /// the API refuses them the students' progress.
    async fn instructor_besides(&mut self, course_id: Uuid, user_id: Uuid) -> Result<Vec<Uuid>, DbErr> {
        let instructor = match self.instructors.get(&course_id) {
            Some(known) => *known,
            None => {
                let found = self.active_instructor(course_id).await?;
                self.instructors.insert(course_id, found);
                found
            }
        };
        Ok(instructor.filter(|i| *i != user_id).into_iter().collect())
    }

    async fn active_instructor(&mut self, course_id: Uuid) -> Result<Option<Uuid>, DbErr> {
        let Some(instructor) = self.course(course_id).await?.map(|c| c.instructor_id) else { return Ok(None) };
        let teaches = user::Entity::find_by_id(instructor)
            .one(&**self.txn)
            .await?
            .is_some_and(|u| u.is_active && u.role == Role::Instructor);
        Ok(teaches.then_some(instructor))
    }

    /// The course's active instructor as a fact read it with its own rows: no need to look again.
    fn knows_instructor(&mut self, course_id: Uuid, instructor_id: Option<Uuid>) {
        self.instructors.insert(course_id, instructor_id);
    }

    async fn course(&mut self, course_id: Uuid) -> Result<Option<&course::Model>, DbErr> {
        if !self.courses.contains_key(&course_id) {
            let c = course::Entity::find_by_id(course_id).one(&**self.txn).await?;
            self.courses.insert(course_id, c);
        }
        Ok(self.courses.get(&course_id).and_then(Option::as_ref))
    }

    fn achievements_due(&mut self, user_id: Uuid, due: crate::achievements::ProgressDue) {
        let entry = self.achievements_due.entry(user_id).or_default();
        entry.counts |= due.counts;
        entry.streak |= due.streak;
    }
}

impl Reactions {
    async fn apply(&self, txn: &WriteTxn, ctx: &RequestContext, facts: Vec<Fact>) -> Result<(), ReactionError> {
        let mut pass = Pass {
            txn,
            ctx,
            queue: facts.into(),
            paths_due: BTreeSet::new(),
            achievements_due: BTreeMap::new(),
            courses: HashMap::new(),
            instructors: HashMap::new(),
        };
        loop {
            while let Some(fact) = pass.queue.pop_front() {
                self.handle(&mut pass, fact).await?;
            }
            // Once per student, after every fact that could move them has been handled.
            for user_id in std::mem::take(&mut pass.paths_due) {
                self.recompute_path_if_any(&pass, user_id).await?;
            }
            let due = std::mem::take(&mut pass.achievements_due);
            if due.is_empty() {
                return Ok(());
            }
            for (user_id, due) in due {
                let awards = crate::achievements::on_progress(&**txn, user_id, due).await?;
                pass.queue.extend(awards.into_iter().map(Fact::AchievementAwarded));
            }
        }
    }

    async fn handle(&self, pass: &mut Pass<'_>, fact: Fact) -> Result<(), ReactionError> {
        match fact {
            Fact::LessonProgressed(f) => self.lesson_progressed(pass, f).await,
            Fact::ProgressBatchApplied(f) => self.batch_applied(pass, f).await,
            Fact::CourseCompleted(f) => self.course_completed(pass, f).await,
            Fact::OutlineShrunk(f) => self.outline_shrunk(pass, f).await,
            Fact::AssessmentCompleted(f) => self.assessment_completed(pass, f).await,
            Fact::AchievementAwarded(f) => self.achievement_awarded(pass, f).await,
            Fact::SubmissionCreated(f) => self.submission_created(pass, f).await,
            Fact::FileScanned(f) => self.file_scanned(pass, f).await,
            Fact::SubmissionReviewed(f) => self.submission_reviewed(pass, f).await,
        }
    }
}

fn email_failed(e: EmailError) -> ReactionError {
    match e {
        EmailError::Db(e) => ReactionError::Db(e),
        other => ReactionError::Email(Box::new(other)),
    }
}
