//! Signing in: password check, the per-account throttle (`throttle`), and the "new sign-in"
//! email for a device the user has not used before.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{AuthError, AuthService, TokenPair, throttle::Gate};
use crate::{
    email::Template,
    entities::{session, user},
    infra::db::WriteTxn,
    kernel::audit::{self, Event},
    kernel::context::{RequestContext, Role},
    kernel::input::EmailAddress,
};

const FAILED_LOGIN_WINDOW: chrono::Duration = chrono::Duration::hours(1);

impl AuthService {
    pub async fn login(&self, ctx: &RequestContext, email: &str, password: &str) -> Result<TokenPair, AuthError> {
        self.login_as(ctx, email, password, &[Role::Student, Role::Instructor, Role::Admin], self.refresh_ttl).await
    }

    /// Signing in where only `roles` may enter (the admin console), into a session that ends
    /// `lasting` from now. Another role's right password is refused exactly like a wrong one
    /// (counted, locked out, audited), without starting a session.
    pub async fn login_as(
        &self,
        ctx: &RequestContext,
        email: &str,
        password: &str,
        roles: &[Role],
        lasting: std::time::Duration,
    ) -> Result<TokenPair, AuthError> {
        // Decided on the address as typed, before looking it up: known and unknown alike.
        let gate = self.throttle.gate(ctx, email).await;
        if let Gate::Closed { retry_after_secs } = gate {
            return self.refuse_throttled(ctx, retry_after_secs).await;
        }
        // A malformed email gets the same answer as a wrong password: no hint either way.
        let found = match EmailAddress::parse(email) {
            Ok(email) => user::Entity::find().filter(user::Column::Email.eq(email.as_str())).one(&self.db.conn).await?,
            Err(_) => None,
        };
        let ok = self.hasher.verify(password, found.as_ref().map(|u| u.password_hash.as_str())).await?;
        if let Some(u) = &found
            && ok
            && u.is_active
            && roles.contains(&u.role)
        {
            return self.sign_in(self.db.begin_write().await?, ctx, u, lasting).await;
        }
        self.throttle.failed(ctx, email).await;
        let refused = match &found {
            Some(u) if ok && u.is_active => self.refuse_role(self.db.begin_write().await?, ctx, u).await,
            Some(u) => self.refuse_known(self.db.begin_write().await?, ctx, u, ok).await,
            None => self.refuse_unknown(self.db.begin_write().await?, ctx).await,
        };
        match (refused, gate) {
            (Err(AuthError::InvalidCredentials), Gate::OwnerOnly { retry_after_secs }) => {
                Err(AuthError::AccountLocked { retry_after_secs })
            }
            (other, _) => other,
        }
    }

    /// The account is over its failure budget and this source has been failing at it. The
    /// account is not looked up: what follows must not depend on whether it exists.
    async fn refuse_throttled(&self, ctx: &RequestContext, retry: u64) -> Result<TokenPair, AuthError> {
        let txn = self.db.begin_write().await?;
        audit::record(&*txn, ctx, Event::new("auth.login_failed", None).details(json!({"reason": "throttled"})))
            .await?;
        txn.commit().await?;
        Err(AuthError::AccountLocked { retry_after_secs: retry })
    }

    async fn sign_in(
        &self,
        txn: WriteTxn,
        ctx: &RequestContext,
        u: &user::Model,
        lasting: std::time::Duration,
    ) -> Result<TokenPair, AuthError> {
        if u.failed_login_count != 0 {
            user::Entity::update_many()
                .col_expr(user::Column::FailedLoginCount, Expr::value(0))
                .col_expr(user::Column::FailedLoginWindowStart, Expr::value(Option::<DateTime<Utc>>::None))
                .filter(user::Column::Id.eq(u.id))
                .exec(&*txn)
                .await?;
        }
        let new_device = self.is_new_device(&*txn, ctx, u.id).await?;
        let pair = self.start_session(&*txn, ctx, u, lasting).await?;
        if new_device {
            self.email.enqueue_for_user(&txn, u.id, Template::NewSignIn, new_sign_in_vars(ctx)).await?;
        }
        audit::record(&*txn, ctx, Event::new("auth.login", Some(u.id)).target("user", u.id)).await?;
        txn.commit().await?;
        Ok(pair)
    }

    /// A known account that may not sign in: wrong password (counted) or deactivated.
    async fn refuse_known(
        &self,
        txn: WriteTxn,
        ctx: &RequestContext,
        u: &user::Model,
        password_ok: bool,
    ) -> Result<TokenPair, AuthError> {
        let reason = if password_ok { "inactive" } else { "bad_password" };
        audit::record(
            &*txn,
            ctx,
            Event::new("auth.login_failed", None).target("user", u.id).details(json!({"reason": reason})),
        )
        .await?;
        txn.commit().await?;
        Err(AuthError::InvalidCredentials)
    }

    async fn refuse_role(&self, txn: WriteTxn, ctx: &RequestContext, u: &user::Model) -> Result<TokenPair, AuthError> {
        audit::record(
            &*txn,
            ctx,
            Event::new("auth.login_failed", None).target("user", u.id).details(json!({"reason": "role_not_allowed"})),
        )
        .await?;
        txn.commit().await?;
        Err(AuthError::InvalidCredentials)
    }

    async fn refuse_unknown(&self, txn: WriteTxn, ctx: &RequestContext) -> Result<TokenPair, AuthError> {
        // The address itself is not recorded: it may be a minor's, and it is not an account.
        audit::record(&*txn, ctx, Event::new("auth.login_failed", None).details(json!({"reason": "unknown_email"})))
            .await?;
        txn.commit().await?;
        Err(AuthError::InvalidCredentials)
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

    /// Seconds left of a lockout, if the account is locked.
    pub(super) fn lockout_remaining(&self, u: &user::Model) -> Option<u64> {
        let start = u.failed_login_window_start?;
        let ends = start + FAILED_LOGIN_WINDOW;
        let now = Utc::now();
        (u.failed_login_count >= self.max_failed_logins_per_hour as i32 && ends > now)
            .then(|| std::cmp::max((ends - now).num_seconds(), 1) as u64)
    }

    /// Counts a wrong current password at `PATCH /me/password` in the database: only a signed-in
    /// user can spend it, so it cannot lock anyone else out.
    pub(super) async fn count_failure<C: ConnectionTrait>(&self, db: &C, user_id: Uuid) -> Result<(), AuthError> {
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
}

fn new_sign_in_vars(ctx: &RequestContext) -> serde_json::Value {
    json!({
        "at": Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        "ip": ctx.ip.clone().unwrap_or_else(|| "unknown".into()),
        "user_agent": ctx
            .user_agent
            .as_deref()
            .map(|a| a.chars().take(200).collect::<String>())
            .unwrap_or_else(|| "unknown".into()),
    })
}
