//! Creating and editing courses.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
use serde_json::json;
use uuid::Uuid;

use super::{CatalogError, CatalogService, model::*, validate::*};
use crate::{
    entities::course,
    infra::db::is_unique_violation,
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        fields::FieldErrors,
        input::Slug,
    },
};

impl CatalogService {
    pub async fn create_course(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        input: NewCourse,
    ) -> Result<CourseView, CatalogError> {
        let mut errors = FieldErrors::new();
        let slug = errors.check("slug", Slug::parse(&input.slug));
        let title = errors.check("title", parse_title(&input.title));
        let summary = errors.check("summary", parse_text(&input.summary, SUMMARY_MAX));
        let (Some(slug), Some(title), Some(summary)) = (slug, title, summary) else {
            return Err(errors.into());
        };
        let now = Utc::now();
        let txn = self.db.begin_write().await?;
        let c = course::ActiveModel {
            id: Set(Uuid::now_v7()),
            slug: Set(slug.into_inner()),
            instructor_id: Set(p.user_id),
            title: Set(title),
            summary: Set(summary),
            level: Set(input.level),
            published: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await
        .map_err(|e| if is_unique_violation(&e) { CatalogError::SlugTaken } else { e.into() })?;
        audit::record(
            &*txn,
            ctx,
            Event::new("course.create", Some(p.user_id)).target("course", c.id).details(json!({"slug": c.slug})),
        )
        .await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(Self::outline(&self.db.conn, c).await?)
    }

    pub async fn update_course(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        id: Uuid,
        patch: CoursePatch,
    ) -> Result<CourseView, CatalogError> {
        let mut errors = FieldErrors::new();
        let title = patch.title.as_deref().and_then(|t| errors.check("title", parse_title(t)));
        let summary = patch.summary.as_deref().and_then(|s| errors.check("summary", parse_text(s, SUMMARY_MAX)));
        errors.into_result()?;
        let txn = self.db.begin_write().await?;
        let c = Self::course_for_edit(&*txn, p, id).await?;
        let mut changed = Vec::new();
        let mut am = c.clone().into_active_model();
        if let Some(t) = title.filter(|t| *t != c.title) {
            am.title = Set(t);
            changed.push("title");
        }
        if let Some(s) = summary.filter(|s| *s != c.summary) {
            am.summary = Set(s);
            changed.push("summary");
        }
        if let Some(l) = patch.level.filter(|l| *l != c.level) {
            am.level = Set(l);
            changed.push("level");
        }
        if let Some(pb) = patch.published.filter(|pb| *pb != c.published) {
            am.published = Set(pb);
            changed.push("published");
        }
        // An edit that changes nothing writes nothing, so it needs no audit row either.
        let c = if changed.is_empty() {
            c
        } else {
            am.updated_at = Set(Utc::now());
            let c = am.update(&*txn).await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("course.update", Some(p.user_id))
                    .target("course", c.id)
                    .details(json!({"fields": changed, "published": c.published})),
            )
            .await?;
            c
        };
        let view = Self::outline(&*txn, c).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(view)
    }
}
