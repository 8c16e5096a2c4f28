//! What follows a completed assessment: the learning path is rebuilt from the new skill levels,
//! the student hears about both, a high score may earn an achievement, and the results email is
//! queued once. Audited with the integration client as the actor (the audit trail's actor has
//! no foreign key, so a client id is as good as a user id there).

use chrono::Utc;
use serde_json::json;

use super::{Pass, Reactions, email_failed};
use crate::{
    assessments::{engine, paths},
    email::Template,
    kernel::{
        audit::{self, Event},
        facts::{AssessmentCompleted, Fact, ReactionError},
    },
    notifications::{self, NewNotification},
};

impl Reactions {
    pub(super) async fn assessment_completed(
        &self,
        pass: &mut Pass<'_>,
        f: AssessmentCompleted,
    ) -> Result<(), ReactionError> {
        let txn = pass.txn;
        let a = &f.assessment;
        let path = paths::recompute(&**txn, &self.rules, a.user_id, Some(a.id), Utc::now()).await?;
        let score = engine::fmt_score(f.overall_score);
        notifications::create(
            txn,
            &self.events,
            NewNotification {
                user_id: a.user_id,
                kind: "assessment.completed",
                title: "Your assessment results are in",
                body: &format!("Your overall score was {score}/100."),
                data: json!({"assessment_id": a.id, "overall_score": f.overall_score}),
            },
            vec![],
        )
        .await?;
        notifications::create(
            txn,
            &self.events,
            NewNotification {
                user_id: a.user_id,
                kind: "learning_path.updated",
                title: "Your learning path is ready",
                body: &format!("{} recommended steps, based on your assessment.", path.steps.len()),
                data: json!({"assessment_id": a.id, "steps": path.steps.len()}),
            },
            vec![],
        )
        .await?;
        // A high score may earn an achievement (its rule and threshold are data).
        let awards = crate::achievements::on_assessment_score(&**txn, a.user_id, f.overall_score).await?;
        pass.queue.extend(awards.into_iter().map(Fact::AchievementAwarded));
        // The results email, once per assessment; the student may have switched it off.
        self.email
            .enqueue_for_user_once(
                txn,
                a.user_id,
                Template::AssessmentResults,
                json!({"overall_score": score, "path_url": self.email.link("/learning-path")}),
                Some(format!("assessment-results:{}", a.id)),
            )
            .await
            .map_err(email_failed)?;
        let by_client = json!({
            "actor_type": "integration_client",
            "client_id": f.client_id,
        });
        let mut details = by_client.clone();
        details["external_id"] = json!(f.external_id);
        details["user_id"] = json!(a.user_id);
        details["overall_score"] = json!(f.overall_score);
        details["skills"] = json!(f.skills);
        audit::record(
            &**txn,
            pass.ctx,
            Event::new("assessment.complete", Some(f.client_id)).target("assessment", a.id).details(details),
        )
        .await?;
        let mut details = by_client;
        details["assessment_id"] = json!(a.id);
        details["steps"] = json!(path.steps.len());
        audit::record(
            &**txn,
            pass.ctx,
            Event::new("learning_path.update", Some(f.client_id)).target("user", a.user_id).details(details),
        )
        .await?;
        Ok(())
    }
}
