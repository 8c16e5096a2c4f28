//! The audit trail: one row per state change, written in the caller's transaction so that the
//! change and its record commit or roll back together.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use serde_json::Value;
use uuid::Uuid;

use crate::{entities::audit_log, kernel::context::RequestContext};

pub struct Event<'a> {
    pub action: &'a str,
    pub actor_id: Option<Uuid>,
    pub target: Option<(&'a str, String)>,
    /// Free-form facts about the change. Callers must never put secrets here.
    pub details: Value,
}

impl<'a> Event<'a> {
    pub fn new(action: &'a str, actor_id: Option<Uuid>) -> Self {
        Event { action, actor_id, target: None, details: Value::Null }
    }
    pub fn target(mut self, kind: &'a str, id: impl ToString) -> Self {
        self.target = Some((kind, id.to_string()));
        self
    }
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

pub async fn record<C: ConnectionTrait>(db: &C, ctx: &RequestContext, event: Event<'_>) -> Result<(), DbErr> {
    let (target_type, target_id) = match event.target {
        Some((t, id)) => (Some(t.to_string()), Some(id)),
        None => (None, None),
    };
    let row = audit_log::ActiveModel {
        id: Set(Uuid::now_v7()),
        at: Set(Utc::now()),
        actor_id: Set(event.actor_id),
        action: Set(event.action.to_string()),
        target_type: Set(target_type),
        target_id: Set(target_id),
        ip: Set(ctx.ip.clone()),
        user_agent: Set(ctx.user_agent.clone()),
        request_id: Set(ctx.request_id.clone()),
        details: Set((!event.details.is_null()).then_some(event.details)),
    };
    audit_log::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}
