//! The signed-in user's own account: the display name, the password (reading it is the
//! session check's, see `AuthService::authenticate_user`).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use serde_json::json;

use super::{AuthError, AuthService, UserView, check_password, invalid};
use crate::{
    entities::{session, user},
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext},
    kernel::input::DisplayName,
};

impl AuthService {
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
        let name = DisplayName::parse(name).map_err(|e| invalid("display_name", e.to_string()))?.into_inner();
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

    /// Changes the password after checking the current one; every other session ends.
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
            return self.refuse_wrong_current(ctx, p).await;
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

    /// A stolen session must not become an unlimited password oracle: wrong guesses count
    /// towards the same per-account lockout as failed logins.
    async fn refuse_wrong_current(&self, ctx: &RequestContext, p: &Principal) -> Result<(), AuthError> {
        let txn = self.db.begin_write().await?;
        self.count_failure(&*txn, p.user_id).await?;
        audit::record(&*txn, ctx, Event::new("auth.password_change_failed", Some(p.user_id)).target("user", p.user_id))
            .await?;
        txn.commit().await?;
        Err(invalid("current_password", "is not your current password"))
    }
}
