//! The outbox worker: claims due rows with a lease, delivers them, records the outcome.
//!
//! Claiming is one atomic UPDATE … RETURNING: on PostgreSQL over a `FOR UPDATE SKIP LOCKED`
//! subquery, so concurrent workers (in several instances) take disjoint rows without waiting;
//! on SQLite under the writer lock. A claimed row is `sending` until `locked_until`; a worker
//! that dies mid-send leaves the lease to expire and the row is claimed again. Every outcome
//! is written only if the row still carries this claim's `lease_id`, so a worker that
//! overran its lease cannot overwrite the result of the one that took over.
//!
//! Guarantee: at-least-once towards the SMTP server, exactly once in the normal case. The
//! window for a duplicate is "server accepted, worker died before recording": the retry reuses
//! the Message-ID so receivers can spot it.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use rand::Rng;
use sea_orm::{ColumnTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement, Value as SqlValue, sea_query::Expr};
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{EmailService, EmailSettings, Template, status, transport::Transport};
use crate::{
    entities::{email_outbox, email_suppression},
    infra::{db::Db, wakeup::Wakeup},
};

#[derive(Clone)]
pub struct Worker {
    db: Db,
    transport: Transport,
    settings: Arc<EmailSettings>,
    wake: Wakeup,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
    pub suppressed: usize,
}

enum Outcome {
    Sent,
    Retry(String),
    Failed(String),
    Suppressed,
}

/// Exponential backoff with jitter: base·2^(n−1), capped, then a uniform pick in [½d, d] so
/// that mail that failed together (a server outage) does not retry together.
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempts.saturating_sub(1).min(30)).unwrap_or(u32::MAX));
    let d = exp.min(max);
    let half = d / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis().max(1) as u64))
}

impl Worker {
    pub fn new(email: &EmailService, transport: Transport) -> Worker {
        Worker { db: email.db.clone(), transport, settings: email.settings.clone(), wake: email.wake.clone() }
    }

    /// Atomically claims up to `n` due rows (queued and due, or `sending` with an expired lease).
    pub async fn claim(&self, n: usize) -> Result<(Uuid, Vec<email_outbox::Model>), DbErr> {
        let now = Utc::now();
        let lease_id = Uuid::now_v7();
        let until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::minutes(2));
        let backend = self.db.backend();
        let (sql, values): (&str, Vec<SqlValue>) = match backend {
            DbBackend::Postgres => (
                "UPDATE email_outbox SET status = 'sending', attempts = attempts + 1, locked_until = $1, lease_id = $2 \
                 WHERE id IN (SELECT id FROM email_outbox \
                   WHERE (status = 'queued' AND next_attempt_at <= $3) OR (status = 'sending' AND locked_until < $3) \
                   ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 AND ((status = 'queued' AND next_attempt_at <= $3) OR (status = 'sending' AND locked_until < $3)) \
                 RETURNING *",
                vec![until.into(), lease_id.into(), now.into(), (n as i64).into()],
            ),
            _ => (
                "UPDATE email_outbox SET status = 'sending', attempts = attempts + 1, locked_until = ?, lease_id = ? \
                 WHERE id IN (SELECT id FROM email_outbox \
                   WHERE (status = 'queued' AND next_attempt_at <= ?) OR (status = 'sending' AND locked_until < ?) \
                   ORDER BY next_attempt_at LIMIT ?) \
                 RETURNING *",
                vec![until.into(), lease_id.into(), now.into(), now.into(), (n as i64).into()],
            ),
        };
        let stmt = Statement::from_sql_and_values(backend, sql, values);
        // One statement either way; on SQLite it also takes our writer lock so it never
        // collides with an in-process write transaction.
        let txn = self.db.begin_write().await?;
        let rows = email_outbox::Entity::find().from_raw_sql(stmt).all(&*txn).await?;
        txn.commit().await?;
        Ok((lease_id, rows))
    }

    /// Claims one batch and delivers it concurrently. Returns what happened.
    pub async fn run_once(&self) -> Result<Pass, DbErr> {
        let (lease_id, rows) = self.claim(self.settings.concurrency.max(1)).await?;
        let mut pass = Pass { claimed: rows.len(), ..Default::default() };
        let mut set = JoinSet::new();
        for row in rows {
            let w = self.clone();
            set.spawn(async move {
                let outcome = w.deliver(&row).await;
                w.record(&row, lease_id, outcome).await
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(Some(Outcome::Sent))) => pass.sent += 1,
                Ok(Ok(Some(Outcome::Retry(_)))) => pass.retrying += 1,
                Ok(Ok(Some(Outcome::Failed(_)))) => pass.failed += 1,
                Ok(Ok(Some(Outcome::Suppressed))) => pass.suppressed += 1,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "recording an email outcome"),
                Err(e) => tracing::error!(error = %e, "email delivery task panicked"),
            }
        }
        Ok(pass)
    }

    /// Runs passes until nothing is due (for tests, benchmarks and a final flush).
    pub async fn drain(&self) -> Result<Pass, DbErr> {
        let mut total = Pass::default();
        loop {
            let p = self.run_once().await?;
            if p.claimed == 0 {
                // On PostgreSQL a claim racing another worker's can come back empty although
                // rows are due (LIMIT is applied before the re-check of locked rows), so an
                // empty pass alone does not mean "done".
                let due = email_outbox::Entity::find()
                    .filter(email_outbox::Column::Status.eq(status::QUEUED))
                    .filter(email_outbox::Column::NextAttemptAt.lte(Utc::now()))
                    .one(&self.db.conn)
                    .await?;
                if due.is_none() {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            total.claimed += p.claimed;
            total.sent += p.sent;
            total.retrying += p.retrying;
            total.failed += p.failed;
            total.suppressed += p.suppressed;
        }
    }

    /// The worker loop: passes back to back while there is work, otherwise waits for the poll
    /// interval or a wake-up. Stops between passes when `shutdown` turns true; a pass in flight
    /// finishes (or its lease expires and another worker takes over).
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        tracing::info!(transport = %self.transport.describe(), "email worker started");
        let mut idle_errors = 0u32;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let busy = match self.run_once().await {
                Ok(p) => {
                    idle_errors = 0;
                    p.claimed > 0
                }
                Err(e) => {
                    idle_errors = idle_errors.saturating_add(1);
                    if idle_errors == 1 || idle_errors.is_multiple_of(60) {
                        tracing::warn!(error = %e, "email worker cannot reach the database; retrying");
                    }
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = self.wake.woken() => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("email worker stopped");
    }

    async fn deliver(&self, row: &email_outbox::Model) -> Outcome {
        // Claims whose lease expired also count as attempts, so a message that kills its
        // worker every time ends as failed instead of looping forever.
        if row.attempts as u32 > self.settings.max_attempts {
            let last = row.last_error.clone().unwrap_or_else(|| "the worker never finished".into());
            return Outcome::Failed(format!("gave up after {} attempts; last: {last}", row.attempts - 1));
        }
        // Checked again at send time: a bounce may have arrived after the mail was queued.
        match email_suppression::Entity::find_by_id(row.to_address.clone()).one(&self.db.conn).await {
            Ok(Some(_)) => return Outcome::Suppressed,
            Ok(None) => {}
            Err(e) => return Outcome::Retry(format!("database: {e}")),
        }
        let message = match super::transport::build_message(&self.settings.from, row) {
            Ok(m) => m,
            // A message that cannot be built will not build next time either.
            Err(e) => return Outcome::Failed(e.message),
        };
        match self.transport.send(row, message).await {
            Ok(()) => Outcome::Sent,
            Err(e) => {
                // A permanent SMTP refusal is retried too (a few times, on the same backoff):
                // servers answer 5xx for conditions an operator can fix (relay or sender
                // configuration), and `max_attempts` bounds the cost.
                let msg = if e.permanent { format!("permanent: {}", e.message) } else { e.message };
                if row.attempts as u32 >= self.settings.max_attempts {
                    Outcome::Failed(msg)
                } else {
                    Outcome::Retry(msg)
                }
            }
        }
    }

    async fn record(
        &self,
        row: &email_outbox::Model,
        lease_id: Uuid,
        outcome: Outcome,
    ) -> Result<Option<Outcome>, DbErr> {
        use email_outbox::Column as C;
        let now = Utc::now();
        let mut q = email_outbox::Entity::update_many()
            .col_expr(C::LockedUntil, Expr::value(Option::<chrono::DateTime<Utc>>::None))
            .col_expr(C::LeaseId, Expr::value(Option::<Uuid>::None));
        match &outcome {
            Outcome::Sent => {
                q = q
                    .col_expr(C::Status, Expr::value(status::SENT))
                    .col_expr(C::SentAt, Expr::value(Some(now)))
                    .col_expr(C::LastError, Expr::value(Option::<String>::None));
                // Erase one-time links once delivered: the outbox must not be a second copy
                // of every reset token.
                let secret = Template::ALL.iter().any(|t| t.name() == row.template && t.carries_secret());
                if secret {
                    q = q.col_expr(C::Payload, Expr::value(json!({"erased": "sent; contained a one-time link"})));
                }
            }
            Outcome::Retry(e) => {
                let delay = backoff(row.attempts.max(1) as u32, self.settings.retry_base, self.settings.retry_max);
                let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                q = q
                    .col_expr(C::Status, Expr::value(status::QUEUED))
                    .col_expr(C::NextAttemptAt, Expr::value(next))
                    .col_expr(C::LastError, Expr::value(Some(e.clone())));
                tracing::warn!(email_id = %row.id, attempts = row.attempts, error = %e, retry_in_ms = delay.as_millis() as u64, "email delivery failed; will retry");
            }
            Outcome::Failed(e) => {
                q = q
                    .col_expr(C::Status, Expr::value(status::FAILED))
                    .col_expr(C::LastError, Expr::value(Some(e.clone())));
                tracing::error!(email_id = %row.id, attempts = row.attempts, error = %e, "email delivery failed for good");
            }
            Outcome::Suppressed => {
                q = q
                    .col_expr(C::Status, Expr::value(status::SUPPRESSED))
                    .col_expr(C::LastError, Expr::value(Some("address is on the suppression list".to_string())));
            }
        }
        let txn = self.db.begin_write().await?;
        let n = q.filter(C::Id.eq(row.id)).filter(C::LeaseId.eq(lease_id)).exec(&*txn).await?.rows_affected;
        txn.commit().await?;
        if n == 0 {
            tracing::warn!(email_id = %row.id, "lease lost before the outcome was recorded; another worker owns the email");
            return Ok(None);
        }
        Ok(Some(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(3600);
        for n in 1..=12u32 {
            let d = backoff(n, base, max);
            let full = (base * 2u32.pow(n - 1)).min(max);
            assert!(d >= full / 2 && d <= full + Duration::from_millis(1), "attempt {n}: {d:?} vs {full:?}");
        }
        assert!(backoff(1000, base, max) <= max + Duration::from_millis(1));
    }
}
