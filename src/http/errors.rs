//! Every domain error as the API answers it, in one place: the status codes and problem slugs
//! of the whole contract can be read here, and no domain knows about HTTP.
//!
//! A domain's database or infrastructure failure becomes a 500 carrying the error itself, so
//! its whole cause chain is logged once, when the response is rendered.

use axum::http::StatusCode;

use super::problem::ApiError;
use crate::{
    achievements::AchievementError,
    admin::AdminError,
    assessments::AssessError,
    auth::AuthError,
    catalog::CatalogError,
    email::EmailError,
    infra::realtime::TooManyConnections,
    kernel::fields::FieldErrors,
    notifications::{NotificationError, live::TicketError},
    progress::ProgressError,
    submissions::SubmitError,
};

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        ApiError::validation(e.into_vec())
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Validation(v) => v.into(),
            CatalogError::NotFound => ApiError::not_found(),
            CatalogError::SlugTaken => {
                ApiError::new(StatusCode::CONFLICT, "slug-taken", "a course with this slug already exists")
            }
            CatalogError::Db(_) | CatalogError::Reaction(_) => ApiError::internal_error(e),
        }
    }
}

impl From<ProgressError> for ApiError {
    fn from(e: ProgressError) -> Self {
        match e {
            ProgressError::Validation(v) => v.into(),
            ProgressError::NotFound => ApiError::not_found(),
            ProgressError::Db(_) | ProgressError::Reaction(_) => ApiError::internal_error(e),
        }
    }
}

impl From<AssessError> for ApiError {
    fn from(e: AssessError) -> Self {
        match e {
            AssessError::Validation(v) => v.into(),
            AssessError::NotFound => ApiError::not_found(),
            AssessError::Unauthenticated(why) => ApiError::unsigned("invalid-signature", why),
            AssessError::Conflict(slug, detail) => ApiError::new(StatusCode::CONFLICT, slug, detail),
            AssessError::Encoding(_) | AssessError::Db(_) | AssessError::Reaction(_) => ApiError::internal_error(e),
        }
    }
}

impl From<AchievementError> for ApiError {
    fn from(e: AchievementError) -> Self {
        match e {
            AchievementError::Validation(v) => v.into(),
            AchievementError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "an achievement with this code exists")
            }
            AchievementError::Db(_) => ApiError::internal_error(e),
        }
    }
}

impl From<NotificationError> for ApiError {
    fn from(e: NotificationError) -> Self {
        match e {
            NotificationError::NotFound => ApiError::not_found(),
            NotificationError::Db(_) => ApiError::internal_error(e),
        }
    }
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        match e {
            TicketError::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid-ticket",
                "the ticket is unknown, expired or already used; request a new one",
            ),
            TicketError::TooMany { retry_after_secs } => {
                ApiError::too_many(retry_after_secs, "too many unspent tickets; use one or wait for it to expire")
            }
            TicketError::Db(_) => ApiError::internal_error(e),
        }
    }
}

impl From<TooManyConnections> for ApiError {
    fn from(_: TooManyConnections) -> Self {
        ApiError::too_many(5, "too many live connections for this user; close one first")
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Validation(v) => v.into(),
            AdminError::NotFound => ApiError::not_found(),
            AdminError::Db(_) => ApiError::internal_error(e),
        }
    }
}

impl From<EmailError> for ApiError {
    fn from(e: EmailError) -> Self {
        match e {
            EmailError::InvalidAddress => ApiError::field("email", "must be a valid email address"),
            EmailError::Validation(v) => v.into(),
            EmailError::NotFound => ApiError::not_found(),
            EmailError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EmailError::InvalidToken => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-token", "the link is invalid or no longer valid")
            }
            EmailError::Unauthorized => ApiError::unauthorized(),
            EmailError::Template(_) | EmailError::Db(_) => ApiError::internal_error(e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Validation(v) => v.into(),
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
            AuthError::TooManyRegistrations { retry_after_secs } => {
                ApiError::too_many(retry_after_secs, "too many new accounts from this address; try again later")
            }
            AuthError::InvalidRefreshToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid-refresh-token",
                "the refresh token is invalid, expired or already used",
            ),
            AuthError::Unauthenticated => ApiError::invalid_token(false),
            AuthError::AccessTokenExpired => ApiError::invalid_token(true),
            AuthError::NotFound => ApiError::not_found(),
            AuthError::Busy => ApiError::unavailable(1, "the server is busy; retry shortly"),
            AuthError::InvalidEmailToken => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-token", "the link is invalid, expired or already used")
            }
            AuthError::Db(_) | AuthError::Hash(_) | AuthError::Email(_) => ApiError::internal_error(e),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Validation(v) => v.into(),
            SubmitError::NotFound => ApiError::not_found(),
            SubmitError::TooLarge { field, detail } => {
                let mut e = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", detail);
                e.errors = vec![crate::kernel::fields::FieldError::new(field, "is over its limit")];
                e
            }
            SubmitError::QuotaExceeded(detail) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "storage-quota-exceeded", detail)
            }
            SubmitError::Unsupported { field, detail } => {
                let mut e = ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-file-type", detail);
                e.errors = vec![crate::kernel::fields::FieldError::new(field, "is not a type we accept")];
                e
            }
            SubmitError::Conflict(slug, detail) => ApiError::new(StatusCode::CONFLICT, slug, detail),
            SubmitError::RangeNotSatisfiable(_) => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "the range is outside the file",
            ),
            SubmitError::Busy(crate::submissions::slots::Busy::User) => {
                ApiError::too_many(10, "you are already handing in two projects; wait until they are done")
            }
            SubmitError::Busy(crate::submissions::slots::Busy::Instance) => {
                ApiError::unavailable(5, "too many uploads are running right now; try again in a moment")
            }
            SubmitError::StorageUnavailable(ref cause) => {
                tracing::error!(error = %cause, "file storage unavailable");
                ApiError::unavailable(30, "file storage is unavailable right now; nothing was kept, try again later")
            }
            SubmitError::Io(_) | SubmitError::Db(_) | SubmitError::Reaction(_) => ApiError::internal_error(e),
        }
    }
}
