//! `/courses`, `/modules`, `/lessons`: browsing and authoring the catalog.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ApiQuery, Auth, Ctx, ListParams},
    problem::{ApiResult, PathId, Problem},
};
use crate::{
    catalog::{
        CoursePatch, CourseSummary, CourseView, LessonPatch, LessonView, ModulePatch, ModuleView, NewCourse, NewLesson,
        NewModule,
    },
    kernel::context::Role,
    kernel::pagination::Page,
    state::AppState,
};

const AUTHORS: &[Role] = &[Role::Instructor, Role::Admin];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_courses, create_course))
        .routes(routes!(get_course, update_course))
        .routes(routes!(create_module))
        .routes(routes!(update_module, delete_module))
        .routes(routes!(create_lesson))
        .routes(routes!(get_lesson, update_lesson, delete_lesson))
}

/// Courses the caller can see: students published ones; instructors also their own drafts;
/// admins all.
#[utoipa::path(get, path = "/courses", tag = "catalog", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<CourseSummary>), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_courses(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<CourseSummary>>> {
    Ok(Json(s.catalog.list_courses(&auth.0, q.page()?).await?))
}

/// A course's outline: modules and lessons in position order.
#[utoipa::path(get, path = "/courses/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = CourseView), (status = 404, body = Problem)))]
async fn get_course(State(s): State<AppState>, auth: Auth, PathId(id): PathId) -> ApiResult<Json<CourseView>> {
    Ok(Json(s.catalog.get_course(&auth.0, id).await?))
}

/// Create a course (unpublished) owned by the caller.
#[utoipa::path(post, path = "/courses", tag = "catalog", security(("bearer" = [])), request_body = NewCourse,
    responses((status = 201, body = CourseView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_course(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    ApiJson(b): ApiJson<NewCourse>,
) -> ApiResult<impl IntoResponse> {
    let p = auth.require(AUTHORS)?;
    let c = s.catalog.create_course(&ctx, p, b).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// Edit a course; `published: true` makes it visible to students.
#[utoipa::path(patch, path = "/courses/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), request_body = CoursePatch,
    responses((status = 200, body = CourseView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_course(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    ApiJson(b): ApiJson<CoursePatch>,
) -> ApiResult<Json<CourseView>> {
    let p = auth.require(AUTHORS)?;
    Ok(Json(s.catalog.update_course(&ctx, p, id, b).await?))
}

/// Add a module at a position (default: last).
#[utoipa::path(post, path = "/courses/{id}/modules", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), request_body = NewModule,
    responses((status = 201, body = ModuleView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_module(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    ApiJson(b): ApiJson<NewModule>,
) -> ApiResult<impl IntoResponse> {
    let p = auth.require(AUTHORS)?;
    let m = s.catalog.create_module(&ctx, p, id, b).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Rename or move a module.
#[utoipa::path(patch, path = "/modules/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), request_body = ModulePatch,
    responses((status = 200, body = ModuleView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_module(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    ApiJson(b): ApiJson<ModulePatch>,
) -> ApiResult<Json<ModuleView>> {
    let p = auth.require(AUTHORS)?;
    Ok(Json(s.catalog.update_module(&ctx, p, id, b).await?))
}

/// Delete a module with its lessons (and the progress on them); later modules move up.
#[utoipa::path(delete, path = "/modules/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_module(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let p = auth.require(AUTHORS)?;
    s.catalog.delete_module(&ctx, p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a lesson to a module at a position (default: last).
#[utoipa::path(post, path = "/modules/{id}/lessons", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), request_body = NewLesson,
    responses((status = 201, body = LessonView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_lesson(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    ApiJson(b): ApiJson<NewLesson>,
) -> ApiResult<impl IntoResponse> {
    let p = auth.require(AUTHORS)?;
    let l = s.catalog.create_lesson(&ctx, p, id, b).await?;
    Ok((StatusCode::CREATED, Json(l)))
}

/// A lesson with its content, for anyone who can see its course.
#[utoipa::path(get, path = "/lessons/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = LessonView), (status = 404, body = Problem)))]
async fn get_lesson(State(s): State<AppState>, auth: Auth, PathId(id): PathId) -> ApiResult<Json<LessonView>> {
    Ok(Json(s.catalog.get_lesson(&auth.0, id).await?))
}

/// Edit or move a lesson within its module.
#[utoipa::path(patch, path = "/lessons/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), request_body = LessonPatch,
    responses((status = 200, body = LessonView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_lesson(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    ApiJson(b): ApiJson<LessonPatch>,
) -> ApiResult<Json<LessonView>> {
    let p = auth.require(AUTHORS)?;
    Ok(Json(s.catalog.update_lesson(&ctx, p, id, b).await?))
}

/// Delete a lesson and the progress on it; later lessons move up.
#[utoipa::path(delete, path = "/lessons/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_lesson(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let p = auth.require(AUTHORS)?;
    s.catalog.delete_lesson(&ctx, p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
