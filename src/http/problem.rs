//! RFC 9457 problem+json: the one error shape every endpoint answers with.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

pub use crate::kernel::fields::FieldError;

// Handlers take their error types and the path-id extractor from this one place.
pub use super::path_id::PathId;

tokio::task_local! {
    /// The current request's id, so that an error built deep in a handler can carry it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
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

/// What a failed request answers. A 500 carries its cause, which is logged (with its whole
/// chain of sources) when the response is rendered and never put in the body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` of a 401 (RFC 9110 §11.6.1: every 401 carries one).
    pub challenge: Option<&'static str>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// A cause known only by its message.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            slug,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            challenge: None,
            cause: None,
        }
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
    /// No access token was sent (RFC 6750 §3.1: then the challenge carries no error code).
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid access token is required")
    }
    /// An access token was sent and refused. `expired` only for a genuine token past its
    /// lifetime: the client should refresh; otherwise it should sign in again.
    pub fn invalid_token(expired: bool) -> Self {
        let (slug, description, challenge) = if expired {
            ("token-expired", "the access token expired", EXPIRED_CHALLENGE)
        } else {
            ("unauthorized", "the access token is invalid", INVALID_CHALLENGE)
        };
        let mut e =
            Self::new(StatusCode::UNAUTHORIZED, slug, format!("{description}; a valid access token is required"));
        e.challenge = Some(challenge);
        e
    }
    /// A machine call (`/integrations/*`) without a valid signature.
    pub fn unsigned(slug: &'static str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, slug, detail);
        e.challenge = Some(r#"CIFIX-HMAC-SHA256 realm="cifix-integrations""#);
        e
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
    /// A 500 for `cause`, whose chain of sources is logged when the response is rendered. When
    /// the cause is that the database cannot be reached, a 503 with `Retry-After` instead: the
    /// request changed nothing and a retry in a moment may succeed.
    pub fn internal_error(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let cause = cause.into();
        let mut e = if database_unreachable(cause.as_ref()) {
            let mut e = Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "the service cannot reach its database right now; retry shortly",
            );
            e.retry_after = Some(1);
            e
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; quote the request id when reporting it",
            )
        };
        e.cause = Some(cause);
        e
    }

    /// As [`ApiError::internal_error`], for a cause that is only a message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::internal_error(Message(cause.to_string()))
    }

    fn log_cause(&self) {
        let Some(cause) = &self.cause else { return };
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(next) = source {
            chain.push_str(": ");
            chain.push_str(&next.to_string());
            source = next.source();
        }
        // Logged with the request id of the span it is rendered in; internals never leave.
        tracing::error!(error = %chain, "internal error");
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
        self.log_cause();
        let mut res = (self.status, Json(self.problem())).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        // A 503 without a hint of its own still tells the client that retrying is the cure.
        let retry_after = self.retry_after.or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(secs) = retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = self.challenge.unwrap_or(BEARER_CHALLENGE);
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        res
    }
}

const BEARER_CHALLENGE: &str = r#"Bearer realm="cifix""#;
const INVALID_CHALLENGE: &str =
    r#"Bearer realm="cifix", error="invalid_token", error_description="the access token is invalid""#;
const EXPIRED_CHALLENGE: &str =
    r#"Bearer realm="cifix", error="invalid_token", error_description="the access token expired""#;

pub type ApiResult<T> = Result<T, ApiError>;

/// Whether an error, or any of its causes, is a failure to get or keep a database connection:
/// no connection to be had, or a statement cut off because the server went away (shut down,
/// restarted, the connection broke). Retrying such a request is safe here: writes are
/// idempotent (natural keys, event ids, monotonic progress), also the rare one whose commit
/// reached the server before the connection broke.
fn database_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    let mut next = Some(e);
    while let Some(err) = next {
        match err.downcast_ref::<DbErr>() {
            Some(DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) => return true,
            Some(DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e))) => {
                let cut_off = match e.as_ref() {
                    sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut => true,
                    // Class 08 is a connection exception; 57P01..57P03 the server shutting
                    // down, crashed or not yet accepting connections.
                    sqlx::Error::Database(db) => db
                        .code()
                        .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")),
                    _ => false,
                };
                if cut_off {
                    return true;
                }
            }
            _ => {}
        }
        next = err.source();
    }
    false
}
