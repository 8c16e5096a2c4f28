//! Flows that prove a mailbox with a single-use emailed token: address verification and
//! password reset.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{AuthError, AuthService, check_password, parse_email, tokens};
use crate::{
    email::{Outgoing, Template},
    entities::{email_suppression, email_token, session, user},
    infra::db::WriteTxn,
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext},
};

/// Verification links live long enough for a weekend; reset links briefly, since whoever holds
/// one can take over the account.
const VERIFY_TTL: chrono::Duration = chrono::Duration::hours(48);
const RESET_TTL: chrono::Duration = chrono::Duration::minutes(30);
const PURPOSE_VERIFY: &str = "verify";
const PURPOSE_RESET: &str = "reset";

impl AuthService {
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

    /// Queues `template` to the account's own address, whatever its preferences: these are
    /// the security mails that carry a link.
    async fn mail_account(
        &self,
        txn: &WriteTxn,
        u: &user::Model,
        template: Template,
        vars: serde_json::Value,
    ) -> Result<(), AuthError> {
        let to = Outgoing {
            to: &u.email,
            // Until the address is proven, whoever registered may not be its owner: nothing
            // they typed (a name like "Eve <x@evil.example>", a link) goes to it.
            to_name: u.email_verified.then_some(u.display_name.as_str()),
            user_id: Some(u.id),
            template,
            vars,
            dedup_key: None,
        };
        self.email.enqueue(txn, to).await?;
        Ok(())
    }

    /// Queues the verification email with a new link, in the caller's transaction.
    pub(super) async fn enqueue_verification(&self, txn: &WriteTxn, u: &user::Model) -> Result<(), AuthError> {
        let token = self.issue_email_token(&**txn, u.id, PURPOSE_VERIFY, VERIFY_TTL).await?;
        let vars = json!({
            "verify_url": self.email.link(&format!("/verify-email?token={token}")),
            "expires_hours": VERIFY_TTL.num_hours(),
        });
        self.mail_account(txn, u, Template::VerifyEmail, vars).await?;
        Ok(())
    }

    /// Always succeeds for a well-formed address. Both branches read the user, render the
    /// message, check the suppression list and write an audit row in a write transaction, so
    /// neither the answer nor its timing tells whether the account exists.
    pub async fn forgot_password(&self, ctx: &RequestContext, email: &str) -> Result<(), AuthError> {
        let email = parse_email(email)?;
        let txn = self.db.begin_write().await?;
        let found = user::Entity::find().filter(user::Column::Email.eq(email.as_str())).one(&*txn).await?;
        match found {
            Some(u) if u.is_active => self.send_reset_link(&txn, ctx, &u).await?,
            _ => self.pretend_reset_link(&txn, ctx, email.as_str()).await?,
        }
        txn.commit().await?;
        Ok(())
    }

    async fn send_reset_link(&self, txn: &WriteTxn, ctx: &RequestContext, u: &user::Model) -> Result<(), AuthError> {
        let token = self.issue_email_token(&**txn, u.id, PURPOSE_RESET, RESET_TTL).await?;
        let vars = json!({
            "reset_url": self.email.link(&format!("/reset-password?token={token}")),
            "expires_minutes": RESET_TTL.num_minutes(),
        });
        self.mail_account(txn, u, Template::PasswordReset, vars).await?;
        audit::record(&**txn, ctx, Event::new("auth.password_reset_requested", None).target("user", u.id)).await?;
        Ok(())
    }

    /// The same work as [`Self::send_reset_link`] minus the writes that would create a token
    /// and a message.
    async fn pretend_reset_link(&self, txn: &WriteTxn, ctx: &RequestContext, email: &str) -> Result<(), AuthError> {
        let token = tokens::new_refresh_token();
        let _ = self.email.render(
            Template::PasswordReset,
            &json!({"reset_url": token, "expires_minutes": RESET_TTL.num_minutes()}),
            Some(email),
            None,
        )?;
        let _ = email_suppression::Entity::find_by_id(email.to_string()).one(&**txn).await?;
        // The address itself is not recorded: it is not an account.
        audit::record(
            &**txn,
            ctx,
            Event::new("auth.password_reset_requested", None).details(json!({"reason": "unknown_or_inactive"})),
        )
        .await?;
        Ok(())
    }

    /// Sets a new password from a reset token: the token is spent, every other reset token of
    /// the user too, every session ends, and the mailbox is proven, so the email counts as
    /// verified.
    pub async fn reset_password(&self, ctx: &RequestContext, token: &str, new_password: &str) -> Result<(), AuthError> {
        let u = self.reset_target(token).await?;
        check_password("new_password", new_password, &u.email)?;
        let pw_hash = self.hasher.hash(new_password).await?;

        let txn = self.db.begin_write().await?;
        let user_id = self.spend_email_token(&*txn, token, PURPOSE_RESET).await?;
        let now = Utc::now();
        spend_all_reset_tokens(&*txn, user_id, now).await?;
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
        self.throttle.forgive(&u.email).await;
        Ok(())
    }

    /// The active user a usable reset token belongs to. Read first (without spending) so a
    /// weak password is a 422 that leaves the link usable.
    async fn reset_target(&self, token: &str) -> Result<user::Model, AuthError> {
        if token.is_empty() || token.len() > 200 {
            return Err(AuthError::InvalidEmailToken);
        }
        let hash = tokens::hash_refresh_token(token);
        let row = email_token::Entity::find_by_id(hash).one(&self.db.conn).await?;
        let row = row
            .filter(|r| r.purpose == PURPOSE_RESET && r.used_at.is_none() && r.expires_at > Utc::now())
            .ok_or(AuthError::InvalidEmailToken)?;
        let u = user::Entity::find_by_id(row.user_id).one(&self.db.conn).await?.ok_or(AuthError::InvalidEmailToken)?;
        if !u.is_active {
            return Err(AuthError::InvalidEmailToken);
        }
        Ok(u)
    }

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
}

/// Once one reset link is used, the others the user was sent are dead too.
async fn spend_all_reset_tokens<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    email_token::Entity::update_many()
        .col_expr(email_token::Column::UsedAt, Expr::value(Some(now)))
        .filter(email_token::Column::UserId.eq(user_id))
        .filter(email_token::Column::Purpose.eq(PURPOSE_RESET))
        .filter(email_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
