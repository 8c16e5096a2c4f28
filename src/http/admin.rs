//! `/admin/*`: user management, the audit trail and the platform's numbers (admins only; 404
//! for everyone else). The CSV exports are in `admin_exports`.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, Uri},
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{ApiJson, ApiQuery, Auth, Ctx, page_request, parse_query},
    problem::{ApiResult, PathId, Problem},
};
use crate::{
    admin::{AdminUserView, AuditEntryView, AuditFilter, FunnelStep, PlatformStats, Series},
    email::EmailView,
    kernel::context::Role,
    kernel::pagination::Page,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(update_user))
        .routes(routes!(audit_log))
        .routes(routes!(list_emails))
        .routes(routes!(retry_email))
        .routes(routes!(stats))
        .routes(routes!(stats_series))
        .routes(routes!(course_funnel))
        .routes(routes!(end_user_sessions))
        .routes(routes!(resend_user_verification))
        .merge(super::admin_exports::router())
}

/// The platform's numbers: active accounts by role, students active in the last 7 days,
/// enrollments and completions, completed assessments, submissions waiting for review.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = PlatformStats), (status = 404, body = Problem)))]
async fn stats(State(s): State<AppState>, auth: Auth) -> ApiResult<Json<PlatformStats>> {
    auth.require(&[Role::Admin])?;
    Ok(Json(s.admin.stats().await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// First UTC day, `YYYY-MM-DD`; by default the 30th day ending at `to`. The window spans
    /// at most 366 days.
    pub from: Option<NaiveDate>,
    /// Last UTC day, included; by default today.
    pub to: Option<NaiveDate>,
}

/// Sign-ups, lesson completions and active students per UTC day, every day of the window
/// present and in order.
#[utoipa::path(get, path = "/admin/stats/series", tag = "admin", security(("bearer" = [])), params(SeriesQuery),
    responses((status = 200, body = Series), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn stats_series(State(s): State<AppState>, auth: Auth, uri: Uri) -> ApiResult<Json<Series>> {
    auth.require(&[Role::Admin])?;
    // Read after the role check, so that to anyone else the route does not exist at all.
    let q: SeriesQuery = parse_query(uri.query().unwrap_or_default())?;
    Ok(Json(s.admin.series(q.from, q.to).await?))
}

/// Where a course's students drop off: per module in outline order, how many started it and
/// how many completed every lesson.
#[utoipa::path(get, path = "/admin/courses/{id}/funnel", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<FunnelStep>), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn course_funnel(State(s): State<AppState>, auth: Auth, PathId(id): PathId) -> ApiResult<Json<Vec<FunnelStep>>> {
    auth.require(&[Role::Admin])?;
    Ok(Json(s.admin.funnel(id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EmailQuery {
    /// queued, sending, sent, failed or suppressed.
    #[param(pattern = "^(queued|sending|sent|failed|suppressed)$")]
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    #[param(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub cursor: Option<String>,
}

/// The email outbox, newest first.
#[utoipa::path(get, path = "/admin/emails", tag = "admin", security(("bearer" = [])), params(EmailQuery),
    responses((status = 200, body = Page<EmailView>), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn list_emails(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<EmailQuery>,
) -> ApiResult<Json<Page<EmailView>>> {
    auth.require(&[Role::Admin])?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(Json(s.email.list(q.status.as_deref(), page).await?))
}

/// Queue a failed email again with a fresh attempt budget.
#[utoipa::path(post, path = "/admin/emails/{id}/retry", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = EmailView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn retry_email(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<Json<EmailView>> {
    let admin = auth.require(&[Role::Admin])?;
    Ok(Json(s.email.retry(&ctx, admin, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// Part of the email or display name.
    pub q: Option<String>,
    pub role: Option<Role>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    #[param(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    #[param(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub cursor: Option<String>,
}

/// Users, newest first, filtered by text and role.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("bearer" = [])), params(UserQuery),
    responses((status = 200, body = Page<AdminUserView>), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn list_users(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<Json<Page<AdminUserView>>> {
    auth.require(&[Role::Admin])?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(Json(s.admin.list_users(q.q.as_deref(), q.role, page).await?))
}

/// Change a user's role or deactivate them (their sessions end at once).
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])), request_body = UpdateUser,
    responses((status = 200, body = AdminUserView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_user(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    ApiJson(b): ApiJson<UpdateUser>,
) -> ApiResult<Json<AdminUserView>> {
    let admin = auth.require(&[Role::Admin])?;
    Ok(Json(s.admin.update_user(&ctx, admin, id, b.role, b.is_active).await?))
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/admin/audit-log", tag = "admin", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Page<AuditEntryView>), (status = 404, body = Problem)))]
async fn audit_log(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntryView>>> {
    auth.require(&[Role::Admin])?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = AuditFilter { actor_id: q.actor_id, action: q.action, since: q.since, until: q.until };
    Ok(Json(s.admin.audit_log(filter, page).await?))
}

/// End every session of another user at once (their tokens and live connections stop working);
/// one's own is 422 (`POST /auth/logout-all` does that).
#[utoipa::path(post, path = "/admin/users/{id}/logout-all", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn end_user_sessions(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let admin = auth.require(&[Role::Admin])?;
    s.auth.end_sessions_of(&ctx, admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a user a fresh email-verification link (nothing is sent when already verified).
#[utoipa::path(post, path = "/admin/users/{id}/verification-email", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 202), (status = 404, body = Problem)))]
async fn resend_user_verification(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let admin = auth.require(&[Role::Admin])?;
    s.auth.resend_verification_to(&ctx, admin, id).await?;
    Ok(StatusCode::ACCEPTED)
}
