//! Email that is never lost: every message is written to the `email_outbox` table in the same
//! transaction as the change that causes it, and delivered later by a worker
//! ([`worker::Worker`]) with retries. Knows the database and templates, nothing of HTTP.
//!
//! Messages are rendered at enqueue time: what the API promised is fixed in the row, and the
//! worker needs neither templates nor user data to deliver it.

pub mod render;
pub mod ses;
pub mod transport;
pub mod worker;

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    config::Config,
    entities::{email_outbox, email_suppression, notification_preference, user},
    infra::{
        db::{Db, WriteTxn},
        wakeup::Wakeup,
    },
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext},
    kernel::pagination::{Page, PageRequest},
};

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid recipient address")]
    InvalidAddress,
    #[error("template: {0}")]
    Template(#[from] render::RenderError),
    #[error("invalid field {0}: {1}")]
    Validation(&'static str, String),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("invalid or unknown token")]
    InvalidToken,
    #[error("unauthorized")]
    Unauthorized,
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// What a message is about, which decides whether a user may switch it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Verification and password reset: always sent, no unsubscribe link.
    Security,
    NewSignIn,
    Achievements,
    ProgressDigest,
    AssessmentResults,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Security => "security",
            Category::NewSignIn => "new_sign_in",
            Category::Achievements => "achievements",
            Category::ProgressDigest => "progress_digest",
            Category::AssessmentResults => "assessment_results",
        }
    }
    pub fn parse(s: &str) -> Option<Category> {
        [
            Category::Security,
            Category::NewSignIn,
            Category::Achievements,
            Category::ProgressDigest,
            Category::AssessmentResults,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
    pub fn optional(self) -> bool {
        self != Category::Security
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    VerifyEmail,
    PasswordReset,
    NewSignIn,
    AchievementAwarded,
    AssessmentResults,
}

impl Template {
    pub const ALL: [Template; 5] = [
        Template::VerifyEmail,
        Template::PasswordReset,
        Template::NewSignIn,
        Template::AchievementAwarded,
        Template::AssessmentResults,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::VerifyEmail => "verify_email",
            Template::PasswordReset => "password_reset",
            Template::NewSignIn => "new_sign_in",
            Template::AchievementAwarded => "achievement_awarded",
            Template::AssessmentResults => "assessment_results",
        }
    }

    pub fn category(self) -> Category {
        match self {
            Template::VerifyEmail | Template::PasswordReset => Category::Security,
            Template::NewSignIn => Category::NewSignIn,
            Template::AchievementAwarded => Category::Achievements,
            Template::AssessmentResults => Category::AssessmentResults,
        }
    }

    /// Whether the message carries a secret (a one-time link); its body is erased once sent.
    pub fn carries_secret(self) -> bool {
        self.category() == Category::Security
    }

    /// (text with the subject on its first line, HTML)
    fn sources(self) -> (&'static str, &'static str) {
        match self {
            Template::VerifyEmail => (
                include_str!("../../templates/email/verify_email.txt"),
                include_str!("../../templates/email/verify_email.html"),
            ),
            Template::PasswordReset => (
                include_str!("../../templates/email/password_reset.txt"),
                include_str!("../../templates/email/password_reset.html"),
            ),
            Template::NewSignIn => (
                include_str!("../../templates/email/new_sign_in.txt"),
                include_str!("../../templates/email/new_sign_in.html"),
            ),
            Template::AchievementAwarded => (
                include_str!("../../templates/email/achievement_awarded.txt"),
                include_str!("../../templates/email/achievement_awarded.html"),
            ),
            Template::AssessmentResults => (
                include_str!("../../templates/email/assessment_results.txt"),
                include_str!("../../templates/email/assessment_results.html"),
            ),
        }
    }
}

/// A rendered message: what the outbox row's payload holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// RFC 8058 one-click unsubscribe URL for optional mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_unsubscribe: Option<String>,
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

/// One email to enqueue.
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub to_name: Option<&'a str>,
    pub user_id: Option<Uuid>,
    pub template: Template,
    /// Template variables (a JSON object); `product`, `public_url`, `display_name` and
    /// `unsubscribe_url` are filled in.
    pub vars: Value,
    /// Enqueue at most once per key (e.g. `achievement:{user}:{id}`).
    pub dedup_key: Option<String>,
}

#[derive(Clone)]
pub struct EmailService {
    pub db: Db,
    pub settings: Arc<EmailSettings>,
    /// Wakes in-process workers when queued mail commits, so it leaves without waiting for
    /// the poll.
    pub wake: Wakeup,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailPreferences {
    pub achievements: bool,
    pub progress_digest: bool,
    pub assessment_results: bool,
    /// An email when the account is signed in to from a device not seen before.
    pub new_sign_in: bool,
}

impl Default for EmailPreferences {
    fn default() -> Self {
        EmailPreferences { achievements: true, progress_digest: true, assessment_results: true, new_sign_in: true }
    }
}

impl EmailPreferences {
    pub fn allows(&self, c: Category) -> bool {
        match c {
            Category::Security => true,
            Category::NewSignIn => self.new_sign_in,
            Category::Achievements => self.achievements,
            Category::ProgressDigest => self.progress_digest,
            Category::AssessmentResults => self.assessment_results,
        }
    }
}

/// A partial update: fields left out keep their value.
#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailPreferencesPatch {
    pub achievements: Option<bool>,
    pub progress_digest: Option<bool>,
    pub assessment_results: Option<bool>,
    pub new_sign_in: Option<bool>,
}

/// The admin's view of an outbox row (API.md's `/admin/emails`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmailView {
    pub id: Uuid,
    pub to: String,
    pub template: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
}

impl From<email_outbox::Model> for EmailView {
    fn from(m: email_outbox::Model) -> Self {
        EmailView {
            id: m.id,
            to: m.to_address,
            template: m.template,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error,
            created_at: m.created_at,
            sent_at: m.sent_at,
            next_attempt_at: m.next_attempt_at,
        }
    }
}

/// Addresses are compared trimmed and lower-cased, as user emails are stored.
pub fn normalize_address(addr: &str) -> Result<String, EmailError> {
    // CR/LF (any control character) would end a header line: refuse rather than repair, even
    // where trimming would remove it.
    if addr.chars().any(char::is_control) {
        return Err(EmailError::InvalidAddress);
    }
    let a = addr.trim().to_lowercase();
    if a.is_empty() || a.len() > 254 || a.chars().any(char::is_whitespace) {
        return Err(EmailError::InvalidAddress);
    }
    a.parse::<lettre::Address>().map_err(|_| EmailError::InvalidAddress)?;
    Ok(a)
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

    /// Renders a template with the common variables filled in.
    pub fn render(
        &self,
        template: Template,
        vars: &Value,
        display_name: Option<&str>,
        unsubscribe_url: Option<&str>,
    ) -> Result<Rendered, EmailError> {
        let mut v: Map<String, Value> = vars.as_object().cloned().unwrap_or_default();
        v.entry("product").or_insert_with(|| json!(self.settings.product));
        v.entry("public_url").or_insert_with(|| json!(self.settings.public_url));
        v.insert(
            "display_name".into(),
            json!(display_name.map(|n| render::one_line(n, 100)).unwrap_or("there".into())),
        );
        v.insert("unsubscribe_url".into(), json!(unsubscribe_url.unwrap_or_default()));
        let (text_src, html_src) = template.sources();
        let (subject_line, body) = text_src.split_once('\n').unwrap_or((text_src, ""));
        let subject_src = subject_line.strip_prefix("Subject:").unwrap_or(subject_line).trim();
        Ok(Rendered {
            subject: render::one_line(&render::render(subject_src, &v, false)?, 250),
            text: render::render(body, &v, false)?,
            html: render::render(html_src, &v, true)?,
            list_unsubscribe: unsubscribe_url.map(str::to_string),
        })
    }

    /// Writes one email to the outbox inside the caller's transaction. Returns its id, or
    /// `None` when `dedup_key` was already used. An address on the suppression list is stored
    /// as `suppressed` and never sent. The workers are woken when the transaction commits.
    pub async fn enqueue(&self, txn: &WriteTxn, out: Outgoing<'_>) -> Result<Option<Uuid>, EmailError> {
        let db = &**txn;
        let to = normalize_address(out.to)?;
        let to_name = out.to_name.map(|n| render::one_line(n, 100)).filter(|n| !n.is_empty());
        let category = out.template.category();
        let unsubscribe = match (category.optional(), out.user_id) {
            (true, Some(uid)) => Some(self.unsubscribe_url(uid, category)),
            _ => None,
        };
        let rendered = self.render(out.template, &out.vars, to_name.as_deref(), unsubscribe.as_deref())?;
        let suppressed = email_suppression::Entity::find_by_id(to.clone()).one(db).await?.is_some();
        let now = Utc::now();
        let id = Uuid::now_v7();
        let row = email_outbox::ActiveModel {
            id: Set(id),
            to_address: Set(to),
            to_name: Set(to_name),
            user_id: Set(out.user_id),
            template: Set(out.template.name().to_string()),
            subject: Set(rendered.subject.clone()),
            payload: Set(serde_json::to_value(&rendered).expect("serialisable")),
            status: Set(if suppressed { status::SUPPRESSED } else { status::QUEUED }.to_string()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(suppressed.then(|| "address is on the suppression list".to_string())),
            locked_until: Set(None),
            lease_id: Set(None),
            dedup_key: Set(out.dedup_key),
            created_at: Set(now),
            sent_at: Set(None),
        };
        // ON CONFLICT DO NOTHING rather than catching the error: on PostgreSQL a failed
        // statement would abort the caller's whole transaction.
        let inserted = email_outbox::Entity::insert(row)
            .on_conflict(OnConflict::column(email_outbox::Column::DedupKey).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        if inserted == 1 {
            self.wake.after_commit(txn);
        }
        Ok((inserted == 1).then_some(id))
    }

    /// Enqueues a template for a user, respecting their preferences (security mail always
    /// goes). The hook for achievements, assessments and digests: call it in the transaction
    /// that records the event. `Ok(None)` means nothing was enqueued (opted out, inactive).
    pub async fn enqueue_for_user(
        &self,
        txn: &WriteTxn,
        user_id: Uuid,
        template: Template,
        vars: Value,
    ) -> Result<Option<Uuid>, EmailError> {
        self.enqueue_for_user_once(txn, user_id, template, vars, None).await
    }

    /// As [`Self::enqueue_for_user`], at most once per `dedup_key`.
    pub async fn enqueue_for_user_once(
        &self,
        txn: &WriteTxn,
        user_id: Uuid,
        template: Template,
        vars: Value,
        dedup_key: Option<String>,
    ) -> Result<Option<Uuid>, EmailError> {
        let db = &**txn;
        let Some(u) = user::Entity::find_by_id(user_id).one(db).await? else {
            return Err(EmailError::NotFound);
        };
        if !u.is_active {
            return Ok(None);
        }
        if !self.preferences_in(db, user_id).await?.allows(template.category()) {
            return Ok(None);
        }
        self.enqueue(
            txn,
            Outgoing {
                to: &u.email,
                to_name: Some(&u.display_name),
                user_id: Some(user_id),
                template,
                vars,
                dedup_key,
            },
        )
        .await
    }

    // ----- preferences and unsubscribe -------------------------------------------------------

    async fn preferences_in<C: ConnectionTrait>(&self, db: &C, user_id: Uuid) -> Result<EmailPreferences, DbErr> {
        Ok(notification_preference::Entity::find_by_id(user_id)
            .one(db)
            .await?
            .map(|p| EmailPreferences {
                achievements: p.achievements,
                progress_digest: p.progress_digest,
                assessment_results: p.assessment_results,
                new_sign_in: p.new_sign_in,
            })
            .unwrap_or_default())
    }

    pub async fn preferences(&self, p: &Principal) -> Result<EmailPreferences, EmailError> {
        Ok(self.preferences_in(&self.db.conn, p.user_id).await?)
    }

    async fn store_preferences<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: Uuid,
        prefs: EmailPreferences,
    ) -> Result<(), DbErr> {
        let row = notification_preference::ActiveModel {
            user_id: Set(user_id),
            achievements: Set(prefs.achievements),
            progress_digest: Set(prefs.progress_digest),
            assessment_results: Set(prefs.assessment_results),
            new_sign_in: Set(prefs.new_sign_in),
            updated_at: Set(Utc::now()),
        };
        use notification_preference::Column as C;
        notification_preference::Entity::insert(row)
            .on_conflict(
                OnConflict::column(C::UserId)
                    .update_columns([
                        C::Achievements,
                        C::ProgressDigest,
                        C::AssessmentResults,
                        C::NewSignIn,
                        C::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        Ok(())
    }

    pub async fn update_preferences(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        patch: EmailPreferencesPatch,
    ) -> Result<EmailPreferences, EmailError> {
        let txn = self.db.begin_write().await?;
        let mut prefs = self.preferences_in(&*txn, p.user_id).await?;
        prefs.achievements = patch.achievements.unwrap_or(prefs.achievements);
        prefs.progress_digest = patch.progress_digest.unwrap_or(prefs.progress_digest);
        prefs.assessment_results = patch.assessment_results.unwrap_or(prefs.assessment_results);
        prefs.new_sign_in = patch.new_sign_in.unwrap_or(prefs.new_sign_in);
        self.store_preferences(&*txn, p.user_id, prefs).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("email.preferences_update", Some(p.user_id))
                .target("user", p.user_id)
                .details(serde_json::to_value(prefs).expect("serialisable")),
        )
        .await?;
        txn.commit().await?;
        Ok(prefs)
    }

    fn unsubscribe_sig(&self, user_id: Uuid, category: Category) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.settings.unsubscribe_key).expect("any key length");
        mac.update(user_id.as_bytes());
        mac.update(b":");
        mac.update(category.as_str().as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// `{user id}.{category}.{HMAC}`: no expiry, since an unsubscribe link must keep working
    /// as long as the mail sits in someone's inbox; it can only turn one category off.
    pub fn unsubscribe_token(&self, user_id: Uuid, category: Category) -> String {
        format!(
            "{}.{}.{}",
            user_id.simple(),
            category.as_str(),
            URL_SAFE_NO_PAD.encode(self.unsubscribe_sig(user_id, category))
        )
    }

    pub fn unsubscribe_url(&self, user_id: Uuid, category: Category) -> String {
        self.link(&format!("/api/v1/email/unsubscribe?token={}", self.unsubscribe_token(user_id, category)))
    }

    pub fn verify_unsubscribe_token(&self, token: &str) -> Result<(Uuid, Category), EmailError> {
        let mut parts = token.splitn(3, '.');
        let (Some(uid), Some(cat), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::InvalidToken);
        };
        let uid = Uuid::parse_str(uid).map_err(|_| EmailError::InvalidToken)?;
        let cat = Category::parse(cat).filter(|c| c.optional()).ok_or(EmailError::InvalidToken)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| EmailError::InvalidToken)?;
        use subtle::ConstantTimeEq;
        if sig.len() != 16 || !bool::from(sig.ct_eq(&self.unsubscribe_sig(uid, cat))) {
            return Err(EmailError::InvalidToken);
        }
        Ok((uid, cat))
    }

    /// RFC 8058 one-click unsubscribe: turns one category off. Idempotent.
    pub async fn unsubscribe(&self, ctx: &RequestContext, token: &str) -> Result<Category, EmailError> {
        let (user_id, category) = self.verify_unsubscribe_token(token)?;
        let txn = self.db.begin_write().await?;
        if user::Entity::find_by_id(user_id).one(&*txn).await?.is_none() {
            return Err(EmailError::InvalidToken);
        }
        let mut prefs = self.preferences_in(&*txn, user_id).await?;
        match category {
            Category::Security => return Err(EmailError::InvalidToken),
            Category::NewSignIn => prefs.new_sign_in = false,
            Category::Achievements => prefs.achievements = false,
            Category::ProgressDigest => prefs.progress_digest = false,
            Category::AssessmentResults => prefs.assessment_results = false,
        }
        self.store_preferences(&*txn, user_id, prefs).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("email.unsubscribe", None)
                .target("user", user_id)
                .details(json!({"category": category.as_str(), "via": "one_click"})),
        )
        .await?;
        txn.commit().await?;
        Ok(category)
    }

    /// The SES webhook's shared secret, compared in constant time. No secret configured means
    /// the webhook is off, so nobody can suppress addresses through it.
    pub fn check_webhook_secret(&self, presented: Option<&str>) -> Result<(), EmailError> {
        use subtle::ConstantTimeEq;
        let Some(expected) = &self.settings.ses_webhook_secret else {
            return Err(EmailError::NotFound);
        };
        match presented {
            Some(p) if bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            _ => Err(EmailError::Unauthorized),
        }
    }

    // ----- suppression ------------------------------------------------------------------------

    /// Stops all mail to an address: future enqueues become `suppressed`, and so does mail
    /// still waiting in the outbox.
    pub async fn suppress(&self, ctx: &RequestContext, address: &str, reason: &str) -> Result<(), EmailError> {
        let address = normalize_address(address)?;
        let txn = self.db.begin_write().await?;
        email_suppression::Entity::insert(email_suppression::ActiveModel {
            address: Set(address.clone()),
            reason: Set(reason.chars().take(32).collect()),
            created_at: Set(Utc::now()),
        })
        .on_conflict(OnConflict::column(email_suppression::Column::Address).do_nothing().to_owned())
        .exec_without_returning(&*txn)
        .await?;
        let held = email_outbox::Entity::update_many()
            .col_expr(email_outbox::Column::Status, Expr::value(status::SUPPRESSED))
            .col_expr(email_outbox::Column::LastError, Expr::value(Some(format!("suppressed: {reason}"))))
            .filter(email_outbox::Column::ToAddress.eq(&address))
            .filter(email_outbox::Column::Status.eq(status::QUEUED))
            .exec(&*txn)
            .await?
            .rows_affected;
        audit::record(
            &*txn,
            ctx,
            Event::new("email.suppress", None)
                .target("email_address", &address)
                .details(json!({"reason": reason, "queued_mail_held": held})),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    // ----- admin ------------------------------------------------------------------------------

    pub async fn list(&self, status_filter: Option<&str>, page: PageRequest) -> Result<Page<EmailView>, EmailError> {
        let mut q = email_outbox::Entity::find().order_by_desc(email_outbox::Column::Id).limit(page.limit + 1);
        if let Some(s) = status_filter {
            if !status::ALL.contains(&s) {
                return Err(EmailError::Validation("status", format!("must be one of {}", status::ALL.join(", "))));
            }
            q = q.filter(email_outbox::Column::Status.eq(s));
        }
        if let Some(after) = page.after {
            q = q.filter(email_outbox::Column::Id.lt(after));
        }
        let rows = q.all(&self.db.conn).await?;
        Ok(Page::from_rows(rows.into_iter().map(EmailView::from).collect(), page, |v| v.id))
    }

    /// Puts a failed email back in the queue with a fresh attempt budget.
    pub async fn retry(&self, ctx: &RequestContext, admin: &Principal, id: Uuid) -> Result<EmailView, EmailError> {
        let txn = self.db.begin_write().await?;
        let row = email_outbox::Entity::find_by_id(id).one(&*txn).await?.ok_or(EmailError::NotFound)?;
        if row.status != status::FAILED {
            return Err(EmailError::Conflict("only a failed email can be retried"));
        }
        if email_suppression::Entity::find_by_id(row.to_address.clone()).one(&*txn).await?.is_some() {
            return Err(EmailError::Conflict("the address is on the suppression list"));
        }
        let mut am: email_outbox::ActiveModel = row.into();
        am.status = Set(status::QUEUED.into());
        am.attempts = Set(0);
        am.next_attempt_at = Set(Utc::now());
        am.locked_until = Set(None);
        am.lease_id = Set(None);
        let row = am.update(&*txn).await?;
        audit::record(&*txn, ctx, Event::new("email.retry", Some(admin.user_id)).target("email", id)).await?;
        self.wake.after_commit(&txn);
        txn.commit().await?;
        Ok(row.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_line_breaks_are_refused() {
        assert_eq!(normalize_address(" A@Example.com ").unwrap(), "a@example.com");
        for bad in ["a@example.com\r\nBcc: x@example.com", "a@example.com\n", "a b@example.com", "", "nope"] {
            assert!(normalize_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_template_has_a_subject_and_parts() {
        for t in Template::ALL {
            let (text, html) = t.sources();
            assert!(text.starts_with("Subject: "), "{}", t.name());
            assert!(html.contains("<html"), "{}", t.name());
            // Optional mail must show its unsubscribe link in the body too.
            assert_eq!(t.category().optional(), text.contains("{{unsubscribe_url}}"), "{}", t.name());
            assert_eq!(t.category().optional(), html.contains("{{unsubscribe_url}}"), "{}", t.name());
        }
    }
}
