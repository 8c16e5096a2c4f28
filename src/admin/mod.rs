//! Administration: user management, the audit-trail reader, the platform's numbers (a
//! snapshot and a daily series, both cached briefly), a course's funnel and CSV exports.

mod cache;
mod exports;
mod funnel;
mod series;
mod stats;

pub use cache::StatsCache;
pub use exports::{Export, ExportKind, spreadsheet_safe};
pub use funnel::FunnelStep;
pub use series::{DEFAULT_SERIES_DAYS, DailyCounts, MAX_SERIES_DAYS, Series, series_window};
pub use stats::{ActiveStudents, AssessmentCounts, OutboxHealth, PlatformStats, ReviewQueue, TopCourse, UsersByRole};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    entities::{audit_log, session, user},
    infra::db::Db,
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext, Role},
    kernel::fields::FieldErrors,
    kernel::pagination::{Page, PageRequest},
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("validation failed")]
    Validation(#[from] FieldErrors),
    #[error("not found")]
    NotFound,
    #[error("database")]
    Db(#[from] DbErr),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for AdminUserView {
    fn from(u: user::Model) -> Self {
        AdminUserView {
            id: u.id,
            role: u.role,
            email: u.email,
            display_name: u.display_name,
            is_active: u.is_active,
            email_verified: u.email_verified,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub details: Option<Value>,
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// `%` and `_` in a search term are literal characters, not wildcards.
fn like_contains(term: &str) -> LikeExpr {
    let escaped = term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// The statements behind [`AdminService::stats`] and [`AdminService::series`] (its default
/// window), named, for reading their plans on a real database.
pub fn statistics_statements(backend: sea_orm::DbBackend) -> Vec<(&'static str, sea_orm::Statement)> {
    let now = Utc::now();
    let [figures, top] = stats::stats_statements(backend, now);
    let (from, to) = series_window(None, None, now.date_naive()).expect("the default window is valid");
    let [sign_ups, completions, active] =
        series::series_statements(backend, from, to).expect("the default window is in range");
    vec![
        ("stats: figures", figures),
        ("stats: top courses", top),
        ("series: sign-ups", sign_ups),
        ("series: lesson completions", completions),
        ("series: active students", active),
    ]
}

pub struct AdminService {
    pub db: Db,
    /// To drop a user's live connections when their role or active flag changes.
    pub events: crate::infra::realtime::EventBus,
    /// Recent answers of `stats` and `series`.
    pub cache: StatsCache,
}

impl AdminService {
    pub async fn list_users(
        &self,
        q: Option<&str>,
        role: Option<Role>,
        page: PageRequest,
    ) -> Result<Page<AdminUserView>, AdminError> {
        let mut query = page.newest_first(user::Entity::find(), user::Column::Id);
        if let Some(term) = q.map(str::trim).filter(|t| !t.is_empty()) {
            if term.chars().count() > 100 {
                return Err(FieldErrors::one("q", "must be at most 100 characters").into());
            }
            let term = term.to_lowercase();
            query = query.filter(
                Condition::any()
                    .add(Expr::col(user::Column::Email).like(like_contains(&term)))
                    .add(Func::lower(Expr::col(user::Column::DisplayName)).like(like_contains(&term))),
            );
        }
        if let Some(role) = role {
            query = query.filter(user::Column::Role.eq(role));
        }
        let rows = query.all(&self.db.conn).await?.into_iter().map(AdminUserView::from).collect();
        Ok(Page::from_rows(rows, page, |u| u.id))
    }

    pub async fn user(&self, id: Uuid) -> Result<AdminUserView, AdminError> {
        Ok(user::Entity::find_by_id(id).one(&self.db.conn).await?.ok_or(AdminError::NotFound)?.into())
    }

    /// Email and display name of each of `ids` that exists, for pages that name people.
    pub async fn names(&self, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, (String, String)>, AdminError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let rows = user::Entity::find().filter(user::Column::Id.is_in(ids.iter().copied())).all(&self.db.conn).await?;
        Ok(rows.into_iter().map(|u| (u.id, (u.email, u.display_name))).collect())
    }

    /// Changes a user's role or active flag. Deactivation ends every session at once; a role
    /// change needs no revocation because roles are re-read on every request.
    pub async fn update_user(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        id: Uuid,
        role: Option<Role>,
        is_active: Option<bool>,
    ) -> Result<AdminUserView, AdminError> {
        if id == admin.user_id && (role.is_some_and(|r| r != Role::Admin) || is_active == Some(false)) {
            // Guards against the last admin locking everyone out by accident.
            return Err(FieldErrors::one("id", "admins cannot demote or deactivate themselves").into());
        }
        let txn = self.db.begin_write().await?;
        let u = user::Entity::find_by_id(id).one(&*txn).await?.ok_or(AdminError::NotFound)?;
        let mut changes = serde_json::Map::new();
        let mut am = u.clone().into_active_model();
        if let Some(r) = role
            && r != u.role
        {
            changes.insert("role".into(), json!({"from": u.role, "to": r}));
            am.role = Set(r);
        }
        if let Some(active) = is_active
            && active != u.is_active
        {
            changes.insert("is_active".into(), json!({"from": u.is_active, "to": active}));
            am.is_active = Set(active);
        }
        if changes.is_empty() {
            return Ok(u.into());
        }
        am.updated_at = Set(Utc::now());
        let updated = am.update(&*txn).await?;
        if is_active == Some(false) {
            session::Entity::update_many()
                .col_expr(session::Column::RevokedAt, Expr::value(Some(Utc::now())))
                .col_expr(session::Column::RevokedReason, Expr::value(Some("deactivated".to_string())))
                .filter(session::Column::UserId.eq(id))
                .filter(session::Column::RevokedAt.is_null())
                .exec(&*txn)
                .await?;
        }
        audit::record(
            &*txn,
            ctx,
            Event::new("admin.user_update", Some(admin.user_id)).target("user", id).details(Value::Object(changes)),
        )
        .await?;
        // Live connections were authorised for the old role (and an instructor's feed includes
        // their students): end them on every instance; the client reconnects with a fresh
        // ticket, or cannot, if deactivated.
        self.events.disconnect_after_commit(&txn, id);
        txn.commit().await?;
        Ok(updated.into())
    }

    pub async fn audit_log(&self, f: AuditFilter, page: PageRequest) -> Result<Page<AuditEntryView>, AdminError> {
        let mut q = page.newest_first(audit_log::Entity::find(), audit_log::Column::Id);
        if let Some(a) = f.actor_id {
            q = q.filter(audit_log::Column::ActorId.eq(a));
        }
        if let Some(action) = f.action {
            q = q.filter(audit_log::Column::Action.eq(action));
        }
        if let Some(s) = f.since {
            q = q.filter(audit_log::Column::At.gte(s));
        }
        if let Some(u) = f.until {
            q = q.filter(audit_log::Column::At.lt(u));
        }
        let rows = q
            .all(&self.db.conn)
            .await?
            .into_iter()
            .map(|a| AuditEntryView {
                id: a.id,
                at: a.at,
                actor_id: a.actor_id,
                action: a.action,
                target_type: a.target_type,
                target_id: a.target_id,
                ip: a.ip,
                user_agent: a.user_agent,
                request_id: a.request_id,
                details: a.details,
            })
            .collect();
        Ok(Page::from_rows(rows, page, |a| a.id))
    }
}
