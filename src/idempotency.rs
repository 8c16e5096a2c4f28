//! `Idempotency-Key` for creates: a retried request with the same key gets the first response
//! and creates nothing new.
//!
//! Rules (documented in the README):
//! - Keys are per user and kept 24 hours; a key is 1 to 200 visible ASCII characters.
//! - The same key with a different method, path or body is a 422.
//! - While the first request is still running, a retry gets 409; after 60 s without an answer
//!   the first attempt is presumed dead and the retry runs.
//! - Only 2xx responses are remembered; after a 4xx or 5xx the key is free for a corrected retry.

use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use sha2::{Digest, Sha256};

use crate::{
    entities::idempotency_key,
    infra::db::{Db, is_unique_violation},
};

const KEEP: Duration = Duration::hours(24);
const ABANDONED: Duration = Duration::seconds(60);

pub enum Claim {
    /// First time: run the request, then call [`complete`] or [`release`].
    Fresh,
    Replay {
        status: u16,
        content_type: Option<String>,
        body: String,
    },
    InProgress,
    Mismatch,
}

pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic())
}

pub async fn claim(db: &Db, scope: &str, key: &str, fingerprint: &str) -> Result<Claim, DbErr> {
    for _ in 0..2 {
        let row = idempotency_key::ActiveModel {
            scope: Set(scope.to_string()),
            key: Set(key.to_string()),
            fingerprint: Set(fingerprint.to_string()),
            status_code: Set(None),
            content_type: Set(None),
            response_body: Set(None),
            created_at: Set(Utc::now()),
            completed_at: Set(None),
        };
        let txn = db.begin_write().await?;
        match row.insert(&*txn).await {
            Ok(_) => {
                txn.commit().await?;
                return Ok(Claim::Fresh);
            }
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e),
        }
        drop(txn);
        let Some(existing) =
            idempotency_key::Entity::find_by_id((scope.to_string(), key.to_string())).one(&db.conn).await?
        else {
            continue;
        };
        let now = Utc::now();
        let expired = existing.created_at + KEEP < now;
        let abandoned = existing.completed_at.is_none() && existing.created_at + ABANDONED < now;
        if expired || abandoned {
            // Take the stale row away (only if it is still the one we saw) and try again.
            let txn = db.begin_write().await?;
            idempotency_key::Entity::delete_many()
                .filter(idempotency_key::Column::Scope.eq(scope))
                .filter(idempotency_key::Column::Key.eq(key))
                .filter(idempotency_key::Column::CreatedAt.eq(existing.created_at))
                .exec(&*txn)
                .await?;
            txn.commit().await?;
            continue;
        }
        if existing.fingerprint != fingerprint {
            return Ok(Claim::Mismatch);
        }
        return Ok(match (existing.status_code, existing.response_body) {
            (Some(status), Some(body)) => {
                Claim::Replay { status: status as u16, content_type: existing.content_type, body }
            }
            _ => Claim::InProgress,
        });
    }
    Ok(Claim::InProgress)
}

/// Whether `key` already holds a kept answer (so a request carrying it is a retry to replay).
pub async fn answered(db: &Db, scope: &str, key: &str) -> Result<bool, DbErr> {
    let row = idempotency_key::Entity::find_by_id((scope.to_string(), key.to_string())).one(&db.conn).await?;
    Ok(row.is_some_and(|r| r.completed_at.is_some() && r.created_at + KEEP >= Utc::now()))
}

pub async fn complete(
    db: &Db,
    scope: &str,
    key: &str,
    status: u16,
    content_type: Option<&str>,
    body: &str,
) -> Result<(), DbErr> {
    let txn = db.begin_write().await?;
    idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::StatusCode, Expr::value(Some(i32::from(status))))
        .col_expr(idempotency_key::Column::ContentType, Expr::value(content_type.map(str::to_string)))
        .col_expr(idempotency_key::Column::ResponseBody, Expr::value(Some(body.to_string())))
        .col_expr(idempotency_key::Column::CompletedAt, Expr::value(Some(Utc::now())))
        .filter(idempotency_key::Column::Scope.eq(scope))
        .filter(idempotency_key::Column::Key.eq(key))
        .exec(&*txn)
        .await?;
    txn.commit().await
}

pub async fn release(db: &Db, scope: &str, key: &str) -> Result<(), DbErr> {
    let txn = db.begin_write().await?;
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::Scope.eq(scope))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::CompletedAt.is_null())
        .exec(&*txn)
        .await?;
    txn.commit().await
}

/// Forgets keys older than the 24 hours they are promised for.
pub async fn purge_expired(db: &Db) -> Result<(), DbErr> {
    let txn = db.begin_write().await?;
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::CreatedAt.lt(Utc::now() - KEEP))
        .exec(&*txn)
        .await?;
    txn.commit().await
}
