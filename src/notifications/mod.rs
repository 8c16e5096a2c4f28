//! Notifications: created in the same transaction as the change that causes them, so that
//! nothing a user should hear about is lost; published to live clients after commit.
//!
//! Which events are stored: everything a user should find later (`course.completed`,
//! `achievement.awarded`, `assessment.completed`, `learning_path.updated`,
//! `submission.reviewed`). `progress.updated` is live-only: it fires on every lesson update
//! (many per minute while a student watches a video), its state is in `/me/progress` anyway,
//! and storing it would bury the notifications that matter and flood the unread count.

pub mod live;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    entities::notification,
    infra::{
        db::{Db, WriteTxn},
        realtime::{EventBus, RealtimeEvent},
    },
    kernel::audit::{self, Event},
    kernel::context::RequestContext,
    kernel::pagination::{Page, PageRequest},
};

/// Stores a notification for `user_id` inside the caller's transaction and publishes it live
/// (to its owner and `also_to`) once that transaction commits.
pub async fn create(
    txn: &WriteTxn,
    bus: &EventBus,
    new: NewNotification<'_>,
    also_to: Vec<Uuid>,
) -> Result<notification::Model, DbErr> {
    let NewNotification { user_id, kind, title, body, data } = new;
    let n = notification::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        kind: Set(kind.to_string()),
        title: Set(title.chars().take(200).collect()),
        body: Set(body.to_string()),
        data: Set((!data.is_null()).then_some(data)),
        read_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(&**txn)
    .await?;
    bus.publish_after_commit(txn, RealtimeEvent::from(&n), also_to);
    Ok(n)
}

/// A notification to store: what a user should find later in their feed.
pub struct NewNotification<'a> {
    pub user_id: Uuid,
    /// The event type, e.g. `course.completed`.
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub data: Value,
}

impl From<&notification::Model> for RealtimeEvent {
    fn from(n: &notification::Model) -> Self {
        RealtimeEvent {
            id: n.id,
            user_id: n.user_id,
            kind: n.kind.clone(),
            data: serde_json::json!({
                "notification_id": n.id,
                "title": n.title,
                "body": n.body,
                "data": n.data,
            }),
            created_at: n.created_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("not found")]
    NotFound,
    #[error("database")]
    Db(#[from] DbErr),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// The event type, e.g. `course.completed`.
    pub kind: String,
    pub title: String,
    pub body: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<notification::Model> for NotificationView {
    fn from(n: notification::Model) -> Self {
        NotificationView {
            id: n.id,
            kind: n.kind,
            title: n.title,
            body: n.body,
            data: n.data,
            read_at: n.read_at,
            created_at: n.created_at,
        }
    }
}

/// The caller's notifications, newest first; the cursor is the last id of the previous page.
pub async fn list(
    db: &Db,
    user_id: Uuid,
    unread_only: bool,
    page: PageRequest,
) -> Result<Page<NotificationView>, DbErr> {
    let mut q = page.newest_first(
        notification::Entity::find().filter(notification::Column::UserId.eq(user_id)),
        notification::Column::Id,
    );
    if unread_only {
        q = q.filter(notification::Column::ReadAt.is_null());
    }
    let rows = q.all(&db.conn).await?.into_iter().map(NotificationView::from).collect();
    Ok(Page::from_rows(rows, page, |n| n.id))
}

pub async fn unread_count(db: &Db, user_id: Uuid) -> Result<u64, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .count(&db.conn)
        .await
}

/// Marks one of the caller's notifications read. Idempotent; someone else's id is NotFound.
pub async fn mark_read(db: &Db, ctx: &RequestContext, user_id: Uuid, id: Uuid) -> Result<(), NotificationError> {
    let txn = db.begin_write().await?;
    let n = notification::Entity::find_by_id(id)
        .filter(notification::Column::UserId.eq(user_id))
        .one(&*txn)
        .await?
        .ok_or(NotificationError::NotFound)?;
    if n.read_at.is_none() {
        notification::Entity::update_many()
            .col_expr(notification::Column::ReadAt, Expr::value(Some(Utc::now())))
            .filter(notification::Column::Id.eq(id))
            .filter(notification::Column::ReadAt.is_null())
            .exec(&*txn)
            .await?;
        audit::record(&*txn, ctx, Event::new("notification.read", Some(user_id)).target("notification", id)).await?;
    }
    txn.commit().await?;
    Ok(())
}

pub async fn mark_all_read(db: &Db, ctx: &RequestContext, user_id: Uuid) -> Result<(), NotificationError> {
    let txn = db.begin_write().await?;
    let n = notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(Some(Utc::now())))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .exec(&*txn)
        .await?
        .rows_affected;
    if n > 0 {
        audit::record(
            &*txn,
            ctx,
            Event::new("notification.read_all", Some(user_id)).target("user", user_id).details(json!({"count": n})),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Stored notifications of `user_id` with ids greater than `after`, oldest first (SSE replay).
pub async fn after<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    after: Uuid,
    limit: u64,
) -> Result<Vec<notification::Model>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::Id.gt(after))
        .order_by_asc(notification::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
