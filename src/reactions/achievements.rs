//! What follows an award: the student is told (stored and live), the trail records it, and
//! the achievement email is queued once per student and achievement (preferences respected).

use serde_json::json;

use super::{Pass, Reactions, email_failed};
use crate::{
    email::Template,
    kernel::{
        audit::{self, Event},
        facts::{AchievementAwarded, ReactionError},
    },
    notifications::{self, NewNotification},
};

impl Reactions {
    pub(super) async fn achievement_awarded(
        &self,
        pass: &mut Pass<'_>,
        f: AchievementAwarded,
    ) -> Result<(), ReactionError> {
        let a = &f.achievement;
        notifications::create(
            pass.txn,
            &self.events,
            NewNotification {
                user_id: f.user_id,
                kind: "achievement.awarded",
                title: &format!("Achievement unlocked: {}", a.title),
                body: &a.description,
                data: json!({
                    "achievement_id": a.id,
                    "code": a.code,
                    "title": a.title,
                    "icon": a.icon,
                    "awarded_at": f.awarded_at,
                }),
            },
            vec![],
        )
        .await?;
        audit::record(
            &**pass.txn,
            pass.ctx,
            Event::new("achievement.award", Some(f.user_id))
                .target("achievement", a.id)
                .details(json!({"code": a.code, "value": f.value})),
        )
        .await?;
        self.email
            .enqueue_for_user_once(
                pass.txn,
                f.user_id,
                Template::AchievementAwarded,
                json!({"achievement": a.title, "description": a.description}),
                Some(format!("achievement:{}:{}", f.user_id, a.id)),
            )
            .await
            .map_err(email_failed)?;
        Ok(())
    }
}
