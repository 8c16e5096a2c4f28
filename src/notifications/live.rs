//! Who may open a live connection, and where a reconnecting client resumes.
//!
//! Browsers cannot set an Authorization header on a WebSocket, and a long-lived access token in
//! a URL would end up in proxy logs. So a signed-in client first asks for a ticket: 32 random
//! bytes, valid for 30 seconds, stored only as a SHA-256 hash and consumed by one atomic
//! `DELETE … RETURNING` (two racing uses: exactly one wins). The database (not Redis) holds
//! them so that one code path works on both backends and on every instance.

use std::{collections::HashSet, sync::Arc, time::Duration};

use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationTrait, Statement, TryGetable,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    entities::{realtime_ticket, session, user},
    infra::{db::Db, realtime::Hub},
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext, Role},
    },
};

pub const TICKET_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    /// Unknown, already used, expired, or its session/user is no longer valid.
    #[error("invalid ticket")]
    Invalid,
    /// The user holds as many unspent tickets as allowed; the oldest expires within this.
    #[error("too many unspent tickets")]
    TooMany { retry_after_secs: u64 },
    #[error("database")]
    Db(#[from] DbErr),
}

fn hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

/// Issues a ticket for the caller's own user and session, at most `max_unspent` at a time per
/// user: a client needs one per connection attempt, a loop would fill the table.
pub async fn issue_ticket(
    db: &Db,
    ctx: &RequestContext,
    p: &Principal,
    max_unspent: u32,
) -> Result<String, TicketError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = Utc::now();
    let txn = db.begin_write().await?;
    // Expired tickets are garbage; removing them here keeps the table as small as the number
    // of tickets issued in the last 30 seconds, without a separate sweeper.
    realtime_ticket::Entity::delete_many().filter(realtime_ticket::Column::ExpiresAt.lt(now)).exec(&*txn).await?;
    let mut owner = user::Entity::find_by_id(p.user_id);
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // One user's issues take turns, so two at once cannot both take the last place.
        owner = owner.lock_exclusive();
    }
    owner.one(&*txn).await?;
    let unspent = realtime_ticket::Entity::find()
        .filter(realtime_ticket::Column::UserId.eq(p.user_id))
        .order_by_asc(realtime_ticket::Column::ExpiresAt)
        .all(&*txn)
        .await?;
    if unspent.len() >= max_unspent as usize {
        let oldest = unspent[0].expires_at;
        return Err(TicketError::TooMany { retry_after_secs: (oldest - now).num_seconds().max(1) as u64 });
    }
    realtime_ticket::Entity::insert(realtime_ticket::ActiveModel {
        token_hash: Set(hash(&ticket)),
        user_id: Set(p.user_id),
        session_id: Set(p.session_id),
        expires_at: Set(now + chrono::Duration::from_std(TICKET_TTL).unwrap_or_default()),
        created_at: Set(now),
    })
    .exec_without_returning(&*txn)
    .await?;
    audit::record(&*txn, ctx, Event::new("realtime.ticket", Some(p.user_id)).target("session", p.session_id)).await?;
    txn.commit().await?;
    Ok(ticket)
}

/// The owner of a live connection, re-checked at the moment the ticket is used.
#[derive(Debug, Clone, Copy)]
pub struct LiveUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

/// Spends a ticket: succeeds once, within its lifetime, while its session and user are valid.
pub async fn consume_ticket(db: &Db, ticket: &str) -> Result<LiveUser, TicketError> {
    if ticket.is_empty() || ticket.len() > 128 {
        return Err(TicketError::Invalid);
    }
    let backend = db.backend();
    let txn = db.begin_write().await?;
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            "DELETE FROM realtime_tickets WHERE token_hash = $1 RETURNING user_id, session_id, expires_at",
            [hash(ticket).into()],
        ))
        .await?;
    txn.commit().await?;
    let Some(row) = row else { return Err(TicketError::Invalid) };
    let user_id = Uuid::try_get_by(&row, "user_id").map_err(|e| DbErr::Custom(format!("{e:?}")))?;
    let session_id = Uuid::try_get_by(&row, "session_id").map_err(|e| DbErr::Custom(format!("{e:?}")))?;
    let expires_at =
        chrono::DateTime::<Utc>::try_get_by(&row, "expires_at").map_err(|e| DbErr::Custom(format!("{e:?}")))?;
    if expires_at <= Utc::now() {
        return Err(TicketError::Invalid);
    }
    let s = session::Entity::find_by_id(session_id).one(&db.conn).await?.ok_or(TicketError::Invalid)?;
    let u = user::Entity::find_by_id(user_id)
        .filter(user::Column::IsActive.eq(true))
        .one(&db.conn)
        .await?
        .ok_or(TicketError::Invalid)?;
    if s.user_id != user_id || s.revoked_at.is_some() || s.expires_at <= Utc::now() {
        return Err(TicketError::Invalid);
    }
    Ok(LiveUser { user_id, session_id, role: u.role })
}

/// How often an instance re-checks the sessions of its live connections. Ending a session
/// closes its connections at once through the bus; this catches what the bus missed (Redis was
/// down, so another instance's message never arrived).
pub const SESSION_SWEEP: Duration = Duration::from_secs(5);

/// Of `sessions`, those that may no longer hold a live connection: revoked, expired, of a
/// deactivated user, or gone.
pub async fn ended_sessions(db: &Db, sessions: &[Uuid]) -> Result<HashSet<Uuid>, DbErr> {
    let mut ended: HashSet<Uuid> = sessions.iter().copied().collect();
    for chunk in sessions.chunks(500) {
        let valid: Vec<Uuid> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .join(JoinType::InnerJoin, session::Relation::User.def())
            .filter(session::Column::Id.is_in(chunk.iter().copied()))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(Utc::now()))
            .filter(user::Column::IsActive.eq(true))
            .into_tuple()
            .all(&db.conn)
            .await?;
        for id in valid {
            ended.remove(&id);
        }
    }
    Ok(ended)
}

/// Re-checks this instance's live sessions every [`SESSION_SWEEP`] until `shutdown`.
pub fn spawn_session_sweeper(db: Db, hub: Arc<Hub>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SESSION_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sessions = hub.sessions();
            if sessions.is_empty() {
                continue;
            }
            match ended_sessions(&db, &sessions).await {
                Ok(ended) => hub.drop_sessions(&ended),
                Err(e) => tracing::warn!(error = %e, "live session sweep failed; retrying at the next tick"),
            }
        }
    });
}

/// How far before `Last-Event-ID` an SSE resume starts replaying. Ids are UUIDv7 taken when
/// a row is inserted, but rows become visible at commit, a few milliseconds later: a
/// notification with a slightly smaller id can commit *after* a client saw a larger one.
/// Replaying this window (clients dedupe by `id`) means such a row is never skipped.
pub const RESUME_OVERLAP: Duration = Duration::from_secs(2);

/// The smallest UUIDv7 whose timestamp is `RESUME_OVERLAP` before `last`'s, or `last` itself
/// when it is not a UUIDv7 (then only strictly newer ids are replayed).
pub fn resume_floor(last: Uuid) -> Uuid {
    match last.get_timestamp() {
        Some(ts) if last.get_version_num() == 7 => {
            let (secs, nanos) = ts.to_unix();
            let millis = (secs * 1000 + u64::from(nanos) / 1_000_000).saturating_sub(RESUME_OVERLAP.as_millis() as u64);
            let mut b = [0u8; 16];
            b[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
            // Version 7 and variant bits, everything else zero: the first id of that millisecond.
            b[6] = 0x70;
            b[8] = 0x80;
            Uuid::from_bytes(b)
        }
        _ => last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_floor_is_two_seconds_earlier() {
        let id = Uuid::now_v7();
        let floor = resume_floor(id);
        assert!(floor < id);
        let (a, _) = id.get_timestamp().unwrap().to_unix();
        let (b, _) = floor.get_timestamp().unwrap().to_unix();
        assert!(a - b <= 3 && a - b >= 1);
        let v4 = Uuid::new_v4();
        assert_eq!(resume_floor(v4), v4);
    }
}
