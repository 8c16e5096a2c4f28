//! What an admin does to someone else's account beyond role and activation: ending all of its
//! sessions and sending a fresh verification link. Audited with the admin as the actor.

use sea_orm::{ColumnTrait, EntityTrait};
use serde_json::json;
use uuid::Uuid;

use super::{AuthError, AuthService};
use crate::{
    entities::{session, user},
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext},
};

impl AuthService {
    /// Ends every session of `user_id` (and its live connections); returns how many ended.
    /// Not the admin's own: like demoting oneself, it would end the session doing it, and
    /// signing out everywhere has its own door.
    pub async fn end_sessions_of(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        user_id: Uuid,
    ) -> Result<u64, AuthError> {
        if user_id == admin.user_id {
            return Err(super::invalid("id", "to end your own sessions, sign out everywhere (POST /auth/logout-all)"));
        }
        let txn = self.db.begin_write().await?;
        user::Entity::find_by_id(user_id).one(&*txn).await?.ok_or(AuthError::NotFound)?;
        let n = self.revoke_where(&*txn, session::Column::UserId.eq(user_id), "ended_by_admin").await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("admin.sessions_ended", Some(admin.user_id))
                .target("user", user_id)
                .details(json!({"sessions": n})),
        )
        .await?;
        self.events.disconnect_after_commit(&txn, user_id);
        txn.commit().await?;
        Ok(n)
    }

    /// Queues a new verification link to `user_id`; `false` when the address is already
    /// verified (nothing is sent).
    pub async fn resend_verification_to(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        user_id: Uuid,
    ) -> Result<bool, AuthError> {
        let txn = self.db.begin_write().await?;
        let u = user::Entity::find_by_id(user_id).one(&*txn).await?.ok_or(AuthError::NotFound)?;
        if u.email_verified {
            return Ok(false);
        }
        self.enqueue_verification(&txn, &u).await?;
        audit::record(&*txn, ctx, Event::new("auth.verification_resent", Some(admin.user_id)).target("user", u.id))
            .await?;
        txn.commit().await?;
        Ok(true)
    }
}
