//! `/auth/*`: registration, sign-in and the session lifecycle.

use crate::kernel::input::{DisplayName, schema};
use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, Auth, Ctx},
    policy,
    problem::{ApiError, ApiResult, Problem},
};
use crate::{auth::TokenPair, infra::ratelimit::Rule, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    // Each of these costs a bcrypt hash or lets a guesser probe an account or a token.
    let guarding = OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(verify_email))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password));
    let ending =
        OpenApiRouter::new().routes(routes!(logout)).routes(routes!(logout_all)).routes(routes!(resend_verification));
    // Passwords and tokens in every request or response here.
    policy::not_remembered(policy::auth_budget(guarding).merge(ending))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the emailed link.
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    #[schema(schema_with = schema::email)]
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub token: String,
    /// Same rules as at registration.
    #[schema(schema_with = schema::new_password)]
    pub new_password: String,
}

/// Confirm the email address with the token from the verification email (single use, 48 hours).
#[utoipa::path(post, path = "/auth/email/verify", tag = "auth", request_body = TokenRequest,
    responses((status = 204), (status = 400, body = Problem), (status = 429, body = Problem)))]
async fn verify_email(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(b): ApiJson<TokenRequest>,
) -> ApiResult<StatusCode> {
    s.auth.verify_email(&ctx, &b.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a new verification email (nothing is sent when the address is already verified).
#[utoipa::path(post, path = "/auth/email/resend", tag = "auth", security(("bearer" = [])),
    responses((status = 202), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn resend_verification(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth) -> ApiResult<StatusCode> {
    // Per user, so a signed-in client cannot turn us into a mail cannon.
    let d = s.limiter.check(&Rule::per_minute("verify-resend", 2), &auth.0.user_id.to_string()).await;
    if !d.allowed {
        return Err(ApiError::too_many(d.retry_after_secs, "a verification email was sent moments ago"));
    }
    s.auth.resend_verification(&ctx, &auth.0).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Ask for a password-reset email. Always 202 with an empty body, whether or not an account
/// has this address.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotRequest,
    responses((status = 202), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn forgot_password(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(b): ApiJson<ForgotRequest>,
) -> ApiResult<StatusCode> {
    // Besides the strict per-IP limit: at most a few reset mails per address per minute, from
    // any number of IPs. Over it, the answer is the same 202 (no oracle), but nothing is sent.
    let account = crate::auth::throttle::account_key(&b.email);
    let d = s.limiter.check(&Rule::per_minute("forgot-account", 3), &account).await;
    if d.allowed {
        s.auth.forgot_password(&ctx, &b.email).await?;
    } else {
        crate::auth::parse_email(&b.email)?;
    }
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the token from the reset email (single use, 30 minutes). Every
/// session of the account ends.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetRequest,
    responses((status = 204), (status = 400, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn reset_password(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(b): ApiJson<ResetRequest>,
) -> ApiResult<StatusCode> {
    s.auth.reset_password(&ctx, &b.token, &b.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(schema_with = schema::email)]
    pub email: String,
    /// 8 to 128 characters; common passwords are refused.
    #[schema(schema_with = schema::new_password)]
    pub password: String,
    #[schema(schema_with = schema::title::<{ DisplayName::MAX }>)]
    pub display_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Create a student account and sign in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = TokenPair), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn register(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(b): ApiJson<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let pair = s.auth.register(&ctx, &b.email, &b.password, &b.display_name).await?;
    Ok((StatusCode::CREATED, Json(pair)))
}

/// Sign in. A wrong password and an unknown email get the same answer in about the same time.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
async fn login(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(b): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenPair>> {
    Ok(Json(s.auth.login(&ctx, &b.email, &b.password).await?))
}

/// Exchange a refresh token for a new pair. The old one is spent; presenting it again ends the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem)))]
async fn refresh(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(b): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    if b.refresh_token.is_empty() || b.refresh_token.len() > 200 {
        return Err(crate::auth::AuthError::InvalidRefreshToken.into());
    }
    Ok(Json(s.auth.refresh(&ctx, &b.refresh_token).await?))
}

/// End the session a refresh token belongs to.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204)))]
async fn logout(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(b): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    if !b.refresh_token.is_empty() && b.refresh_token.len() <= 200 {
        s.auth.logout(&ctx, &b.refresh_token).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout_all(State(s): State<AppState>, Ctx(ctx): Ctx, auth: Auth) -> ApiResult<StatusCode> {
    s.auth.logout_all(&ctx, &auth.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
