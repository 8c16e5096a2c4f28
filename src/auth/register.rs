//! New accounts: self-registration and the operators' `create-user`.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
use serde_json::json;
use uuid::Uuid;

use super::{AuthError, AuthService, TokenPair, UserView, check_password, parse_email, password};
use crate::{
    entities::user,
    infra::db::is_unique_violation,
    kernel::audit::{self, Event},
    kernel::context::{RequestContext, Role},
    kernel::fields::FieldErrors,
    kernel::input::{DisplayName, EmailAddress},
};

impl AuthService {
    pub async fn register(
        &self,
        ctx: &RequestContext,
        email: &str,
        password: &str,
        display_name: &str,
    ) -> Result<TokenPair, AuthError> {
        let (email, display_name) = validate_registration(email, password, display_name)?;
        self.throttle
            .registration(ctx)
            .await
            .map_err(|retry_after_secs| AuthError::TooManyRegistrations { retry_after_secs })?;
        let hash = self.hasher.hash(password).await?;
        let txn = self.db.begin_write().await?;
        let user = self.insert_user(&*txn, email.as_str(), display_name.as_str(), hash, Role::Student).await?;
        let pair = self.start_session(&*txn, ctx, &user, self.refresh_ttl).await?;
        // Same transaction as the user row: the account and its welcome mail exist together.
        self.enqueue_verification(&txn, &user).await?;
        audit::record(&*txn, ctx, Event::new("auth.register", Some(user.id)).target("user", user.id)).await?;
        txn.commit().await?;
        Ok(pair)
    }

    /// For operators (`cifix create-user`): any role, same validation as registration.
    pub async fn create_user(&self, email: &str, password: &str, role: Role) -> Result<UserView, AuthError> {
        let email = parse_email(email)?;
        check_password("password", password, email.as_str())?;
        let display_name =
            email.as_str().split('@').next().unwrap_or("user").chars().take(DisplayName::MAX).collect::<String>();
        let hash = self.hasher.hash(password).await?;
        let txn = self.db.begin_write().await?;
        let user = self.insert_user(&*txn, email.as_str(), &display_name, hash, role).await?;
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
}

/// Checks every field and reports all that are wrong at once.
fn validate_registration(
    email: &str,
    password: &str,
    display_name: &str,
) -> Result<(EmailAddress, DisplayName), FieldErrors> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", EmailAddress::parse(email));
    let display_name = errors.check("display_name", DisplayName::parse(display_name));
    // An unusable address still lets the password be judged, so one answer names every field.
    let local = email.as_ref().map_or("", EmailAddress::as_str);
    errors.check("password", password::check_strength(password, local));
    match (email, display_name) {
        (Some(email), Some(display_name)) if errors.is_empty() => Ok((email, display_name)),
        _ => Err(errors),
    }
}
