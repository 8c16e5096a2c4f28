//! `/achievements`, `/me/achievements`, `/admin/achievements`.

use axum::{Json, extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ApiQuery, Auth, Ctx, ListParams},
    problem::{ApiError, ApiResult, Problem},
};
use crate::{
    achievements::{self, AchievementView, AwardView, NewAchievement},
    kernel::context::Role,
    kernel::pagination::Page,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(catalog)).routes(routes!(mine)).routes(routes!(create))
}

/// The achievement catalog (every rule, with its kind and threshold).
#[utoipa::path(get, path = "/achievements", tag = "achievements", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<AchievementView>), (status = 401, body = Problem)))]
async fn catalog(
    State(s): State<AppState>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<AchievementView>>> {
    Ok(Json(achievements::catalog(&s.db, q.page()?).await.map_err(ApiError::internal_error)?))
}

/// The caller's awards, newest first.
#[utoipa::path(get, path = "/me/achievements", tag = "achievements", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<AwardView>), (status = 401, body = Problem)))]
async fn mine(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<AwardView>>> {
    Ok(Json(achievements::awarded(&s.db, auth.0.user_id, q.page()?).await.map_err(ApiError::internal_error)?))
}

/// Add an achievement rule (admins). It applies from the next matching event on; no rebuild.
#[utoipa::path(post, path = "/admin/achievements", tag = "admin", security(("bearer" = [])), request_body = NewAchievement,
    responses((status = 201, body = AchievementView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    ApiJson(b): ApiJson<NewAchievement>,
) -> ApiResult<(StatusCode, Json<AchievementView>)> {
    let admin = auth.require(&[Role::Admin])?;
    Ok((StatusCode::CREATED, Json(achievements::create(&s.db, &ctx, admin, b).await?)))
}
