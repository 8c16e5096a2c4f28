//! Assessments and learning paths (students, instructors, admins), the integration endpoints
//! of the assessment tool (signed machine requests), and machine-client administration.

use crate::kernel::input::schema;
use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ApiQuery, Auth, Ctx, ListParams, parse_json},
    machine::{MachineClient, MachineHeaders},
    policy,
    problem::{ApiResult, PathId, Problem},
};
use crate::{
    assessments::{
        AssessmentStarted, AssessmentView, ClientCreated, ClientRotated, ClientView, LaunchInfo, ResultsInput,
        paths::LearningPathView,
    },
    kernel::context::Role,
    kernel::pagination::Page,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    // A launch token, signed machine calls and client secrets. Machine clients use the
    // results' own `external_id` for idempotency instead.
    let credentials = OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(results))
        .routes(routes!(launch))
        .routes(routes!(create_client, list_clients))
        .routes(routes!(revoke_client))
        .routes(routes!(rotate_client));
    OpenApiRouter::new()
        .routes(routes!(list_mine))
        .routes(routes!(get_one))
        .routes(routes!(my_learning_path))
        .routes(routes!(user_learning_path))
        .merge(policy::not_remembered(credentials))
}

/// Start an assessment: a pending assessment and a short-lived launch link for the tool.
#[utoipa::path(post, path = "/me/assessments", tag = "assessments", security(("bearer" = [])),
    responses((status = 201, body = AssessmentStarted), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Five assessments already wait for results", body = Problem)))]
async fn start(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
) -> ApiResult<(StatusCode, Json<AssessmentStarted>)> {
    let p = auth.require(&[Role::Student])?;
    Ok((StatusCode::CREATED, Json(s.assessments.start(&ctx, p).await?)))
}

/// The caller's assessments, oldest first. A pending one past `expires_at` reads `expired`.
#[utoipa::path(get, path = "/me/assessments", tag = "assessments", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<AssessmentView>), (status = 401, body = Problem)))]
async fn list_mine(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<AssessmentView>>> {
    Ok(Json(s.assessments.list_mine(&auth.0, q.page()?).await?))
}

/// One assessment: for its student, admins and the student's instructors; 404 for others.
#[utoipa::path(get, path = "/assessments/{id}", tag = "assessments", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = AssessmentView), (status = 404, body = Problem)))]
async fn get_one(State(s): State<AppState>, auth: Auth, PathId(id): PathId) -> ApiResult<Json<AssessmentView>> {
    Ok(Json(s.assessments.get(&auth.0, id).await?))
}

/// The caller's latest learning path (empty, with null `generated_at`, before any assessment).
#[utoipa::path(get, path = "/me/learning-path", tag = "assessments", security(("bearer" = [])),
    responses((status = 200, body = LearningPathView), (status = 401, body = Problem)))]
async fn my_learning_path(State(s): State<AppState>, auth: Auth) -> ApiResult<Json<LearningPathView>> {
    Ok(Json(s.assessments.learning_path(&auth.0, auth.0.user_id).await?))
}

/// A student's learning path, for admins and the student's instructors; 404 for others.
#[utoipa::path(get, path = "/users/{id}/learning-path", tag = "assessments", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = LearningPathView), (status = 404, body = Problem)))]
async fn user_learning_path(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<Json<LearningPathView>> {
    let p = auth.require(&[Role::Instructor, Role::Admin])?;
    Ok(Json(s.assessments.learning_path(p, id).await?))
}

/// The assessment tool posts results (signed machine request, see the README). 201 when this
/// delivery completed the assessment; 200 for a repeat of the same `external_id` and body
/// (nothing changes); 409 for the same `external_id` with another body, an assessment that
/// already has other results, or one that expired; 422 naming each invalid field.
#[utoipa::path(post, path = "/integrations/assessments/results", tag = "integrations", request_body = ResultsInput,
    params(MachineHeaders), security(("cifix_signature" = [])),
    responses((status = 201, body = AssessmentView), (status = 200, body = AssessmentView), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn results(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    m: MachineClient,
) -> ApiResult<(StatusCode, Json<AssessmentView>)> {
    let input: ResultsInput = parse_json(&m.body)?;
    let d = s.assessments.submit_results(&ctx, m.client_id, input, &m.body).await?;
    Ok((if d.created { StatusCode::CREATED } else { StatusCode::OK }, Json(d.assessment)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    pub launch_token: String,
}

/// The tool resolves a launch token to the student being assessed (signed machine request).
#[utoipa::path(post, path = "/integrations/assessments/launch", tag = "integrations", request_body = LaunchRequest,
    params(MachineHeaders), security(("cifix_signature" = [])),
    responses((status = 200, body = LaunchInfo), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn launch(State(s): State<AppState>, m: MachineClient) -> ApiResult<Json<LaunchInfo>> {
    let b: LaunchRequest = parse_json(&m.body)?;
    Ok(Json(s.assessments.launch_info(&b.launch_token).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// 1 to 100 characters, for people: "Streamlit assessment (prod)".
    #[schema(schema_with = schema::title::<100>)]
    pub name: String,
}

/// Create a machine client. The secret is in this response only.
#[utoipa::path(post, path = "/admin/integrations/clients", tag = "admin", security(("bearer" = [])), request_body = CreateClient,
    responses((status = 201, body = ClientCreated), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_client(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    ApiJson(b): ApiJson<CreateClient>,
) -> ApiResult<(StatusCode, Json<ClientCreated>)> {
    let p = auth.require(&[Role::Admin])?;
    Ok((StatusCode::CREATED, Json(s.assessments.create_client(&ctx, p, &b.name).await?)))
}

/// Machine clients, oldest first (never their secrets).
#[utoipa::path(get, path = "/admin/integrations/clients", tag = "admin", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<ClientView>), (status = 404, body = Problem)))]
async fn list_clients(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<ClientView>>> {
    auth.require(&[Role::Admin])?;
    Ok(Json(s.assessments.list_clients(q.page()?).await?))
}

/// Revoke a client: its signatures stop working at once.
#[utoipa::path(delete, path = "/admin/integrations/clients/{id}", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_client(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let p = auth.require(&[Role::Admin])?;
    s.assessments.revoke_client(&ctx, p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New secret; the previous one keeps working for `CIFIX_INTEGRATION_SECRET_OVERLAP_SECS`.
#[utoipa::path(post, path = "/admin/integrations/clients/{id}/rotate", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = ClientRotated), (status = 404, body = Problem)))]
async fn rotate_client(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<Json<ClientRotated>> {
    let p = auth.require(&[Role::Admin])?;
    Ok(Json(s.assessments.rotate_client(&ctx, p, id, None).await?))
}
