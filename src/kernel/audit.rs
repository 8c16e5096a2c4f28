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

/// Security refusals (a bad machine signature, a replayed nonce, a wrong webhook secret) are
/// audited too, but an attacker can produce them at will: so each source gets a few rows per
/// window, then one row saying that more follow unrecorded, and each kind of refusal has a
/// ceiling per window over all sources. The table grows by a bounded amount whatever is sent;
/// `security_refusals_total` counts every one.
pub struct RefusalAudit {
    pub limiter: std::sync::Arc<crate::infra::ratelimit::RateLimiter>,
}

const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
const ROWS_PER_SOURCE: u32 = 5;
const ROWS_PER_KIND: u32 = 500;

impl RefusalAudit {
    fn rule(name: &'static str, limit: u32) -> crate::infra::ratelimit::Rule {
        crate::infra::ratelimit::Rule { name, limit, period: REFUSAL_WINDOW }
    }

    /// Records `action` (with `reason`, safe to store) unless this source or this kind of refusal
    /// is over its share of rows. Failing to write is logged, never turned into another error.
    pub async fn record(&self, db: &crate::infra::db::Db, ctx: &RequestContext, action: &str, reason: &str) {
        metrics::counter!("security_refusals_total", "action" => action.to_string()).increment(1);
        let source = format!("{action}:{reason}:{}", ctx.ip.as_deref().unwrap_or("-"));
        let one = self.limiter.check(&Self::rule("audit-refusal", ROWS_PER_SOURCE), &source).await;
        let details = if one.allowed {
            serde_json::json!({"reason": reason})
        } else if self.limiter.check(&Self::rule("audit-refusal-summary", 1), &source).await.allowed {
            serde_json::json!({"reason": reason, "repeats": "more refusals like this from this address within 10 minutes are not recorded one by one"})
        } else {
            return;
        };
        if !self.limiter.check(&Self::rule("audit-refusal-kind", ROWS_PER_KIND), action).await.allowed {
            return;
        }
        let written = async {
            let txn = db.begin_write().await?;
            record(&*txn, ctx, Event::new(action, None).details(details)).await?;
            txn.commit().await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, action, "could not audit a refusal");
        }
    }
}
