//! Addresses we must not mail again (bounces and complaints reported by SES), and the shared
//! secret of the webhook that reports them.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};
use serde_json::json;

use super::{EmailError, EmailService, normalize_address, status};
use crate::{
    entities::{email_outbox, email_suppression},
    kernel::{
        audit::{self, Event},
        context::RequestContext,
    },
};

impl EmailService {
    /// The SES webhook's shared secret, compared in constant time. No secret configured means
    /// the webhook is off, so nobody can suppress addresses through it.
    pub fn check_webhook_secret(&self, presented: Option<&str>) -> Result<(), EmailError> {
        use subtle::ConstantTimeEq;
        let Some(expected) = &self.settings.ses_webhook_secret else {
            return Err(EmailError::NotFound);
        };
        match presented {
            Some(p) if bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            _ => Err(EmailError::Unauthorized),
        }
    }

    /// Stops all mail to an address: future enqueues become `suppressed`, and so does mail
    /// still waiting in the outbox.
    pub async fn suppress(&self, ctx: &RequestContext, address: &str, reason: &str) -> Result<(), EmailError> {
        let address = normalize_address(address)?;
        let txn = self.db.begin_write().await?;
        email_suppression::Entity::insert(email_suppression::ActiveModel {
            address: Set(address.clone()),
            reason: Set(reason.chars().take(32).collect()),
            created_at: Set(Utc::now()),
        })
        .on_conflict(OnConflict::column(email_suppression::Column::Address).do_nothing().to_owned())
        .exec_without_returning(&*txn)
        .await?;
        let held = email_outbox::Entity::update_many()
            .col_expr(email_outbox::Column::Status, Expr::value(status::SUPPRESSED))
            .col_expr(email_outbox::Column::LastError, Expr::value(Some(format!("suppressed: {reason}"))))
            .filter(email_outbox::Column::ToAddress.eq(&address))
            .filter(email_outbox::Column::Status.eq(status::QUEUED))
            .exec(&*txn)
            .await?
            .rows_affected;
        audit::record(
            &*txn,
            ctx,
            Event::new("email.suppress", None)
                .target("email_address", &address)
                .details(json!({"reason": reason, "queued_mail_held": held})),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }
}
