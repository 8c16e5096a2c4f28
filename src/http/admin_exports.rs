//! `/admin/exports/{kind}.csv`: streamed CSV files of personal data (admins only; 404 for
//! everyone else, and for a kind that does not exist). One route per kind, so that each
//! documents its own parameters.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderValue, Uri, header},
    response::Response,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{Auth, Ctx, parse_query},
    problem::{ApiError, ApiResult, Problem},
};
use crate::{
    admin::{AuditFilter, Export, ExportKind},
    kernel::context::Role,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_users))
        .routes(routes!(export_audit_log))
        .routes(routes!(export_course_progress))
}

pub(crate) fn csv_response(export: Export) -> Response {
    let mut res = Response::new(Body::from_stream(export.body));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    // The name is built from a date and a course slug (letters, digits and dashes): nothing to
    // quote.
    let disposition = format!("attachment; filename=\"{}\"", export.filename);
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    // Personal data: no shared cache may keep a copy.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The query is read after the role check, so that to anyone else the route does not exist.
fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    parse_query(uri.query().unwrap_or_default())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsersExportQuery {}

/// Every account: id, email, display name, role, active and verified flags, sign-up time. No
/// password hashes and no tokens. The export is audited (`admin.export`).
#[utoipa::path(get, path = "/admin/exports/users.csv", tag = "admin", security(("bearer" = [])), params(UsersExportQuery),
    responses((status = 200, description = "The CSV file, streamed", content_type = "text/csv", body = String),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn export_users(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth, uri: Uri) -> ApiResult<Response> {
    let admin = auth.require(&[Role::Admin])?;
    let UsersExportQuery {} = query(&uri)?;
    Ok(csv_response(s.admin.export(&ctx, admin, ExportKind::Users).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditExportQuery {
    /// From this instant (RFC 3339), included.
    pub since: Option<DateTime<Utc>>,
    /// Until this instant (RFC 3339), excluded.
    pub until: Option<DateTime<Utc>>,
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
}

/// The audit trail over a time range, oldest first. The export is itself audited.
#[utoipa::path(get, path = "/admin/exports/audit-log.csv", tag = "admin", security(("bearer" = [])), params(AuditExportQuery),
    responses((status = 200, description = "The CSV file, streamed", content_type = "text/csv", body = String),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn export_audit_log(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth, uri: Uri) -> ApiResult<Response> {
    let admin = auth.require(&[Role::Admin])?;
    let q: AuditExportQuery = query(&uri)?;
    if let (Some(since), Some(until)) = (q.since, q.until)
        && until <= since
    {
        return Err(ApiError::field("until", "must be after `since`"));
    }
    let filter = AuditFilter { actor_id: q.actor_id, action: q.action, since: q.since, until: q.until };
    Ok(csv_response(s.admin.export(&ctx, admin, ExportKind::AuditLog(filter)).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CourseProgressExportQuery {
    pub course_id: Uuid,
}

/// One row per enrollment in the course: the student, when they enrolled, lessons completed
/// out of the course's lessons, the percentage, when they completed the course and their last
/// activity in it. The export is audited.
#[utoipa::path(get, path = "/admin/exports/course-progress.csv", tag = "admin", security(("bearer" = [])),
    params(CourseProgressExportQuery),
    responses((status = 200, description = "The CSV file, streamed", content_type = "text/csv", body = String),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn export_course_progress(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth, uri: Uri) -> ApiResult<Response> {
    let admin = auth.require(&[Role::Admin])?;
    let q: CourseProgressExportQuery = query(&uri)?;
    Ok(csv_response(s.admin.export(&ctx, admin, ExportKind::CourseProgress { course_id: q.course_id }).await?))
}
