//! Email that is never lost: every message is written to the `email_outbox` table in the same
//! transaction as the change that causes it, and delivered later by a worker
//! ([`worker::Worker`]) with retries. Knows the database and templates, nothing of HTTP.
//!
//! Messages are rendered at enqueue time: what the API promised is fixed in the row, and the
//! worker needs neither templates nor user data to deliver it.

mod outbox;
mod preferences;
pub mod render;
pub mod ses;
mod suppression;
mod templates;
pub mod transport;
pub mod worker;

pub use self::{
    outbox::{EmailView, Outgoing, normalize_address},
    preferences::{EmailPreferences, EmailPreferencesPatch},
    templates::{Category, Rendered, Template},
};

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sea_orm::DbErr;
use sha2::Sha256;

use crate::{
    config::Config,
    infra::{db::Db, wakeup::Wakeup},
    kernel::fields::FieldErrors,
};

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid recipient address")]
    InvalidAddress,
    #[error("template: {0}")]
    Template(#[from] render::RenderError),
    #[error("validation failed")]
    Validation(#[from] FieldErrors),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("invalid or unknown token")]
    InvalidToken,
    #[error("unauthorized")]
    Unauthorized,
    #[error("database")]
    Db(#[from] DbErr),
}

pub mod status {
    pub const QUEUED: &str = "queued";
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    pub const SUPPRESSED: &str = "suppressed";
    pub const ALL: [&str; 5] = [QUEUED, SENDING, SENT, FAILED, SUPPRESSED];
}

/// Settings shared by enqueueing and delivery.
pub struct EmailSettings {
    pub product: String,
    pub public_url: String,
    pub from: String,
    pub max_attempts: u32,
    pub retry_base: std::time::Duration,
    pub retry_max: std::time::Duration,
    pub lease: std::time::Duration,
    pub poll_interval: std::time::Duration,
    pub concurrency: usize,
    pub ses_webhook_secret: Option<String>,
    unsubscribe_key: [u8; 32],
}

#[derive(Clone)]
pub struct EmailService {
    pub db: Db,
    pub settings: Arc<EmailSettings>,
    /// Wakes in-process workers when queued mail commits, so it leaves without waiting for
    /// the poll.
    pub wake: Wakeup,
}

impl EmailService {
    pub fn new(config: &Config, db: Db, secret: &[u8]) -> EmailService {
        // A key of its own, derived from the JWT secret, so an unsubscribe token can never be
        // confused with anything else signed by that secret.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"cifix-email-unsubscribe-v1");
        let unsubscribe_key: [u8; 32] = mac.finalize().into_bytes().into();
        let e = &config.email;
        EmailService {
            db,
            settings: Arc::new(EmailSettings {
                product: e.product_name.clone(),
                public_url: config.public_url.trim_end_matches('/').to_string(),
                from: e.from.clone(),
                max_attempts: e.max_attempts,
                retry_base: e.retry_base,
                retry_max: e.retry_max,
                lease: e.lease,
                poll_interval: e.poll_interval,
                concurrency: e.concurrency,
                ses_webhook_secret: e.ses_webhook_secret.clone(),
                unsubscribe_key,
            }),
            wake: Wakeup::default(),
        }
    }

    pub fn link(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.settings.public_url)
    }
}
