//! Accounts and sessions. Knows the database and the audit trail, nothing of HTTP.
//!
//! One file per feature: `register`, `login`, `sessions` (refresh, logout, who is calling),
//! `email_flows` (verification and password reset), `profile`; `model` holds the views.

mod email_flows;
mod login;
mod managed;
mod model;
pub mod password;
mod profile;
mod register;
mod sessions;
pub mod throttle;
pub mod tokens;

use std::time::Duration;

use sea_orm::DbErr;

pub use model::{SessionView, TokenPair, UserView};

use crate::{
    email::{EmailError, EmailService},
    infra::{db::Db, realtime::EventBus},
    kernel::{
        fields::FieldErrors,
        input::{EmailAddress, InputError},
    },
};
use password::{HashError, Hasher};
use tokens::TokenKeys;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("validation failed")]
    Validation(#[from] FieldErrors),
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("too many failed sign-in attempts for this account")]
    AccountLocked { retry_after_secs: u64 },
    #[error("too many registrations from this address")]
    TooManyRegistrations { retry_after_secs: u64 },
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("not authenticated")]
    Unauthenticated,
    #[error("the access token expired")]
    AccessTokenExpired,
    #[error("not found")]
    NotFound,
    #[error("password hashing is saturated")]
    Busy,
    #[error("the token is invalid, expired or already used")]
    InvalidEmailToken,
    #[error("database")]
    Db(#[from] DbErr),
    #[error("password hashing")]
    Hash(#[source] HashError),
    #[error("email")]
    Email(#[source] EmailError),
}

impl From<EmailError> for AuthError {
    fn from(e: EmailError) -> Self {
        match e {
            EmailError::InvalidAddress => invalid("email", InputError::Email.to_string()),
            other => AuthError::Email(other),
        }
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AuthError::Busy,
            other => AuthError::Hash(other),
        }
    }
}

fn invalid(field: &'static str, msg: impl Into<String>) -> AuthError {
    FieldErrors::one(field, msg).into()
}

pub struct AuthService {
    pub db: Db,
    pub hasher: Hasher,
    pub keys: TokenKeys,
    pub refresh_ttl: Duration,
    pub max_failed_logins_per_hour: u32,
    pub throttle: throttle::LoginThrottle,
    pub email: EmailService,
    /// Ending sessions also ends the user's live connections (WebSocket/SSE) on every
    /// instance; those still entitled reconnect with a fresh ticket.
    pub events: EventBus,
}

fn check_password(field: &'static str, password: &str, email: &str) -> Result<(), AuthError> {
    password::check_strength(password, email).map_err(|m| invalid(field, m))
}

/// The address of a request's `email` field, or the 422 naming it.
pub fn parse_email(email: &str) -> Result<EmailAddress, AuthError> {
    EmailAddress::parse(email).map_err(|e| invalid("email", e.to_string()))
}
