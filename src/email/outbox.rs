//! The outbox: every email is a row written in the transaction of the change that causes it,
//! and the admin's view of those rows.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::OnConflict};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{EmailError, EmailService, Template, render, status};
use crate::{
    entities::{email_outbox, email_suppression, user},
    infra::db::WriteTxn,
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        fields::FieldErrors,
        input::EmailAddress,
        pagination::{Page, PageRequest},
    },
};

/// One email to enqueue.
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub to_name: Option<&'a str>,
    pub user_id: Option<Uuid>,
    pub template: Template,
    /// Template variables (a JSON object); `product`, `public_url`, `display_name` and
    /// `unsubscribe_url` are filled in.
    pub vars: Value,
    /// Enqueue at most once per key (e.g. `achievement:{user}:{id}`).
    pub dedup_key: Option<String>,
}

/// The admin's view of an outbox row (API.md's `/admin/emails`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmailView {
    pub id: Uuid,
    pub to: String,
    pub template: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
}

impl From<email_outbox::Model> for EmailView {
    fn from(m: email_outbox::Model) -> Self {
        EmailView {
            id: m.id,
            to: m.to_address,
            template: m.template,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error,
            created_at: m.created_at,
            sent_at: m.sent_at,
            next_attempt_at: m.next_attempt_at,
        }
    }
}

/// Addresses are compared trimmed and lower-cased, as user emails are stored; the rule is the
/// kernel's [`EmailAddress`], so what sign-up accepts is what mail can be sent to.
pub fn normalize_address(addr: &str) -> Result<String, EmailError> {
    EmailAddress::parse(addr).map(EmailAddress::into_inner).map_err(|_| EmailError::InvalidAddress)
}

impl EmailService {
    /// Writes one email to the outbox inside the caller's transaction. Returns its id, or
    /// `None` when `dedup_key` was already used. An address on the suppression list is stored
    /// as `suppressed` and never sent. The workers are woken when the transaction commits.
    pub async fn enqueue(&self, txn: &WriteTxn, out: Outgoing<'_>) -> Result<Option<Uuid>, EmailError> {
        let db = &**txn;
        let to = normalize_address(out.to)?;
        let to_name = out.to_name.map(|n| render::one_line(n, 100)).filter(|n| !n.is_empty());
        let category = out.template.category();
        let unsubscribe = match (category.optional(), out.user_id) {
            (true, Some(uid)) => Some(self.unsubscribe_url(uid, category)),
            _ => None,
        };
        let rendered = self.render(out.template, &out.vars, to_name.as_deref(), unsubscribe.as_deref())?;
        let suppressed = email_suppression::Entity::find_by_id(to.clone()).one(db).await?.is_some();
        let now = Utc::now();
        let id = Uuid::now_v7();
        let row = email_outbox::ActiveModel {
            id: Set(id),
            to_address: Set(to),
            to_name: Set(to_name),
            user_id: Set(out.user_id),
            template: Set(out.template.name().to_string()),
            subject: Set(rendered.subject.clone()),
            payload: Set(serde_json::to_value(&rendered).expect("serialisable")),
            status: Set(if suppressed { status::SUPPRESSED } else { status::QUEUED }.to_string()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(suppressed.then(|| "address is on the suppression list".to_string())),
            locked_until: Set(None),
            lease_id: Set(None),
            dedup_key: Set(out.dedup_key),
            created_at: Set(now),
            sent_at: Set(None),
        };
        // ON CONFLICT DO NOTHING rather than catching the error: on PostgreSQL a failed
        // statement would abort the caller's whole transaction.
        let inserted = email_outbox::Entity::insert(row)
            .on_conflict(OnConflict::column(email_outbox::Column::DedupKey).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        if inserted == 1 {
            self.wake.after_commit(txn);
        }
        Ok((inserted == 1).then_some(id))
    }

    /// Enqueues a template for a user, respecting their preferences (security mail always
    /// goes). The hook for achievements, assessments and digests: call it in the transaction
    /// that records the event. `Ok(None)` means nothing was enqueued (opted out, inactive).
    pub async fn enqueue_for_user(
        &self,
        txn: &WriteTxn,
        user_id: Uuid,
        template: Template,
        vars: Value,
    ) -> Result<Option<Uuid>, EmailError> {
        self.enqueue_for_user_once(txn, user_id, template, vars, None).await
    }

    /// As [`Self::enqueue_for_user`], at most once per `dedup_key`.
    pub async fn enqueue_for_user_once(
        &self,
        txn: &WriteTxn,
        user_id: Uuid,
        template: Template,
        vars: Value,
        dedup_key: Option<String>,
    ) -> Result<Option<Uuid>, EmailError> {
        let db = &**txn;
        let Some(u) = user::Entity::find_by_id(user_id).one(db).await? else {
            return Err(EmailError::NotFound);
        };
        if !u.is_active {
            return Ok(None);
        }
        if !self.preferences_in(db, user_id).await?.allows(template.category()) {
            return Ok(None);
        }
        self.enqueue(
            txn,
            Outgoing {
                to: &u.email,
                // Nothing a registrant typed goes to an address they have not proven.
                to_name: u.email_verified.then_some(u.display_name.as_str()),
                user_id: Some(user_id),
                template,
                vars,
                dedup_key,
            },
        )
        .await
    }

    pub async fn list(&self, status_filter: Option<&str>, page: PageRequest) -> Result<Page<EmailView>, EmailError> {
        let mut q = page.newest_first(email_outbox::Entity::find(), email_outbox::Column::Id);
        if let Some(s) = status_filter {
            if !status::ALL.contains(&s) {
                return Err(FieldErrors::one("status", format!("must be one of {}", status::ALL.join(", "))).into());
            }
            q = q.filter(email_outbox::Column::Status.eq(s));
        }
        let rows = q.all(&self.db.conn).await?;
        Ok(Page::from_rows(rows.into_iter().map(EmailView::from).collect(), page, |v| v.id))
    }

    /// Puts a failed email back in the queue with a fresh attempt budget.
    pub async fn retry(&self, ctx: &RequestContext, admin: &Principal, id: Uuid) -> Result<EmailView, EmailError> {
        let txn = self.db.begin_write().await?;
        let row = email_outbox::Entity::find_by_id(id).one(&*txn).await?.ok_or(EmailError::NotFound)?;
        if row.status != status::FAILED {
            return Err(EmailError::Conflict("only a failed email can be retried"));
        }
        if email_suppression::Entity::find_by_id(row.to_address.clone()).one(&*txn).await?.is_some() {
            return Err(EmailError::Conflict("the address is on the suppression list"));
        }
        let mut am: email_outbox::ActiveModel = row.into();
        am.status = Set(status::QUEUED.into());
        am.attempts = Set(0);
        am.next_attempt_at = Set(Utc::now());
        am.locked_until = Set(None);
        am.lease_id = Set(None);
        let row = am.update(&*txn).await?;
        audit::record(&*txn, ctx, Event::new("email.retry", Some(admin.user_id)).target("email", id)).await?;
        self.wake.after_commit(&txn);
        txn.commit().await?;
        Ok(row.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_line_breaks_are_refused() {
        assert_eq!(normalize_address("A@Example.com").unwrap(), "a@example.com");
        for bad in ["a@example.com\r\nBcc: x@example.com", "a@example.com\n", "a b@example.com", "", "nope"] {
            assert!(normalize_address(bad).is_err(), "{bad:?}");
        }
    }
}
