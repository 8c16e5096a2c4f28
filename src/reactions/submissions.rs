//! What follows a project hand-in, a late malware verdict and a review: the audit trail, the
//! student told (stored and live) when a file was refused as infected or a reviewer answered,
//! the review email by preference, and the achievement for approved projects.

use sea_orm::EntityTrait;
use serde_json::json;

use super::{Pass, Reactions, email_failed};
use crate::{
    email::Template,
    entities::{
        enums::{ScanStatus, SubmissionStatus},
        submission, submission_file,
    },
    kernel::{
        audit::{self, Event},
        facts::{Fact, FileScanned, ReactionError, SubmissionCreated, SubmissionReviewed},
    },
    notifications::{self, NewNotification},
};

impl Reactions {
    pub(super) async fn submission_created(
        &self,
        pass: &mut Pass<'_>,
        f: SubmissionCreated,
    ) -> Result<(), ReactionError> {
        let s = &f.submission;
        audit::record(
            &**pass.txn,
            pass.ctx,
            Event::new("submission.create", Some(s.user_id)).target("submission", s.id).details(json!({
                "lesson_id": s.lesson_id,
                "version": s.version,
                "files": f.files.len(),
                "total_bytes": s.total_bytes,
                "status": s.status,
            })),
        )
        .await?;
        for file in f.files.iter().filter(|file| file.scan_status != ScanStatus::NotScanned) {
            record_scan(pass, file, None).await?;
        }
        if s.status == SubmissionStatus::Rejected {
            let infected = f.files.iter().find(|file| file.scan_status.refused());
            self.tell_rejected(pass, s, &f.lesson_title, infected).await?;
        }
        Ok(())
    }

    pub(super) async fn file_scanned(&self, pass: &mut Pass<'_>, f: FileScanned) -> Result<(), ReactionError> {
        // A verdict reached by the retry job has no caller: the scanner is the actor.
        record_scan(pass, &f.file, Some("retry")).await?;
        if f.rejected {
            let lesson = crate::entities::lesson::Entity::find_by_id(f.submission.lesson_id).one(&**pass.txn).await?;
            let title = lesson.map(|l| l.title).unwrap_or_default();
            self.tell_rejected(pass, &f.submission, &title, Some(&f.file)).await?;
        }
        Ok(())
    }

    async fn tell_rejected(
        &self,
        pass: &mut Pass<'_>,
        s: &submission::Model,
        lesson_title: &str,
        infected: Option<&submission_file::Model>,
    ) -> Result<(), ReactionError> {
        let filename = infected.map(|f| f.filename.as_str()).unwrap_or("a file");
        let why = if infected.is_some_and(|f| f.scan_status == ScanStatus::Unscannable) {
            "could not check"
        } else {
            "found something harmful in"
        };
        notifications::create(
            pass.txn,
            &self.events,
            NewNotification {
                user_id: s.user_id,
                kind: "submission.rejected",
                title: "A file of your project was refused",
                body: &format!(
                    "Our virus checker {why} {filename} of your project \"{lesson_title}\", so it was removed. \
                     Please hand in your project again without it."
                ),
                data: json!({"submission_id": s.id, "lesson_id": s.lesson_id, "file_id": infected.map(|f| f.id)}),
            },
            vec![],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn submission_reviewed(
        &self,
        pass: &mut Pass<'_>,
        f: SubmissionReviewed,
    ) -> Result<(), ReactionError> {
        let s = &f.submission;
        let approved = s.status == SubmissionStatus::Approved;
        let outcome = if approved { "approved" } else { "changes requested" };
        notifications::create(
            pass.txn,
            &self.events,
            NewNotification {
                user_id: s.user_id,
                kind: "submission.reviewed",
                title: &format!("Your project \"{}\" was reviewed", f.lesson_title),
                body: &format!("Your instructor reviewed version {}: {outcome}.", s.version),
                data: json!({
                    "submission_id": s.id,
                    "lesson_id": s.lesson_id,
                    "status": s.status,
                    "score": s.score,
                }),
            },
            vec![],
        )
        .await?;
        self.email
            .enqueue_for_user_once(
                pass.txn,
                s.user_id,
                Template::SubmissionReviewed,
                json!({
                    "lesson_title": f.lesson_title,
                    "outcome": outcome,
                    "submission_url": self.email.link(&format!("/submissions/{}", s.id)),
                }),
                Some(format!("submission-reviewed:{}", s.id)),
            )
            .await
            .map_err(email_failed)?;
        audit::record(
            &**pass.txn,
            pass.ctx,
            Event::new("submission.review", s.reviewed_by).target("submission", s.id).details(json!({
                "student_id": s.user_id,
                "status": s.status,
                "score": s.score,
                "version": s.version,
            })),
        )
        .await?;
        if approved {
            let awards = crate::achievements::on_project_approved(&**pass.txn, s.user_id, f.approved_projects).await?;
            pass.queue.extend(awards.into_iter().map(Fact::AchievementAwarded));
        }
        Ok(())
    }
}

async fn record_scan(pass: &Pass<'_>, file: &submission_file::Model, via: Option<&str>) -> Result<(), ReactionError> {
    let mut details = json!({
        "submission_id": file.submission_id,
        "verdict": file.scan_status,
        "signature": file.scan_signature,
    });
    if let Some(via) = via {
        details["via"] = json!(via);
    }
    audit::record(&**pass.txn, pass.ctx, Event::new("file.scan", None).target("file", file.id).details(details))
        .await?;
    Ok(())
}
