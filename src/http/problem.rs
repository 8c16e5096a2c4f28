//! RFC 9457 problem+json: the one error shape every endpoint answers with.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{auth::AuthError, email::EmailError};

tokio::task_local! {
    /// The current request's id, so that an error built deep in a handler can carry it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, slug, detail: detail.into(), errors: Vec::new(), retry_after: None }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-request", detail)
    }
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "the request has invalid fields");
        e.errors = errors;
        e
    }
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.to_string(), message: message.into() }])
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid access token is required")
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
    }
    pub fn too_many(retry_after: u64, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail);
        e.retry_after = Some(retry_after.max(1));
        e
    }
    pub fn unavailable(retry_after: u64, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        e.retry_after = Some(retry_after.max(1));
        e
    }
    /// As [`ApiError::internal`], logging the error with its whole chain of causes.
    pub fn internal_error(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::internal(chain)
    }

    /// Logs the cause with the request id and answers without it: internals never leave.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; quote the request id when reporting it",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:cifix:problem:{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            request_id: current_request_id(),
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.problem())).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Validation(v) => ApiError::validation(
                v.into_iter().map(|(f, m)| FieldError { field: f.to_string(), message: m }).collect(),
            ),
            AuthError::EmailTaken => {
                ApiError::new(StatusCode::CONFLICT, "email-taken", "this email is already registered")
            }
            AuthError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid-credentials", "invalid email or password")
            }
            AuthError::AccountLocked { retry_after_secs } => ApiError::too_many(
                retry_after_secs,
                "too many failed sign-in attempts for this account; try again later",
            ),
            AuthError::InvalidRefreshToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid-refresh-token",
                "the refresh token is invalid, expired or already used",
            ),
            AuthError::Unauthenticated => ApiError::unauthorized(),
            AuthError::NotFound => ApiError::not_found(),
            AuthError::Busy => ApiError::unavailable(1, "the server is busy; retry shortly"),
            AuthError::InvalidEmailToken => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-token", "the link is invalid, expired or already used")
            }
            AuthError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<EmailError> for ApiError {
    fn from(e: EmailError) -> Self {
        match e {
            EmailError::InvalidAddress => ApiError::field("email", "must be a valid email address"),
            EmailError::Validation(f, m) => ApiError::field(f, m),
            EmailError::NotFound => ApiError::not_found(),
            EmailError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EmailError::InvalidToken => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-token", "the link is invalid or no longer valid")
            }
            EmailError::Unauthorized => ApiError::unauthorized(),
            EmailError::Template(e) => ApiError::internal(e),
            EmailError::Db(e) => ApiError::internal(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
