//! `/me*`: the signed-in user's account and sessions.

use crate::kernel::input::{DisplayName, schema};
use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ApiQuery, Auth, Ctx, ListParams},
    policy,
    problem::{ApiResult, PathId, Problem},
};
use crate::{
    auth::{SessionView, UserView},
    email::{EmailPreferences, EmailPreferencesPatch},
    kernel::pagination::Page,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    // Costs a bcrypt hash, and its body holds passwords (even a hash of them must not be kept).
    let password = policy::not_remembered(policy::auth_budget(OpenApiRouter::new().routes(routes!(change_password))));
    OpenApiRouter::new()
        .routes(routes!(get_me, patch_me))
        .merge(password)
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(get_preferences, put_preferences))
}

#[derive(Serialize, ToSchema)]
pub struct NotificationPreferences {
    pub email: EmailPreferences,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPreferencesUpdate {
    /// Categories left out keep their value. Account-security email (verification, password
    /// reset) is not a category: it cannot be switched off.
    pub email: EmailPreferencesPatch,
}

/// The user's email choices.
#[utoipa::path(get, path = "/me/notification-preferences", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = NotificationPreferences), (status = 401, body = Problem)))]
async fn get_preferences(State(s): State<AppState>, auth: Auth) -> ApiResult<Json<NotificationPreferences>> {
    Ok(Json(NotificationPreferences { email: s.email.preferences(&auth.0).await? }))
}

/// Change the user's email choices.
#[utoipa::path(put, path = "/me/notification-preferences", tag = "account", security(("bearer" = [])),
    request_body = NotificationPreferencesUpdate,
    responses((status = 200, body = NotificationPreferences), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn put_preferences(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    ApiJson(b): ApiJson<NotificationPreferencesUpdate>,
) -> ApiResult<Json<NotificationPreferences>> {
    Ok(Json(NotificationPreferences { email: s.email.update_preferences(&ctx, &auth.0, b.email).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    #[schema(schema_with = schema::title_or_null::<{ DisplayName::MAX }>)]
    pub display_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    #[schema(schema_with = schema::new_password)]
    pub new_password: String,
}

/// The signed-in user.
#[utoipa::path(get, path = "/me", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
async fn get_me(auth: Auth) -> ApiResult<Json<UserView>> {
    Ok(Json(auth.user().clone()))
}

/// Change the display name.
#[utoipa::path(patch, path = "/me", tag = "account", security(("bearer" = [])), request_body = UpdateMe,
    responses((status = 200, body = UserView), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn patch_me(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    ApiJson(b): ApiJson<UpdateMe>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(s.auth.update_profile(&ctx, &auth.0, b.display_name.as_deref()).await?))
}

/// Change the password; every other session of the user ends.
#[utoipa::path(post, path = "/me/password", tag = "account", security(("bearer" = [])), request_body = ChangePassword,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn change_password(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    ApiJson(b): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    s.auth.change_password(&ctx, &auth.0, &b.current_password, &b.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's live sessions, newest first.
#[utoipa::path(get, path = "/me/sessions", tag = "account", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<SessionView>), (status = 401, body = Problem)))]
async fn list_sessions(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<SessionView>>> {
    Ok(Json(s.auth.list_sessions(&auth.0, q.page()?).await?))
}

/// End one of the user's sessions.
#[utoipa::path(delete, path = "/me/sessions/{id}", tag = "account", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn revoke_session(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    s.auth.revoke_session(&ctx, &auth.0, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
