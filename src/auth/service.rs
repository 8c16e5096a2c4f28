//! Account and session logic. Knows the database and the audit trail, nothing of HTTP.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;
use validator::ValidateEmail;

use super::{
    password::{self, HashError, Hasher},
    tokens::{self, TokenKeys},
};
use crate::{
    email::{EmailError, EmailService, Outgoing, Template},
    entities::{email_token, refresh_token, session, user},
    infra::db::{Db, WriteTxn, is_unique_violation},
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext, Role},
    kernel::pagination::{Page, PageRequest},
};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("validation failed")]
    Validation(Vec<(&'static str, String)>),
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("too many failed sign-in attempts for this account")]
    AccountLocked { retry_after_secs: u64 },
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("not authenticated")]
    Unauthenticated,
    #[error("not found")]
    NotFound,
    #[error("password hashing is saturated")]
    Busy,
    #[error("the token is invalid, expired or already used")]
    InvalidEmailToken,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbErr> for AuthError {
    fn from(e: DbErr) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<EmailError> for AuthError {
    fn from(e: EmailError) -> Self {
        match e {
            EmailError::InvalidAddress => invalid("email", "must be a valid email address"),
            other => AuthError::Internal(other.to_string()),
        }
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AuthError::Busy,
            HashError::Internal(m) => AuthError::Internal(m),
        }
    }
}

fn invalid(field: &'static str, msg: impl Into<String>) -> AuthError {
    AuthError::Validation(vec![(field, msg.into())])
}

/// The public view of a user (API.md's `user`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&user::Model> for UserView {
    fn from(u: &user::Model) -> Self {
        UserView {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            email_verified: u.email_verified,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub user: UserView,
    pub access_token: String,
    pub refresh_token: String,
    /// Always "Bearer".
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// True for the session the request was made with.
    pub current: bool,
}

pub struct AuthService {
    pub db: Db,
    pub hasher: Hasher,
    pub keys: TokenKeys,
    pub refresh_ttl: Duration,
    pub max_failed_logins_per_hour: u32,
    pub email: EmailService,
    /// Ending sessions also ends the user's live connections (WebSocket/SSE) on every
    /// instance; those still entitled reconnect with a fresh ticket.
    pub events: crate::infra::realtime::EventBus,
}

/// Verification links live long enough for a weekend; reset links briefly, since whoever holds
/// one can take over the account.
const VERIFY_TTL: chrono::Duration = chrono::Duration::hours(48);
const RESET_TTL: chrono::Duration = chrono::Duration::minutes(30);
const PURPOSE_VERIFY: &str = "verify";
const PURPOSE_RESET: &str = "reset";

/// Emails are compared case-insensitively; we store them trimmed and lower-cased.
pub fn normalize_email(email: &str) -> Result<String, AuthError> {
    let e = email.trim().to_lowercase();
    if e.len() > 254 || !e.validate_email() {
        return Err(invalid("email", "must be a valid email address"));
    }
    // CR/LF can never be in a valid address, but this value later reaches mail headers.
    if e.chars().any(char::is_control) {
        return Err(invalid("email", "must be a valid email address"));
    }
    Ok(e)
}

pub fn validate_display_name(name: &str) -> Result<String, AuthError> {
    let n = name.trim();
    let chars = n.chars().count();
    if chars == 0 || chars > 100 {
        return Err(invalid("display_name", "must be 1 to 100 characters"));
    }
    if n.chars().any(char::is_control) {
        return Err(invalid("display_name", "must not contain control characters"));
    }
    Ok(n.to_string())
}

fn check_password(field: &'static str, password: &str, email: &str) -> Result<(), AuthError> {
    password::check_strength(password, email).map_err(|m| invalid(field, m))
}

const FAILED_LOGIN_WINDOW: chrono::Duration = chrono::Duration::hours(1);

impl AuthService {
    /// Creates a user. Shared by registration and the `create-user` command.
    async fn insert_user<C: ConnectionTrait>(
        &self,
        db: &C,
        email: &str,
        display_name: &str,
        password_hash: String,
        role: Role,
    ) -> Result<user::Model, AuthError> {
        let now = Utc::now();
        let model = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(email.to_string()),
            display_name: Set(display_name.to_string()),
            password_hash: Set(password_hash),
            role: Set(role),
            is_active: Set(true),
            email_verified: Set(false),
            failed_login_count: Set(0),
            failed_login_window_start: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        model.insert(db).await.map_err(|e| if is_unique_violation(&e) { AuthError::EmailTaken } else { e.into() })
    }

    async fn start_session<C: ConnectionTrait>(
        &self,
        db: &C,
        ctx: &RequestContext,
        user: &user::Model,
    ) -> Result<TokenPair, AuthError> {
        let now = Utc::now();
        let session_id = Uuid::now_v7();
        session::ActiveModel {
            id: Set(session_id),
            user_id: Set(user.id),
            created_at: Set(now),
            last_used_at: Set(now),
            expires_at: Set(now + self.refresh_ttl),
            revoked_at: Set(None),
            revoked_reason: Set(None),
            user_agent: Set(ctx.user_agent.clone()),
            ip: Set(ctx.ip.clone()),
        }
        .insert(db)
        .await?;
        let refresh = self.issue_refresh(db, session_id).await?;
        let role: Role = user.role;
        Ok(TokenPair {
            user: UserView::from(user),
            access_token: self.keys.issue(user.id, session_id, role),
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.keys.access_ttl.as_secs(),
        })
    }

    async fn issue_refresh<C: ConnectionTrait>(&self, db: &C, session_id: Uuid) -> Result<String, AuthError> {
        let token = tokens::new_refresh_token();
        refresh_token::ActiveModel {
            token_hash: Set(tokens::hash_refresh_token(&token)),
            session_id: Set(session_id),
            created_at: Set(Utc::now()),
            spent_at: Set(None),
        }
        .insert(db)
        .await?;
        Ok(token)
    }

    pub async fn register(
        &self,
        ctx: &RequestContext,
        email: &str,
        password: &str,
        display_name: &str,
    ) -> Result<TokenPair, AuthError> {
        let mut errors = Vec::new();
        let email = normalize_email(email).map_err(|e| errors.push(e)).ok();
        let display_name = validate_display_name(display_name).map_err(|e| errors.push(e)).ok();
        if let Err(e) = check_password("password", password, email.as_deref().unwrap_or_default()) {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(AuthError::Validation(
                errors
                    .into_iter()
                    .flat_map(|e| match e {
                        AuthError::Validation(v) => v,
                        _ => vec![],
                    })
                    .collect(),
            ));
        }
        let (email, display_name) = (email.unwrap(), display_name.unwrap());
        let hash = self.hasher.hash(password).await?;
        let txn = self.db.begin_write().await?;
        let user = self.insert_user(&*txn, &email, &display_name, hash, Role::Student).await?;
        let pair = self.start_session(&*txn, ctx, &user).await?;
        // Same transaction as the user row: the account and its welcome mail exist together.
        self.enqueue_verification(&txn, &user).await?;
        audit::record(&*txn, ctx, Event::new("auth.register", Some(user.id)).target("user", user.id)).await?;
        txn.commit().await?;
        Ok(pair)
    }

    /// For operators (`cifix create-user`): any role, same validation as registration.
    pub async fn create_user(&self, email: &str, password: &str, role: Role) -> Result<UserView, AuthError> {
        let email = normalize_email(email)?;
        check_password("password", password, &email)?;
        let display_name = email.split('@').next().unwrap_or("user").chars().take(100).collect::<String>();
        let hash = self.hasher.hash(password).await?;
        let txn = self.db.begin_write().await?;
        let user = self.insert_user(&*txn, &email, &display_name, hash, role).await?;
        let ctx = RequestContext { user_agent: Some("cifix create-user".into()), ..Default::default() };
        audit::record(
            &*txn,
            &ctx,
            Event::new("user.create", None)
                .target("user", user.id)
                .details(json!({"role": role.as_str(), "via": "cli"})),
        )
        .await?;
        txn.commit().await?;
        Ok(UserView::from(&user))
    }

    pub async fn login(&self, ctx: &RequestContext, email: &str, password: &str) -> Result<TokenPair, AuthError> {
        // A malformed email gets the same answer as a wrong password: no hint either way.
        let email = normalize_email(email).unwrap_or_default();
        let found = if email.is_empty() {
            None
        } else {
            user::Entity::find().filter(user::Column::Email.eq(&email)).one(&self.db.conn).await?
        };

        if let Some(u) = &found
            && let Some(retry) = self.lockout_remaining(u)
        {
            let txn = self.db.begin_write().await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("auth.login_failed", None).target("user", u.id).details(json!({"reason": "locked"})),
            )
            .await?;
            txn.commit().await?;
            return Err(AuthError::AccountLocked { retry_after_secs: retry });
        }

        let ok = self.hasher.verify(password, found.as_ref().map(|u| u.password_hash.as_str())).await?;
        let txn = self.db.begin_write().await?;
        match found {
            Some(u) if ok && u.is_active => {
                if u.failed_login_count != 0 {
                    user::Entity::update_many()
                        .col_expr(user::Column::FailedLoginCount, Expr::value(0))
                        .col_expr(user::Column::FailedLoginWindowStart, Expr::value(Option::<DateTime<Utc>>::None))
                        .filter(user::Column::Id.eq(u.id))
                        .exec(&*txn)
                        .await?;
                }
                let new_device = self.is_new_device(&*txn, ctx, u.id).await?;
                let pair = self.start_session(&*txn, ctx, &u).await?;
                if new_device {
                    let vars = json!({
                        "at": Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
                        "ip": ctx.ip.clone().unwrap_or_else(|| "unknown".into()),
                        "user_agent": ctx.user_agent.as_deref().map(|a| a.chars().take(200).collect::<String>()).unwrap_or_else(|| "unknown".into()),
                    });
                    self.email.enqueue_for_user(&txn, u.id, Template::NewSignIn, vars).await?;
                }
                audit::record(&*txn, ctx, Event::new("auth.login", Some(u.id)).target("user", u.id)).await?;
                txn.commit().await?;
                Ok(pair)
            }
            Some(u) => {
                let reason = if ok { "inactive" } else { "bad_password" };
                if !ok {
                    self.count_failure(&*txn, u.id).await?;
                }
                audit::record(
                    &*txn,
                    ctx,
                    Event::new("auth.login_failed", None).target("user", u.id).details(json!({"reason": reason})),
                )
                .await?;
                txn.commit().await?;
                Err(AuthError::InvalidCredentials)
            }
            None => {
                // The address itself is not recorded: it may be a minor's, and it is not an account.
                audit::record(
                    &*txn,
                    ctx,
                    Event::new("auth.login_failed", None).details(json!({"reason": "unknown_email"})),
                )
                .await?;
                txn.commit().await?;
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// A device is "new" when the user has signed in before but never with this user agent.
    /// The first session (at registration) is not news.
    async fn is_new_device<C: ConnectionTrait>(
        &self,
        db: &C,
        ctx: &RequestContext,
        user_id: Uuid,
    ) -> Result<bool, AuthError> {
        let recent = session::Entity::find()
            .filter(session::Column::UserId.eq(user_id))
            .order_by_desc(session::Column::Id)
            .limit(100)
            .all(db)
            .await?;
        Ok(!recent.is_empty() && !recent.iter().any(|s| s.user_agent == ctx.user_agent))
    }

    // ----- email verification and password reset ---------------------------------------------

    /// A new single-use token; only its hash is stored.
    async fn issue_email_token<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: Uuid,
        purpose: &str,
        ttl: chrono::Duration,
    ) -> Result<String, AuthError> {
        let token = tokens::new_refresh_token();
        let now = Utc::now();
        email_token::ActiveModel {
            token_hash: Set(tokens::hash_refresh_token(&token)),
            user_id: Set(user_id),
            purpose: Set(purpose.to_string()),
            expires_at: Set(now + ttl),
            used_at: Set(None),
            created_at: Set(now),
        }
        .insert(db)
        .await?;
        Ok(token)
    }

    async fn enqueue_verification(&self, txn: &WriteTxn, u: &user::Model) -> Result<(), AuthError> {
        let token = self.issue_email_token(&**txn, u.id, PURPOSE_VERIFY, VERIFY_TTL).await?;
        let vars = json!({
            "verify_url": self.email.link(&format!("/verify-email?token={token}")),
            "expires_hours": VERIFY_TTL.num_hours(),
        });
        self.email
            .enqueue(
                txn,
                Outgoing {
                    to: &u.email,
                    to_name: Some(&u.display_name),
                    user_id: Some(u.id),
                    template: Template::VerifyEmail,
                    vars,
                    dedup_key: None,
                },
            )
            .await?;
        Ok(())
    }

    /// Spends a token of `purpose` (compare-and-set, so two concurrent uses cannot both win)
    /// and returns its user. Unknown, expired and spent tokens all look the same.
    async fn spend_email_token<C: ConnectionTrait>(
        &self,
        db: &C,
        token: &str,
        purpose: &str,
    ) -> Result<Uuid, AuthError> {
        if token.is_empty() || token.len() > 200 {
            return Err(AuthError::InvalidEmailToken);
        }
        let hash = tokens::hash_refresh_token(token);
        let now = Utc::now();
        let spent = email_token::Entity::update_many()
            .col_expr(email_token::Column::UsedAt, Expr::value(Some(now)))
            .filter(email_token::Column::TokenHash.eq(&hash))
            .filter(email_token::Column::Purpose.eq(purpose))
            .filter(email_token::Column::UsedAt.is_null())
            .filter(email_token::Column::ExpiresAt.gt(now))
            .exec(db)
            .await?
            .rows_affected;
        if spent != 1 {
            return Err(AuthError::InvalidEmailToken);
        }
        let row = email_token::Entity::find_by_id(hash).one(db).await?.ok_or(AuthError::InvalidEmailToken)?;
        Ok(row.user_id)
    }

    pub async fn verify_email(&self, ctx: &RequestContext, token: &str) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        let user_id = self.spend_email_token(&*txn, token, PURPOSE_VERIFY).await?;
        user::Entity::update_many()
            .col_expr(user::Column::EmailVerified, Expr::value(true))
            .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(user::Column::Id.eq(user_id))
            .exec(&*txn)
            .await?;
        audit::record(&*txn, ctx, Event::new("auth.email_verified", Some(user_id)).target("user", user_id)).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Sends a fresh verification link; nothing to do (still 202) when already verified.
    pub async fn resend_verification(&self, ctx: &RequestContext, p: &Principal) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        let u = user::Entity::find_by_id(p.user_id).one(&*txn).await?.ok_or(AuthError::NotFound)?;
        if u.email_verified {
            return Ok(());
        }
        self.enqueue_verification(&txn, &u).await?;
        audit::record(&*txn, ctx, Event::new("auth.verification_resent", Some(u.id)).target("user", u.id)).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Always succeeds for a well-formed address. Both branches read the user, render the
    /// message, check the suppression list and write an audit row in a write transaction, so
    /// neither the answer nor its timing tells whether the account exists.
    pub async fn forgot_password(&self, ctx: &RequestContext, email: &str) -> Result<(), AuthError> {
        let email = normalize_email(email)?;
        let txn = self.db.begin_write().await?;
        let found = user::Entity::find().filter(user::Column::Email.eq(&email)).one(&*txn).await?;
        match found {
            Some(u) if u.is_active => {
                let token = self.issue_email_token(&*txn, u.id, PURPOSE_RESET, RESET_TTL).await?;
                let vars = json!({
                    "reset_url": self.email.link(&format!("/reset-password?token={token}")),
                    "expires_minutes": RESET_TTL.num_minutes(),
                });
                self.email
                    .enqueue(
                        &txn,
                        Outgoing {
                            to: &u.email,
                            to_name: Some(&u.display_name),
                            user_id: Some(u.id),
                            template: Template::PasswordReset,
                            vars,
                            dedup_key: None,
                        },
                    )
                    .await?;
                audit::record(&*txn, ctx, Event::new("auth.password_reset_requested", None).target("user", u.id))
                    .await?;
            }
            _ => {
                // The same work minus the writes that would create a token and a message.
                let token = tokens::new_refresh_token();
                let _ = self.email.render(
                    Template::PasswordReset,
                    &json!({"reset_url": token, "expires_minutes": RESET_TTL.num_minutes()}),
                    Some(&email),
                    None,
                )?;
                let _ = crate::entities::email_suppression::Entity::find_by_id(email.clone()).one(&*txn).await?;
                // The address itself is not recorded: it is not an account.
                audit::record(
                    &*txn,
                    ctx,
                    Event::new("auth.password_reset_requested", None).details(json!({"reason": "unknown_or_inactive"})),
                )
                .await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Sets a new password from a reset token: the token is spent, every other reset token of
    /// the user too, every session ends, and the mailbox is proven, so the email counts as
    /// verified.
    pub async fn reset_password(&self, ctx: &RequestContext, token: &str, new_password: &str) -> Result<(), AuthError> {
        if token.is_empty() || token.len() > 200 {
            return Err(AuthError::InvalidEmailToken);
        }
        // Read first (without spending) so a weak password is a 422 that leaves the link usable.
        let hash = tokens::hash_refresh_token(token);
        let row = email_token::Entity::find_by_id(hash).one(&self.db.conn).await?;
        let row = row
            .filter(|r| r.purpose == PURPOSE_RESET && r.used_at.is_none() && r.expires_at > Utc::now())
            .ok_or(AuthError::InvalidEmailToken)?;
        let u = user::Entity::find_by_id(row.user_id).one(&self.db.conn).await?.ok_or(AuthError::InvalidEmailToken)?;
        if !u.is_active {
            return Err(AuthError::InvalidEmailToken);
        }
        check_password("new_password", new_password, &u.email)?;
        let pw_hash = self.hasher.hash(new_password).await?;

        let txn = self.db.begin_write().await?;
        let user_id = self.spend_email_token(&*txn, token, PURPOSE_RESET).await?;
        let now = Utc::now();
        email_token::Entity::update_many()
            .col_expr(email_token::Column::UsedAt, Expr::value(Some(now)))
            .filter(email_token::Column::UserId.eq(user_id))
            .filter(email_token::Column::Purpose.eq(PURPOSE_RESET))
            .filter(email_token::Column::UsedAt.is_null())
            .exec(&*txn)
            .await?;
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(pw_hash))
            .col_expr(user::Column::EmailVerified, Expr::value(true))
            .col_expr(user::Column::FailedLoginCount, Expr::value(0))
            .col_expr(user::Column::FailedLoginWindowStart, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(user_id))
            .exec(&*txn)
            .await?;
        let ended = self.revoke_where(&*txn, session::Column::UserId.eq(user_id), "password_reset").await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("auth.password_reset", Some(user_id))
                .target("user", user_id)
                .details(json!({"sessions_ended": ended})),
        )
        .await?;
        self.events.disconnect_after_commit(&txn, user_id);
        txn.commit().await?;
        Ok(())
    }

    fn lockout_remaining(&self, u: &user::Model) -> Option<u64> {
        let start = u.failed_login_window_start?;
        let ends = start + FAILED_LOGIN_WINDOW;
        let now = Utc::now();
        (u.failed_login_count >= self.max_failed_logins_per_hour as i32 && ends > now)
            .then(|| std::cmp::max((ends - now).num_seconds(), 1) as u64)
    }

    /// Counts a failed login in the database (not Redis) so that the limit survives a cache
    /// outage and is shared by every instance.
    async fn count_failure<C: ConnectionTrait>(&self, db: &C, user_id: Uuid) -> Result<(), AuthError> {
        let mut q = user::Entity::find_by_id(user_id);
        if db.get_database_backend() == DbBackend::Postgres {
            // Serialises concurrent failures for one account; SQLite's writer lock already does.
            q = q.lock_exclusive();
        }
        let Some(u) = q.one(db).await? else {
            return Ok(());
        };
        let now = Utc::now();
        let in_window = u.failed_login_window_start.is_some_and(|s| s + FAILED_LOGIN_WINDOW > now);
        let mut am = u.clone().into_active_model();
        if in_window {
            am.failed_login_count = Set(u.failed_login_count.saturating_add(1));
        } else {
            am.failed_login_count = Set(1);
            am.failed_login_window_start = Set(Some(now));
        }
        am.update(db).await?;
        Ok(())
    }

    pub async fn refresh(&self, ctx: &RequestContext, token: &str) -> Result<TokenPair, AuthError> {
        let hash = tokens::hash_refresh_token(token);
        let txn = self.db.begin_write().await?;
        let Some(row) = refresh_token::Entity::find_by_id(hash.clone()).one(&*txn).await? else {
            return Err(AuthError::InvalidRefreshToken);
        };
        let session =
            session::Entity::find_by_id(row.session_id).one(&*txn).await?.ok_or(AuthError::InvalidRefreshToken)?;
        let now = Utc::now();
        if session.revoked_at.is_some() || session.expires_at <= now {
            return Err(AuthError::InvalidRefreshToken);
        }

        // Compare-and-set: of two concurrent uses of one token, exactly one spends it.
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::SpentAt, Expr::value(Some(now)))
            .filter(refresh_token::Column::TokenHash.eq(&hash))
            .filter(refresh_token::Column::SpentAt.is_null())
            .exec(&*txn)
            .await?
            .rows_affected
            == 1;
        if !spent {
            // A spent token came back: it was stolen or replayed. End the whole session.
            self.revoke_where(&*txn, session::Column::Id.eq(session.id), "refresh_reuse").await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("auth.refresh_reuse_detected", None)
                    .target("session", session.id)
                    .details(json!({"user_id": session.user_id})),
            )
            .await?;
            self.events.disconnect_after_commit(&txn, session.user_id);
            txn.commit().await?;
            return Err(AuthError::InvalidRefreshToken);
        }

        let user = user::Entity::find_by_id(session.user_id).one(&*txn).await?.ok_or(AuthError::InvalidRefreshToken)?;
        if !user.is_active {
            return Err(AuthError::InvalidRefreshToken);
        }
        let refresh = self.issue_refresh(&*txn, session.id).await?;
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .col_expr(session::Column::Ip, Expr::value(ctx.ip.clone()))
            .col_expr(session::Column::UserAgent, Expr::value(ctx.user_agent.clone()))
            .filter(session::Column::Id.eq(session.id))
            .exec(&*txn)
            .await?;
        audit::record(&*txn, ctx, Event::new("auth.refresh", Some(user.id)).target("session", session.id)).await?;
        txn.commit().await?;
        let role: Role = user.role;
        Ok(TokenPair {
            user: UserView::from(&user),
            access_token: self.keys.issue(user.id, session.id, role),
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.keys.access_ttl.as_secs(),
        })
    }

    /// Ends the session the refresh token belongs to. Unknown tokens are accepted silently:
    /// logging out is idempotent and must not become a token-validity oracle.
    pub async fn logout(&self, ctx: &RequestContext, token: &str) -> Result<(), AuthError> {
        let hash = tokens::hash_refresh_token(token);
        let txn = self.db.begin_write().await?;
        let mut ended = None;
        if let Some(row) = refresh_token::Entity::find_by_id(hash).one(&*txn).await?
            && let Some(s) = session::Entity::find_by_id(row.session_id).one(&*txn).await?
            && s.revoked_at.is_none()
        {
            self.revoke_where(&*txn, session::Column::Id.eq(s.id), "logout").await?;
            audit::record(&*txn, ctx, Event::new("auth.logout", Some(s.user_id)).target("session", s.id)).await?;
            ended = Some(s.user_id);
        }
        if let Some(user_id) = ended {
            self.events.disconnect_after_commit(&txn, user_id);
        }
        txn.commit().await?;
        Ok(())
    }

    pub async fn logout_all(&self, ctx: &RequestContext, p: &Principal) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        let n = self.revoke_where(&*txn, session::Column::UserId.eq(p.user_id), "logout_all").await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("auth.logout_all", Some(p.user_id)).target("user", p.user_id).details(json!({"sessions": n})),
        )
        .await?;
        self.events.disconnect_after_commit(&txn, p.user_id);
        txn.commit().await?;
        Ok(())
    }

    async fn revoke_where<C: ConnectionTrait>(
        &self,
        db: &C,
        cond: sea_orm::sea_query::SimpleExpr,
        reason: &str,
    ) -> Result<u64, DbErr> {
        let now = Utc::now();
        Ok(session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(Some(now)))
            .col_expr(session::Column::RevokedReason, Expr::value(Some(reason.to_string())))
            .filter(cond)
            .filter(session::Column::RevokedAt.is_null())
            .exec(db)
            .await?
            .rows_affected)
    }

    /// Establishes who is calling from an access token. The session and user rows are read on
    /// every request, so revocation, deactivation and role changes apply at once.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self.keys.verify(token).map_err(|_| AuthError::Unauthenticated)?;
        // One query for both rows: this runs on every authenticated request.
        let (session, user) = session::Entity::find_by_id(claims.sid)
            .find_also_related(user::Entity)
            .one(&self.db.conn)
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        let user = user.ok_or(AuthError::Unauthenticated)?;
        if session.user_id != claims.sub
            || session.revoked_at.is_some()
            || session.expires_at <= Utc::now()
            || !user.is_active
        {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Principal { user_id: user.id, session_id: session.id, role: user.role })
    }

    pub async fn me(&self, p: &Principal) -> Result<UserView, AuthError> {
        let u = user::Entity::find_by_id(p.user_id).one(&self.db.conn).await?.ok_or(AuthError::NotFound)?;
        Ok(UserView::from(&u))
    }

    pub async fn update_profile(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        display_name: Option<&str>,
    ) -> Result<UserView, AuthError> {
        let txn = self.db.begin_write().await?;
        let u = user::Entity::find_by_id(p.user_id).one(&*txn).await?.ok_or(AuthError::NotFound)?;
        let Some(name) = display_name else {
            return Ok(UserView::from(&u));
        };
        let name = validate_display_name(name)?;
        if name == u.display_name {
            return Ok(UserView::from(&u));
        }
        let mut am = u.into_active_model();
        am.display_name = Set(name);
        am.updated_at = Set(Utc::now());
        let u = am.update(&*txn).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("user.update_profile", Some(p.user_id))
                .target("user", p.user_id)
                .details(json!({"fields": ["display_name"]})),
        )
        .await?;
        txn.commit().await?;
        Ok(UserView::from(&u))
    }

    pub async fn change_password(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let u = user::Entity::find_by_id(p.user_id).one(&self.db.conn).await?.ok_or(AuthError::NotFound)?;
        check_password("new_password", new, &u.email)?;
        if let Some(retry) = self.lockout_remaining(&u) {
            return Err(AuthError::AccountLocked { retry_after_secs: retry });
        }
        if !self.hasher.verify(current, Some(&u.password_hash)).await? {
            // A stolen session must not become an unlimited password oracle: wrong guesses
            // count towards the same per-account lockout as failed logins.
            let txn = self.db.begin_write().await?;
            self.count_failure(&*txn, u.id).await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("auth.password_change_failed", Some(p.user_id)).target("user", p.user_id),
            )
            .await?;
            txn.commit().await?;
            return Err(invalid("current_password", "is not your current password"));
        }
        let hash = self.hasher.hash(new).await?;
        let txn = self.db.begin_write().await?;
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(hash))
            .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(user::Column::Id.eq(p.user_id))
            .exec(&*txn)
            .await?;
        let ended = self
            .revoke_where(
                &*txn,
                session::Column::UserId.eq(p.user_id).and(session::Column::Id.ne(p.session_id)),
                "password_changed",
            )
            .await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("auth.password_change", Some(p.user_id))
                .target("user", p.user_id)
                .details(json!({"other_sessions_ended": ended})),
        )
        .await?;
        self.events.disconnect_after_commit(&txn, p.user_id);
        txn.commit().await?;
        Ok(())
    }

    pub async fn list_sessions(&self, p: &Principal, page: PageRequest) -> Result<Page<SessionView>, AuthError> {
        let mut q = session::Entity::find()
            .filter(session::Column::UserId.eq(p.user_id))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(Utc::now()))
            .order_by_desc(session::Column::Id)
            .limit(page.limit + 1);
        if let Some(after) = page.after {
            q = q.filter(session::Column::Id.lt(after));
        }
        let rows = q.all(&self.db.conn).await?;
        let views = rows
            .into_iter()
            .map(|s| SessionView {
                current: s.id == p.session_id,
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect();
        Ok(Page::from_rows(views, page, |s| s.id))
    }

    pub async fn revoke_session(&self, ctx: &RequestContext, p: &Principal, id: Uuid) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        let n = self
            .revoke_where(
                &*txn,
                session::Column::Id.eq(id).and(session::Column::UserId.eq(p.user_id)),
                "revoked_by_user",
            )
            .await?;
        if n == 0 {
            return Err(AuthError::NotFound);
        }
        audit::record(&*txn, ctx, Event::new("auth.session_revoke", Some(p.user_id)).target("session", id)).await?;
        self.events.disconnect_after_commit(&txn, p.user_id);
        txn.commit().await?;
        Ok(())
    }
}
