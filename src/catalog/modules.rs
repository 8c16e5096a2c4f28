//! Modules of a course: create, edit, move, delete.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
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
    entities::{course, lesson, module},
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        facts::{Fact, OutlineShrunk},
        fields::FieldErrors,
    },
};

impl CatalogService {
    pub async fn create_module(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        course_id: Uuid,
        input: NewModule,
    ) -> Result<ModuleView, CatalogError> {
        let title = parse_title(&input.title).map_err(|e| FieldErrors::one("title", e.to_string()))?;
        let txn = self.db.begin_write().await?;
        let c = Self::course_for_edit(&*txn, p, course_id).await?;
        let position = open_slot(&*txn, Ordered::Modules, c.id, input.position).await?;
        let now = Utc::now();
        let m = module::ActiveModel {
            id: Set(Uuid::now_v7()),
            course_id: Set(c.id),
            title: Set(title),
            position: Set(position),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("module.create", Some(p.user_id))
                .target("module", m.id)
                .details(json!({"course_id": c.id, "position": position})),
        )
        .await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(ModuleView { id: m.id, course_id: m.course_id, title: m.title, position: m.position, lessons: vec![] })
    }

    pub(super) async fn module_for_edit<C: ConnectionTrait>(
        db: &C,
        p: &Principal,
        id: Uuid,
    ) -> Result<(course::Model, module::Model), CatalogError> {
        let m = module::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        let c = Self::course_for_edit(db, p, m.course_id).await?;
        // Re-read under the course lock: a concurrent edit may have moved or deleted it.
        let m = module::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        Ok((c, m))
    }

    async fn module_view<C: ConnectionTrait>(db: &C, m: module::Model) -> Result<ModuleView, DbErr> {
        let lessons = lesson::Entity::find()
            .filter(lesson::Column::ModuleId.eq(m.id))
            .order_by_asc(lesson::Column::Position)
            .all(db)
            .await?
            .into_iter()
            .map(|l| LessonOutline { id: l.id, title: l.title, kind: l.kind, position: l.position })
            .collect();
        Ok(ModuleView { id: m.id, course_id: m.course_id, title: m.title, position: m.position, lessons })
    }

    pub async fn update_module(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        id: Uuid,
        patch: ModulePatch,
    ) -> Result<ModuleView, CatalogError> {
        let title = patch
            .title
            .as_deref()
            .map(parse_title)
            .transpose()
            .map_err(|e| FieldErrors::one("title", e.to_string()))?;
        let txn = self.db.begin_write().await?;
        let (c, m) = Self::module_for_edit(&*txn, p, id).await?;
        let mut changed = Vec::new();
        if let Some(new) = patch.position {
            let new = validate_position(new, positions::count(&*txn, Ordered::Modules, c.id).await?)?;
            if new != m.position {
                positions::move_to(&*txn, Ordered::Modules, c.id, m.id, m.position, new).await?;
                changed.push("position");
            }
        }
        if let Some(t) = title.filter(|t| *t != m.title) {
            module::Entity::update_many()
                .col_expr(module::Column::Title, Expr::value(t))
                .filter(module::Column::Id.eq(m.id))
                .exec(&*txn)
                .await?;
            changed.push("title");
        }
        if !changed.is_empty() {
            module::Entity::update_many()
                .col_expr(module::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(module::Column::Id.eq(m.id))
                .exec(&*txn)
                .await?;
            Self::touch_course(&*txn, c.id).await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("module.update", Some(p.user_id))
                    .target("module", m.id)
                    .details(json!({"course_id": c.id, "fields": changed})),
            )
            .await?;
        }
        let m = module::Entity::find_by_id(id).one(&*txn).await?.ok_or(CatalogError::NotFound)?;
        let view = Self::module_view(&*txn, m).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(view)
    }

    pub async fn delete_module(&self, ctx: &RequestContext, p: &Principal, id: Uuid) -> Result<(), CatalogError> {
        let txn = self.db.begin_write().await?;
        let (c, m) = Self::module_for_edit(&*txn, p, id).await?;
        let lessons = lesson::Entity::find().filter(lesson::Column::ModuleId.eq(m.id)).count(&*txn).await?;
        Self::lock_course_enrollments(&*txn, c.id).await?;
        // Lessons and their progress go with the module (foreign keys cascade).
        module::Entity::delete_by_id(m.id).exec(&*txn).await?;
        positions::shift(&*txn, Ordered::Modules, c.id, m.position + 1, -1).await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("module.delete", Some(p.user_id))
                .target("module", m.id)
                .details(json!({"course_id": c.id, "lessons_removed": lessons})),
        )
        .await?;
        let shrunk = Fact::OutlineShrunk(OutlineShrunk { course_id: c.id, by: p.user_id });
        self.reactor.react(&txn, ctx, vec![shrunk]).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(())
    }
}
