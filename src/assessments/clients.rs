//! Machine clients (the assessment tool): credentials an admin creates, rotates and revokes,
//! and the verification of every signed request.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    AssessError, AssessmentService, SIGNATURE_WINDOW_SECS, field,
    signing::{legacy_key, mac_matches, random_hex, signing_key, string_to_sign},
};
use crate::{
    entities::{integration_client, integration_nonce},
    kernel::sealed::Stored,
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
        input::Title,
        pagination::{Page, PageRequest},
    },
};

/// Longest name an admin may give a machine client.
const CLIENT_NAME_MAX: usize = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientCreated {
    pub client_id: Uuid,
    pub name: String,
    /// Shown once; only its hash is stored.
    pub client_secret: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientRotated {
    pub client_id: Uuid,
    /// The new secret, shown once.
    pub client_secret: String,
    /// Until then, the previous secret is still accepted.
    pub previous_secret_valid_until: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<integration_client::Model> for ClientView {
    fn from(c: integration_client::Model) -> Self {
        ClientView {
            id: c.id,
            name: c.name,
            created_at: c.created_at,
            rotated_at: c.rotated_at,
            previous_secret_valid_until: c.previous_valid_until,
            revoked_at: c.revoked_at,
        }
    }
}

/// The headers of a signed machine request, as received.
pub struct SignedRequest<'a> {
    pub client_id: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
}

impl AssessmentService {
    pub async fn create_client(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        name: &str,
    ) -> Result<ClientCreated, AssessError> {
        let name = Title::parse(name, CLIENT_NAME_MAX).map_err(|e| field("name", e.to_string()))?;
        let name = name.as_str();
        let secret = random_hex(32);
        let now = Utc::now();
        let id = Uuid::now_v7();
        let txn = self.db.begin_write().await?;
        integration_client::Entity::insert(integration_client::ActiveModel {
            id: Set(id),
            name: Set(name.to_string()),
            key_hash: Set(self.sealer.seal(&signing_key(&secret), &id.to_string())),
            previous_key_hash: Set(None),
            previous_valid_until: Set(None),
            created_by: Set(Some(admin.user_id)),
            created_at: Set(now),
            rotated_at: Set(None),
            revoked_at: Set(None),
        })
        .exec_without_returning(&*txn)
        .await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("integration_client.create", Some(admin.user_id))
                .target("integration_client", id)
                .details(json!({"name": name})),
        )
        .await?;
        txn.commit().await?;
        Ok(ClientCreated { client_id: id, name: name.to_string(), client_secret: secret, created_at: now })
    }

    pub async fn client(&self, id: Uuid) -> Result<ClientView, AssessError> {
        Ok(integration_client::Entity::find_by_id(id).one(&self.db.conn).await?.ok_or(AssessError::NotFound)?.into())
    }

    pub async fn list_clients(&self, page: PageRequest) -> Result<Page<ClientView>, AssessError> {
        let q = page.oldest_first(integration_client::Entity::find(), integration_client::Column::Id);
        let rows = q.all(&self.db.conn).await?;
        Ok(Page::from_rows(rows.into_iter().map(ClientView::from).collect(), page, |c| c.id))
    }

    /// Revoking is immediate and final; revoking twice is the same as once.
    pub async fn revoke_client(&self, ctx: &RequestContext, admin: &Principal, id: Uuid) -> Result<(), AssessError> {
        let txn = self.db.begin_write().await?;
        let c = integration_client::Entity::find_by_id(id).one(&*txn).await?.ok_or(AssessError::NotFound)?;
        if c.revoked_at.is_none() {
            integration_client::Entity::update_many()
                .col_expr(integration_client::Column::RevokedAt, Expr::value(Some(Utc::now())))
                .filter(integration_client::Column::Id.eq(id))
                .exec(&*txn)
                .await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("integration_client.revoke", Some(admin.user_id)).target("integration_client", id),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// A new secret; the current one keeps working for the configured overlap so the tool can
    /// be redeployed without a failed delivery. A second rotation within the overlap ends the
    /// older secret at once (only one previous secret is kept).
    ///
    /// `seen_rotated_at`, when given, is the rotation time the caller last saw (`None` for
    /// never): a form sent twice then rotates once, instead of ending the secret the first
    /// answer showed.
    pub async fn rotate_client(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        id: Uuid,
        seen_rotated_at: Option<Option<DateTime<Utc>>>,
    ) -> Result<ClientRotated, AssessError> {
        let txn = self.db.begin_write().await?;
        let c = integration_client::Entity::find_by_id(id).one(&*txn).await?.ok_or(AssessError::NotFound)?;
        if c.revoked_at.is_some() {
            return Err(AssessError::NotFound);
        }
        let micros = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros());
        if let Some(seen) = seen_rotated_at
            && micros(seen) != micros(c.rotated_at)
        {
            return Err(AssessError::Conflict(
                "already-rotated",
                "the secret was rotated since this page was shown; reload the list".into(),
            ));
        }
        let secret = random_hex(32);
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.secret_overlap).unwrap_or_default();
        integration_client::Entity::update_many()
            .col_expr(
                integration_client::Column::KeyHash,
                Expr::value(self.sealer.seal(&signing_key(&secret), &id.to_string())),
            )
            .col_expr(integration_client::Column::PreviousKeyHash, Expr::value(Some(c.key_hash.clone())))
            .col_expr(integration_client::Column::PreviousValidUntil, Expr::value(Some(until)))
            .col_expr(integration_client::Column::RotatedAt, Expr::value(Some(now)))
            .filter(integration_client::Column::Id.eq(id))
            .exec(&*txn)
            .await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("integration_client.rotate", Some(admin.user_id))
                .target("integration_client", id)
                .details(json!({"previous_secret_valid_until": until})),
        )
        .await?;
        txn.commit().await?;
        Ok(ClientRotated { client_id: id, client_secret: secret, previous_secret_valid_until: until })
    }

    /// Seals every stored signing key that is not sealed under the current server key: rows
    /// written before keys were sealed, and rows sealed under a key since rotated. Run at start
    /// by every instance; each update is conditional on the value it replaces, so instances
    /// racing at start write each row once. Returns how many values were sealed again.
    pub async fn reseal_client_keys(&self) -> Result<usize, AssessError> {
        let mut resealed = 0;
        for c in integration_client::Entity::find().all(&self.db.conn).await? {
            let row = c.id.to_string();
            let columns = [
                (integration_client::Column::KeyHash, Some(c.key_hash.clone())),
                (integration_client::Column::PreviousKeyHash, c.previous_key_hash.clone()),
            ];
            for (column, stored) in columns {
                let Some(stored) = stored else { continue };
                match self.sealer.classify(&stored, &row, legacy_key) {
                    Stored::Current => {}
                    Stored::Unreadable => {
                        tracing::error!(client = %c.id, "a stored signing key does not open with CIFIX_SECRETS_KEY or CIFIX_SECRETS_PREVIOUS_KEYS");
                    }
                    Stored::Stale => {
                        let key = self.sealer.open(&stored, &row, legacy_key).unwrap_or_default();
                        let txn = self.db.begin_write().await?;
                        let done = integration_client::Entity::update_many()
                            .col_expr(column, Expr::value(self.sealer.seal(&key, &row)))
                            .filter(integration_client::Column::Id.eq(c.id))
                            .filter(column.eq(stored))
                            .exec(&*txn)
                            .await?;
                        txn.commit().await?;
                        resealed += done.rows_affected as usize;
                    }
                }
            }
        }
        Ok(resealed)
    }

    /// Verifies a signed machine request and spends its nonce. Returns the client's id.
    pub async fn verify(&self, r: SignedRequest<'_>) -> Result<Uuid, AssessError> {
        const BAD: AssessError = AssessError::Unauthenticated("the request signature is invalid");
        let now = Utc::now();
        let ts: i64 = r.timestamp.parse().map_err(|_| AssessError::Unauthenticated("X-Cifix-Timestamp is invalid"))?;
        if (now.timestamp() - ts).abs() > SIGNATURE_WINDOW_SECS {
            return Err(AssessError::Unauthenticated("the request timestamp is outside the allowed window"));
        }
        if r.nonce.len() < 16
            || r.nonce.len() > 64
            || !r.nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AssessError::Unauthenticated("X-Cifix-Nonce must be 16 to 64 characters of [A-Za-z0-9_-]"));
        }
        let given =
            r.signature.strip_prefix("v1=").and_then(|h| hex::decode(h).ok()).filter(|b| b.len() == 32).ok_or(BAD)?;
        let client_id = Uuid::parse_str(r.client_id).map_err(|_| BAD)?;
        let c = integration_client::Entity::find_by_id(client_id).one(&self.db.conn).await?.ok_or(BAD)?;
        if c.revoked_at.is_some() {
            return Err(BAD);
        }
        let message = string_to_sign(r.timestamp, r.nonce, r.method, r.path, r.body);
        let row = client_id.to_string();
        let open = |stored: &str| {
            let key = self.sealer.open(stored, &row, legacy_key);
            if key.is_none() {
                tracing::error!(client = %client_id, "a client's signing key does not open: check CIFIX_SECRETS_KEY");
            }
            key.unwrap_or_default()
        };
        let mut ok = mac_matches(&open(&c.key_hash), &message, &given);
        if !ok
            && let (Some(prev), Some(until)) = (&c.previous_key_hash, c.previous_valid_until)
            && until > now
        {
            ok = mac_matches(&open(prev), &message, &given);
        }
        if !ok {
            return Err(BAD);
        }
        // The nonce is spent only after the signature checks out, so nobody can burn a client's
        // nonces. The primary key makes a replay fail even when both copies race.
        let txn = self.db.begin_write().await?;
        let cutoff = now - chrono::Duration::seconds(2 * SIGNATURE_WINDOW_SECS);
        integration_nonce::Entity::delete_many()
            .filter(integration_nonce::Column::ClientId.eq(client_id))
            .filter(integration_nonce::Column::SeenAt.lt(cutoff))
            .exec(&*txn)
            .await?;
        let inserted = integration_nonce::Entity::insert(integration_nonce::ActiveModel {
            client_id: Set(client_id),
            nonce: Set(r.nonce.to_string()),
            seen_at: Set(now),
        })
        .on_conflict_do_nothing_on([integration_nonce::Column::ClientId, integration_nonce::Column::Nonce])
        .exec_without_returning(&*txn)
        .await?;
        // Committed either way (the cleanup is worth keeping), and never left to a drop: see
        // `WriteTxn::rollback`.
        txn.commit().await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            return Err(AssessError::Unauthenticated("this nonce was already used (replayed request)"));
        }
        Ok(client_id)
    }
}
