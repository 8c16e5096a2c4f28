//! Sessions: starting one, refresh-token rotation with reuse detection, logout, the user's
//! session list, and establishing who is calling from an access token.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, SimpleExpr},
};
use serde_json::json;
use uuid::Uuid;

use super::{
    AuthError, AuthService, SessionView, TokenPair, UserView,
    tokens::{self, InvalidToken},
};
use crate::{
    entities::{refresh_token, session, user},
    infra::db::WriteTxn,
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext, Role},
    kernel::pagination::{Page, PageRequest},
};

impl AuthService {
    /// A new session for `user` (registration and sign-in) and its first token pair, ending
    /// `lasting` from now however it is refreshed.
    pub(super) async fn start_session<C: ConnectionTrait>(
        &self,
        db: &C,
        ctx: &RequestContext,
        user: &user::Model,
        lasting: std::time::Duration,
    ) -> Result<TokenPair, AuthError> {
        let now = Utc::now();
        let session_id = Uuid::now_v7();
        session::ActiveModel {
            id: Set(session_id),
            user_id: Set(user.id),
            created_at: Set(now),
            last_used_at: Set(now),
            expires_at: Set(now + lasting),
            revoked_at: Set(None),
            revoked_reason: Set(None),
            user_agent: Set(ctx.user_agent.clone()),
            ip: Set(ctx.ip.clone()),
        }
        .insert(db)
        .await?;
        let refresh = self.issue_refresh(db, session_id).await?;
        Ok(self.token_pair(user, session_id, refresh))
    }

    fn token_pair(&self, user: &user::Model, session_id: Uuid, refresh_token: String) -> TokenPair {
        let role: Role = user.role;
        TokenPair {
            user: UserView::from(user),
            access_token: self.keys.issue(user.id, session_id, role),
            refresh_token,
            token_type: "Bearer",
            expires_in: self.keys.access_ttl.as_secs(),
        }
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

    /// Trades a refresh token for a new pair; the old token is spent.
    pub async fn refresh(&self, ctx: &RequestContext, token: &str) -> Result<TokenPair, AuthError> {
        let hash = tokens::hash_refresh_token(token);
        let txn = self.db.begin_write().await?;
        let now = Utc::now();
        let session = live_session_of(&*txn, &hash, now).await?;
        if !spend_refresh(&*txn, &hash, now).await? {
            return self.end_reused_session(txn, ctx, &session).await;
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
        Ok(self.token_pair(&user, session.id, refresh))
    }

    /// A spent token came back: it was stolen or replayed. End the whole session.
    async fn end_reused_session(
        &self,
        txn: WriteTxn,
        ctx: &RequestContext,
        session: &session::Model,
    ) -> Result<TokenPair, AuthError> {
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
        Err(AuthError::InvalidRefreshToken)
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

    /// Revokes the live sessions matching `cond`; returns how many ended.
    pub(super) async fn revoke_where<C: ConnectionTrait>(
        &self,
        db: &C,
        cond: SimpleExpr,
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
        Ok(self.authenticate_user(token).await?.0)
    }

    /// As [`Self::authenticate`], with the user's public view from the same row, so that a
    /// request about the caller need not read it again.
    pub async fn authenticate_user(&self, token: &str) -> Result<(Principal, UserView), AuthError> {
        let claims = self.keys.verify(token).map_err(|e| match e {
            InvalidToken::Expired => AuthError::AccessTokenExpired,
            InvalidToken::Invalid => AuthError::Unauthenticated,
        })?;
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
        Ok((Principal { user_id: user.id, session_id: session.id, role: user.role }, UserView::from(&user)))
    }

    /// Establishes who is calling from a session's refresh token held as a cookie (the admin
    /// console), without spending it: the same checks as [`Self::authenticate`], and the token
    /// must be the session's current one, so refreshing it elsewhere ends the cookie session.
    pub async fn authenticate_refresh_token(&self, token: &str) -> Result<Principal, AuthError> {
        let hash = tokens::hash_refresh_token(token);
        let row =
            refresh_token::Entity::find_by_id(hash).one(&self.db.conn).await?.ok_or(AuthError::Unauthenticated)?;
        if row.spent_at.is_some() {
            // The cookie's token was traded at `/auth/refresh`, which the console never does:
            // someone else holds it. Treated as a reused refresh token: the session ends.
            if let Some(session) = session::Entity::find_by_id(row.session_id).one(&self.db.conn).await?
                && session.revoked_at.is_none()
            {
                let ctx = RequestContext::default();
                let _ = self.end_reused_session(self.db.begin_write().await?, &ctx, &session).await;
            }
            return Err(AuthError::Unauthenticated);
        }
        let (session, user) = session::Entity::find_by_id(row.session_id)
            .find_also_related(user::Entity)
            .one(&self.db.conn)
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        let user = user.ok_or(AuthError::Unauthenticated)?;
        if session.revoked_at.is_some() || session.expires_at <= Utc::now() || !user.is_active {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Principal { user_id: user.id, session_id: session.id, role: user.role })
    }

    pub async fn list_sessions(&self, p: &Principal, page: PageRequest) -> Result<Page<SessionView>, AuthError> {
        let live = session::Entity::find()
            .filter(session::Column::UserId.eq(p.user_id))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(Utc::now()));
        let rows = page.newest_first(live, session::Column::Id).all(&self.db.conn).await?;
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

/// The unrevoked, unexpired session a refresh token (by hash) belongs to.
async fn live_session_of<C: ConnectionTrait>(
    db: &C,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<session::Model, AuthError> {
    let row =
        refresh_token::Entity::find_by_id(hash.to_string()).one(db).await?.ok_or(AuthError::InvalidRefreshToken)?;
    let session = session::Entity::find_by_id(row.session_id).one(db).await?.ok_or(AuthError::InvalidRefreshToken)?;
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Err(AuthError::InvalidRefreshToken);
    }
    Ok(session)
}

/// Compare-and-set: of two concurrent uses of one token, exactly one spends it.
async fn spend_refresh<C: ConnectionTrait>(db: &C, hash: &str, now: DateTime<Utc>) -> Result<bool, AuthError> {
    let spent = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::SpentAt, Expr::value(Some(now)))
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .filter(refresh_token::Column::SpentAt.is_null())
        .exec(db)
        .await?
        .rows_affected;
    Ok(spent == 1)
}
