//! `/me/notifications*`: the stored notifications of the signed-in user.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiQuery, Auth, Ctx},
    problem::{ApiError, ApiResult, PathId, Problem},
};
use crate::{
    kernel::pagination::{Page, PageRequest},
    notifications::{self, NotificationView},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(read_all)).routes(routes!(read_one))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// Only notifications not yet read.
    pub unread: Option<bool>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    #[param(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/me/notifications", tag = "notifications", security(("bearer" = [])), params(NotificationQuery),
    responses((status = 200, body = Page<NotificationView>), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> ApiResult<Json<Page<NotificationView>>> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref()).map_err(|(f, e)| ApiError::field(f, e.to_string()))?;
    let page = notifications::list(&s.db, auth.0.user_id, q.unread.unwrap_or(false), page)
        .await
        .map_err(ApiError::internal_error)?;
    Ok(Json(page))
}

/// Mark one notification read (idempotent). Someone else's notification is 404.
#[utoipa::path(post, path = "/me/notifications/{id}/read", tag = "notifications", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn read_one(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth, PathId(id): PathId) -> ApiResult<StatusCode> {
    notifications::mark_read(&s.db, &ctx, auth.0.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark every notification of the caller read.
#[utoipa::path(post, path = "/me/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn read_all(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth) -> ApiResult<StatusCode> {
    notifications::mark_all_read(&s.db, &ctx, auth.0.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
