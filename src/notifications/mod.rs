//! Notifications: created in the same transaction as the change that causes them, so that
//! nothing a user should hear about is lost; published to live clients after commit.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr};
use serde_json::Value;
use uuid::Uuid;

use crate::{entities::notification, infra::realtime::RealtimeEvent};

/// Stores a notification for `user_id` inside the caller's transaction. Publish the returned
/// model with [`crate::infra::realtime::EventBus::publish`] *after* the transaction commits:
/// a live event must never announce something that was rolled back.
pub async fn create<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    kind: &str,
    title: &str,
    body: &str,
    data: Value,
) -> Result<notification::Model, DbErr> {
    notification::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        kind: Set(kind.to_string()),
        title: Set(title.chars().take(200).collect()),
        body: Set(body.to_string()),
        data: Set((!data.is_null()).then_some(data)),
        read_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
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
