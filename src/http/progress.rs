//! Enrollment and progress: `/courses/{id}/enrollments`, `/me/enrollments`, `/me/lessons/…`,
//! `/me/progress*`, `/me/dashboard`, `/users/{id}/progress`.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ApiQuery, Auth, Ctx, ListParams},
    problem::{ApiError, ApiResult, PathId, Problem},
};
use crate::{
    dashboard::{self, Dashboard},
    kernel::context::Role,
    kernel::pagination::Page,
    progress::{BatchResult, CourseProgress, EnrollmentView, LessonProgressResult, ProgressBatch, ProgressUpdate},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(list_enrollments))
        .routes(routes!(put_progress))
        .routes(routes!(batch))
        .routes(routes!(my_progress))
        .routes(routes!(dashboard))
        .routes(routes!(user_progress))
}

/// Enroll in a published course. 201 the first time; 200 with the same enrollment after.
#[utoipa::path(post, path = "/courses/{id}/enrollments", tag = "progress", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 201, body = EnrollmentView), (status = 200, body = EnrollmentView), (status = 404, body = Problem)))]
async fn enroll(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<(StatusCode, Json<EnrollmentView>)> {
    let p = auth.require(&[Role::Student])?;
    let (e, created) = s.progress.enroll(&ctx, p, id).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(e)))
}

/// The caller's enrollments, oldest first.
#[utoipa::path(get, path = "/me/enrollments", tag = "progress", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<EnrollmentView>), (status = 401, body = Problem)))]
async fn list_enrollments(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<EnrollmentView>>> {
    Ok(Json(s.progress.list_enrollments(&auth.0, q.page()?).await?))
}

/// Record progress on a lesson of an enrolled course. Idempotent and monotonic: completed
/// stays completed; progress, time spent and the best score never go down.
#[utoipa::path(put, path = "/me/lessons/{lesson_id}/progress", tag = "progress", params(("lesson_id" = Uuid, Path)), security(("bearer" = [])), request_body = ProgressUpdate,
    responses((status = 200, body = LessonProgressResult), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn put_progress(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(lesson_id): PathId,
    ApiJson(b): ApiJson<ProgressUpdate>,
) -> ApiResult<Json<LessonProgressResult>> {
    Ok(Json(s.progress.put_lesson_progress(&ctx, &auth.0, lesson_id, b).await?))
}

/// Apply offline progress events in `occurred_at` order; an `event_id` seen before is skipped.
/// At most 500 events (422 beyond; a body over the size limit is 413).
#[utoipa::path(post, path = "/me/progress/batch", tag = "progress", security(("bearer" = [])), request_body = ProgressBatch,
    responses((status = 200, body = BatchResult), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn batch(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    ApiJson(b): ApiJson<ProgressBatch>,
) -> ApiResult<Json<BatchResult>> {
    Ok(Json(s.progress.apply_batch(&ctx, &auth.0, b).await?))
}

/// Progress in each enrolled course, with module rollups and the next lesson.
#[utoipa::path(get, path = "/me/progress", tag = "progress", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<CourseProgress>), (status = 401, body = Problem)))]
async fn my_progress(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<CourseProgress>>> {
    Ok(Json(s.progress.course_progress(auth.0.user_id, None, q.page()?).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DashboardParams {
    /// The student's UTC offset in minutes (-840 to 840) for counting streak days; default 0.
    #[param(minimum = -840, maximum = 840)]
    pub tz_offset_minutes: Option<i32>,
}

/// Everything the student's home screen shows, in one request.
#[utoipa::path(get, path = "/me/dashboard", tag = "progress", security(("bearer" = [])), params(DashboardParams),
    responses((status = 200, body = Dashboard), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn dashboard(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<DashboardParams>,
) -> ApiResult<Json<Dashboard>> {
    let offset = q.tz_offset_minutes.unwrap_or(0);
    if !(-840..=840).contains(&offset) {
        return Err(ApiError::field("tz_offset_minutes", "must be between -840 and 840"));
    }
    Ok(Json(dashboard::load(&s.db, &s.progress, auth.user().clone(), offset).await?))
}

/// A student's progress, for admins and for instructors of a course the student is enrolled in
/// (who see only their own courses). 404 for everyone else.
#[utoipa::path(get, path = "/users/{id}/progress", tag = "progress", security(("bearer" = [])),
    params(ListParams, ("id" = Uuid, Path)),
    responses((status = 200, body = Page<CourseProgress>), (status = 404, body = Problem)))]
async fn user_progress(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<CourseProgress>>> {
    let p = auth.require(&[Role::Instructor, Role::Admin])?;
    Ok(Json(s.progress.user_progress(p, id, q.page()?).await?))
}
