//! Lessons of a module: create, edit, move, delete.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    CatalogError, CatalogService,
    model::*,
    positions::{self, Ordered},
    validate::*,
};
use crate::{
    entities::{course, lesson},
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        facts::{Fact, OutlineShrunk},
        fields::FieldErrors,
    },
};

impl CatalogService {
    pub async fn create_lesson(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        module_id: Uuid,
        input: NewLesson,
    ) -> Result<LessonView, CatalogError> {
        let mut errors = FieldErrors::new();
        let title = errors.check("title", parse_title(&input.title));
        let content = input.content.as_deref().and_then(|s| errors.check("content", parse_text(s, CONTENT_MAX)));
        let Some(title) = title else { return Err(errors.into()) };
        errors.into_result()?;
        let content = content.filter(|s| !s.is_empty());
        let txn = self.db.begin_write().await?;
        let (c, m) = Self::module_for_edit(&*txn, p, module_id).await?;
        let position = open_slot(&*txn, Ordered::Lessons, m.id, input.position).await?;
        let now = Utc::now();
        let l = lesson::ActiveModel {
            id: Set(Uuid::now_v7()),
            module_id: Set(m.id),
            course_id: Set(c.id),
            title: Set(title),
            kind: Set(input.kind),
            position: Set(position),
            content: Set(content),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("lesson.create", Some(p.user_id))
                .target("lesson", l.id)
                .details(json!({"course_id": c.id, "module_id": m.id, "position": position})),
        )
        .await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(l.into())
    }

    async fn lesson_for_edit<C: ConnectionTrait>(
        db: &C,
        p: &Principal,
        id: Uuid,
    ) -> Result<(course::Model, lesson::Model), CatalogError> {
        let l = lesson::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        let c = Self::course_for_edit(db, p, l.course_id).await?;
        let l = lesson::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        Ok((c, l))
    }

    pub async fn update_lesson(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        id: Uuid,
        patch: LessonPatch,
    ) -> Result<LessonView, CatalogError> {
        let mut errors = FieldErrors::new();
        let title = patch.title.as_deref().and_then(|t| errors.check("title", parse_title(t)));
        // `Some(None)` removes the content: an empty string says so.
        let content = patch
            .content
            .as_deref()
            .and_then(|s| errors.check("content", parse_text(s, CONTENT_MAX)))
            .map(|s| Some(s).filter(|s| !s.is_empty()));
        errors.into_result()?;
        let txn = self.db.begin_write().await?;
        let (c, l) = Self::lesson_for_edit(&*txn, p, id).await?;
        let mut changed = Vec::new();
        if let Some(new) = patch.position {
            let new = validate_position(new, positions::count(&*txn, Ordered::Lessons, l.module_id).await?)?;
            if new != l.position {
                positions::move_to(&*txn, Ordered::Lessons, l.module_id, l.id, l.position, new).await?;
                changed.push("position");
            }
        }
        let mut upd = lesson::Entity::update_many().filter(lesson::Column::Id.eq(l.id));
        if let Some(t) = title.filter(|t| *t != l.title) {
            upd = upd.col_expr(lesson::Column::Title, Expr::value(t));
            changed.push("title");
        }
        if let Some(k) = patch.kind.filter(|k| *k != l.kind) {
            upd = upd.col_expr(lesson::Column::Kind, Expr::value(k.as_str()));
            changed.push("kind");
        }
        if let Some(ct) = content.filter(|ct| *ct != l.content) {
            upd = upd.col_expr(lesson::Column::Content, Expr::value(ct));
            changed.push("content");
        }
        if !changed.is_empty() {
            upd.col_expr(lesson::Column::UpdatedAt, Expr::value(Utc::now())).exec(&*txn).await?;
            Self::touch_course(&*txn, c.id).await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("lesson.update", Some(p.user_id))
                    .target("lesson", l.id)
                    .details(json!({"course_id": c.id, "fields": changed})),
            )
            .await?;
        }
        let l = lesson::Entity::find_by_id(id).one(&*txn).await?.ok_or(CatalogError::NotFound)?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(l.into())
    }

    pub async fn delete_lesson(&self, ctx: &RequestContext, p: &Principal, id: Uuid) -> Result<(), CatalogError> {
        let txn = self.db.begin_write().await?;
        let (c, l) = Self::lesson_for_edit(&*txn, p, id).await?;
        Self::lock_course_enrollments(&*txn, c.id).await?;
        // Its progress rows go with it (foreign key cascade), so rollups stay exact.
        lesson::Entity::delete_by_id(l.id).exec(&*txn).await?;
        positions::shift(&*txn, Ordered::Lessons, l.module_id, l.position + 1, -1).await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("lesson.delete", Some(p.user_id))
                .target("lesson", l.id)
                .details(json!({"course_id": c.id, "module_id": l.module_id})),
        )
        .await?;
        // Removing the one lesson a student had left finishes the course for them.
        let shrunk = Fact::OutlineShrunk(OutlineShrunk { course_id: c.id, by: p.user_id });
        self.reactor.react(&txn, ctx, vec![shrunk]).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(())
    }
}
