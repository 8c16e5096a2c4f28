//! The CSV exports as downloads from the console: the same service, audit row and streamed
//! file as `/api/v1/admin/exports/*`, with the console's session instead of a bearer token.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    operations::audit_filter,
    session::{Admin, cross_site},
};
use crate::{
    admin::ExportKind,
    http::{
        admin_exports::csv_response,
        extract::{ApiQuery, Ctx},
        problem::{ApiError, ApiResult},
    },
    state::AppState,
};

/// A download writes an audit row, so only a page of the console may start one: a link or
/// image on another host of the same site (which `SameSite` lets through) may not.
fn from_the_console(headers: &HeaderMap) -> ApiResult<()> {
    if cross_site(headers) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "start the download from the console's page"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilter {}

pub async fn users(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    admin: Admin,
    headers: HeaderMap,
    ApiQuery(NoFilter {}): ApiQuery<NoFilter>,
) -> ApiResult<Response> {
    from_the_console(&headers)?;
    Ok(csv_response(s.admin.export(&ctx, &admin.principal, ExportKind::Users).await?))
}

/// The audit page's filters, as its form sends them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilterForm {
    actor_id: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

pub async fn audit_log(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    admin: Admin,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<AuditFilterForm>,
) -> ApiResult<Response> {
    from_the_console(&headers)?;
    let filter = audit_filter(q.actor_id.as_deref(), q.action.as_deref(), q.since.as_deref(), q.until.as_deref())?;
    Ok(csv_response(s.admin.export(&ctx, &admin.principal, ExportKind::AuditLog(filter)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseChoice {
    course_id: Uuid,
}

pub async fn course_progress(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    admin: Admin,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CourseChoice>,
) -> ApiResult<Response> {
    from_the_console(&headers)?;
    let kind = ExportKind::CourseProgress { course_id: q.course_id };
    Ok(csv_response(s.admin.export(&ctx, &admin.principal, kind).await?))
}
