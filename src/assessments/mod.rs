//! The assessment tool integration: machine clients and their request signatures, assessments
//! started by students and completed by the tool, skill levels and learning paths.
//!
//! Domain code only: the HTTP edge hands in already-read headers and bytes.

pub mod engine;
pub mod paths;

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use uuid::Uuid;

use self::{engine::LearningRules, paths::LearningPathView};
use crate::{
    audit::{self, Event},
    context::{Principal, RequestContext, Role},
    entities::{
        assessment, course, enrollment, integration_client, integration_nonce, notification, skill_level, user,
    },
    infra::db::{Db, is_unique_violation},
    notifications,
    pagination::{Page, PageRequest},
};

/// How far a request's timestamp may be from the server's clock, either way.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;
/// How far in the future `completed_at` may be (clock skew between the tool and us).
pub const COMPLETED_AT_SKEW_SECS: i64 = 60;
/// Largest `details` object, serialized. Larger is a 422; a body over the integration body
/// limit (256 KiB) is a 413 before anything is parsed.
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;
pub const MAX_SKILLS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    #[error("validation failed")]
    Validation(Vec<(String, String)>),
    #[error("not found")]
    NotFound,
    /// A machine request that is not correctly signed; the reason is safe to show.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    #[error("conflict: {1}")]
    Conflict(&'static str, String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbErr> for AssessError {
    fn from(e: DbErr) -> Self {
        AssessError::Internal(e.to_string())
    }
}

fn field(f: &str, m: impl Into<String>) -> AssessError {
    AssessError::Validation(vec![(f.to_string(), m.into())])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The HMAC key of a client secret is its SHA-256; the server keeps only that (see README,
/// "Assessment tool integration", for why and what it implies).
pub fn signing_key_hex(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// `timestamp \n nonce \n METHOD \n path \n sha256hex(body)`.
pub fn string_to_sign(timestamp: &str, nonce: &str, method: &str, path: &str, body: &[u8]) -> String {
    format!("{timestamp}\n{nonce}\n{}\n{path}\n{}", method.to_ascii_uppercase(), sha256_hex(body))
}

/// The MAC of `message` under a stored key, or nothing when the stored key is not a 32-byte
/// hex value: a damaged row must never turn into an empty (forgeable) key.
pub fn sign(key_hex: &str, message: &str) -> Option<Vec<u8>> {
    let key = hex::decode(key_hex).ok().filter(|k| k.len() == 32)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
    mac.update(message.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

fn mac_matches(key_hex: &str, message: &str, given: &[u8]) -> bool {
    sign(key_hex, message).is_some_and(|m| bool::from(m.ct_eq(given)))
}

// ---------------------------------------------------------------------------------------------
// Views and inputs

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

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentStatus {
    Pending,
    Completed,
    Expired,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssessmentStarted {
    pub id: Uuid,
    pub status: AssessmentStatus,
    pub launch_url: String,
    /// Also in `launch_url`. Single-use for one student; only its hash is stored.
    pub launch_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillScore {
    /// `[a-z0-9_-]{1,64}`.
    pub skill: String,
    /// 0 to 100.
    pub score: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssessmentView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: AssessmentStatus,
    pub overall_score: Option<f64>,
    pub skills: Vec<SkillScore>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub external_id: Option<String>,
}

impl AssessmentView {
    fn of(a: &assessment::Model, now: DateTime<Utc>) -> Self {
        // Expiry is computed on read: a pending row past its deadline *is* expired, whether or
        // not anything has written that down.
        let status = match a.status.as_str() {
            "completed" => AssessmentStatus::Completed,
            _ if a.expires_at <= now => AssessmentStatus::Expired,
            _ => AssessmentStatus::Pending,
        };
        AssessmentView {
            id: a.id,
            user_id: a.user_id,
            status,
            overall_score: a.overall_score,
            skills: a.skills.clone().and_then(|s| serde_json::from_value(s).ok()).unwrap_or_default(),
            completed_at: a.completed_at,
            created_at: a.created_at,
            expires_at: a.expires_at,
            external_id: a.external_id.clone(),
        }
    }
}

/// What the tool posts. Exactly the fields of API.md; unknown fields are refused.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsInput {
    pub assessment_id: Option<Uuid>,
    pub launch_token: Option<String>,
    /// The tool's id for this result, 1 to 128 printable characters; the idempotency key.
    pub external_id: String,
    pub completed_at: DateTime<Utc>,
    pub overall_score: f64,
    pub skills: Vec<SkillScore>,
    /// Anything the tool wants kept (answers, timings), at most 64 KiB serialized.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LaunchInfo {
    pub assessment_id: Uuid,
    pub user_id: Uuid,
    pub display_name: String,
    pub status: AssessmentStatus,
    pub expires_at: DateTime<Utc>,
}

/// The outcome of a results delivery: the assessment, whether this delivery completed it, and
/// the notifications to publish once committed.
pub struct Delivery {
    pub created: bool,
    pub assessment: AssessmentView,
    pub notifications: Vec<notification::Model>,
    /// Live events of achievements the results earned; publish after commit.
    pub achievements: crate::notifications::Outbox,
}

/// A JSON value with object keys sorted at every level, so that two bodies that mean the same
/// thing hash the same whatever their key order or whitespace.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = serde_json::Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

pub fn payload_hash(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(sha256_hex(&serde_json::to_vec(&canonical(&v)).ok()?))
}

/// Every rule of API.md and the issue, checked before anything is read or written.
pub fn validate_results(r: &ResultsInput, now: DateTime<Utc>) -> Result<(), AssessError> {
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut e = |f: &str, m: &str| errors.push((f.to_string(), m.to_string()));
    match (&r.assessment_id, &r.launch_token) {
        (None, None) => e("assessment_id", "give assessment_id or launch_token"),
        (_, Some(t)) if t.is_empty() || t.len() > 128 => e("launch_token", "must be 1 to 128 characters"),
        _ => {}
    }
    let n = r.external_id.chars().count();
    if n == 0 || n > 128 || r.external_id.chars().any(char::is_control) {
        e("external_id", "must be 1 to 128 printable characters");
    }
    if r.completed_at > now + chrono::Duration::seconds(COMPLETED_AT_SKEW_SECS) {
        e("completed_at", "must not be in the future");
    }
    if !r.overall_score.is_finite() || !(0.0..=100.0).contains(&r.overall_score) {
        e("overall_score", "must be between 0 and 100");
    }
    if r.skills.is_empty() {
        e("skills", "must list at least one skill");
    }
    if r.skills.len() > MAX_SKILLS {
        e("skills", "must list at most 100 skills");
    }
    let mut seen = HashSet::new();
    for (i, s) in r.skills.iter().enumerate() {
        if !engine::is_skill_code(&s.skill) {
            e(&format!("skills[{i}].skill"), "must match [a-z0-9_-]{1,64}");
        } else if !seen.insert(s.skill.as_str()) {
            e(&format!("skills[{i}].skill"), "is listed twice");
        }
        if !s.score.is_finite() || !(0.0..=100.0).contains(&s.score) {
            e(&format!("skills[{i}].score"), "must be between 0 and 100");
        }
    }
    if let Some(d) = &r.details
        && serde_json::to_vec(d).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_DETAILS_BYTES
    {
        e("details", "must be at most 65536 bytes serialized");
    }
    if errors.is_empty() { Ok(()) } else { Err(AssessError::Validation(errors)) }
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

pub struct AssessmentService {
    pub db: Db,
    /// Results are also announced by email, queued in the same transaction.
    pub email: crate::email::EmailService,
    pub rules: Arc<LearningRules>,
    pub tool_url: String,
    pub launch_ttl: Duration,
    pub secret_overlap: Duration,
}

impl AssessmentService {
    // -----------------------------------------------------------------------------------------
    // Machine clients

    pub async fn create_client(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        name: &str,
    ) -> Result<ClientCreated, AssessError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(field("name", "must be 1 to 100 printable characters"));
        }
        let secret = random_hex(32);
        let now = Utc::now();
        let id = Uuid::now_v7();
        let txn = self.db.begin_write().await?;
        integration_client::Entity::insert(integration_client::ActiveModel {
            id: Set(id),
            name: Set(name.to_string()),
            key_hash: Set(signing_key_hex(&secret)),
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

    pub async fn list_clients(&self, page: PageRequest) -> Result<Page<ClientView>, AssessError> {
        let mut q =
            integration_client::Entity::find().order_by_asc(integration_client::Column::Id).limit(page.limit + 1);
        if let Some(after) = page.after {
            q = q.filter(integration_client::Column::Id.gt(after));
        }
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
    pub async fn rotate_client(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        id: Uuid,
    ) -> Result<ClientRotated, AssessError> {
        let txn = self.db.begin_write().await?;
        let c = integration_client::Entity::find_by_id(id).one(&*txn).await?.ok_or(AssessError::NotFound)?;
        if c.revoked_at.is_some() {
            return Err(AssessError::NotFound);
        }
        let secret = random_hex(32);
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.secret_overlap).unwrap_or_default();
        integration_client::Entity::update_many()
            .col_expr(integration_client::Column::KeyHash, Expr::value(signing_key_hex(&secret)))
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
        let mut ok = mac_matches(&c.key_hash, &message, &given);
        if !ok
            && let (Some(prev), Some(until)) = (&c.previous_key_hash, c.previous_valid_until)
            && until > now
        {
            ok = mac_matches(prev, &message, &given);
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

    // -----------------------------------------------------------------------------------------
    // Assessments

    pub async fn start(&self, ctx: &RequestContext, p: &Principal) -> Result<AssessmentStarted, AssessError> {
        let token = random_hex(32);
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(self.launch_ttl).unwrap_or_default();
        let id = Uuid::now_v7();
        let txn = self.db.begin_write().await?;
        assessment::Entity::insert(assessment::ActiveModel {
            id: Set(id),
            user_id: Set(p.user_id),
            status: Set("pending".into()),
            launch_token_hash: Set(sha256_hex(token.as_bytes())),
            expires_at: Set(expires_at),
            created_at: Set(now),
            completed_at: Set(None),
            received_at: Set(None),
            client_id: Set(None),
            external_id: Set(None),
            payload_hash: Set(None),
            overall_score: Set(None),
            skills: Set(None),
            details: Set(None),
            raw_payload: Set(None),
        })
        .exec_without_returning(&*txn)
        .await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("assessment.start", Some(p.user_id))
                .target("assessment", id)
                .details(json!({"expires_at": expires_at})),
        )
        .await?;
        txn.commit().await?;
        Ok(AssessmentStarted {
            id,
            status: AssessmentStatus::Pending,
            launch_url: format!("{}?launch_token={token}", self.tool_url),
            launch_token: token,
            expires_at,
        })
    }

    pub async fn list_mine(&self, p: &Principal, page: PageRequest) -> Result<Page<AssessmentView>, AssessError> {
        let mut q = assessment::Entity::find()
            .filter(assessment::Column::UserId.eq(p.user_id))
            .order_by_asc(assessment::Column::Id)
            .limit(page.limit + 1);
        if let Some(after) = page.after {
            q = q.filter(assessment::Column::Id.gt(after));
        }
        let now = Utc::now();
        let rows = q.all(&self.db.conn).await?;
        Ok(Page::from_rows(rows.iter().map(|a| AssessmentView::of(a, now)).collect(), page, |a| a.id))
    }

    /// Whether `p` may read `student`'s assessments and path: the student, admins, and
    /// instructors of a course the student is enrolled in.
    async fn may_read_student(&self, p: &Principal, student: Uuid) -> Result<bool, DbErr> {
        Ok(match p.role {
            _ if p.user_id == student => true,
            Role::Admin => true,
            Role::Instructor => {
                enrollment::Entity::find()
                    .filter(enrollment::Column::UserId.eq(student))
                    .filter(
                        enrollment::Column::CourseId.in_subquery(
                            Query::select()
                                .column(course::Column::Id)
                                .from(course::Entity)
                                .and_where(course::Column::InstructorId.eq(p.user_id))
                                .to_owned(),
                        ),
                    )
                    .count(&self.db.conn)
                    .await?
                    > 0
            }
            Role::Student => false,
        })
    }

    pub async fn get(&self, p: &Principal, id: Uuid) -> Result<AssessmentView, AssessError> {
        let a = assessment::Entity::find_by_id(id).one(&self.db.conn).await?.ok_or(AssessError::NotFound)?;
        if !self.may_read_student(p, a.user_id).await? {
            return Err(AssessError::NotFound);
        }
        Ok(AssessmentView::of(&a, Utc::now()))
    }

    pub async fn learning_path(&self, p: &Principal, student: Uuid) -> Result<LearningPathView, AssessError> {
        let exists = user::Entity::find_by_id(student).count(&self.db.conn).await? > 0;
        if !exists || !self.may_read_student(p, student).await? {
            return Err(AssessError::NotFound);
        }
        Ok(paths::load(&self.db.conn, student).await?)
    }

    async fn find_by_token<C: ConnectionTrait>(db: &C, token: &str) -> Result<Option<assessment::Model>, DbErr> {
        assessment::Entity::find()
            .filter(assessment::Column::LaunchTokenHash.eq(sha256_hex(token.as_bytes())))
            .one(db)
            .await
    }

    /// What the tool learns from a launch token: who is being assessed, and until when.
    pub async fn launch_info(&self, token: &str) -> Result<LaunchInfo, AssessError> {
        if token.is_empty() || token.len() > 128 {
            return Err(field("launch_token", "must be 1 to 128 characters"));
        }
        let a = Self::find_by_token(&self.db.conn, token).await?.ok_or(AssessError::NotFound)?;
        let u = user::Entity::find_by_id(a.user_id).one(&self.db.conn).await?.ok_or(AssessError::NotFound)?;
        let v = AssessmentView::of(&a, Utc::now());
        Ok(LaunchInfo {
            assessment_id: a.id,
            user_id: a.user_id,
            display_name: u.display_name,
            status: v.status,
            expires_at: a.expires_at,
        })
    }

    /// A repeat of a delivery already applied: 200 if it is the same body, 409 otherwise.
    fn repeat(a: &assessment::Model, hash: &str, now: DateTime<Utc>) -> Result<Delivery, AssessError> {
        if a.payload_hash.as_deref() == Some(hash) {
            Ok(Delivery {
                created: false,
                assessment: AssessmentView::of(a, now),
                notifications: vec![],
                achievements: Default::default(),
            })
        } else {
            Err(AssessError::Conflict(
                "external-id-conflict",
                "this external_id was already delivered with a different body".into(),
            ))
        }
    }

    /// Applies the tool's results in one transaction: the assessment completes, skill levels
    /// and the learning path update, notifications and audit rows are written. Exactly one of
    /// any number of concurrent deliveries completes an assessment: the completing UPDATE is
    /// conditional on `status = 'pending'`, and (client, external_id) is unique.
    pub async fn submit_results(
        &self,
        ctx: &RequestContext,
        client_id: Uuid,
        input: ResultsInput,
        raw_body: &[u8],
    ) -> Result<Delivery, AssessError> {
        let now = Utc::now();
        let outcome = match validate_results(&input, now) {
            Ok(()) => self.apply_in_txn(ctx, client_id, &input, raw_body, now).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome
            && !matches!(e, AssessError::Internal(_))
        {
            self.record_rejection(ctx, client_id, &input, e).await?;
        }
        outcome
    }

    async fn apply_in_txn(
        &self,
        ctx: &RequestContext,
        client_id: Uuid,
        input: &ResultsInput,
        raw_body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Delivery, AssessError> {
        let hash = payload_hash(raw_body).ok_or_else(|| AssessError::Internal("unhashable body".into()))?;
        let raw = String::from_utf8_lossy(raw_body).into_owned();
        let txn = self.db.begin_write().await?;
        // Every error path rolls back explicitly, before the writer lock is released.
        match self.apply_results(&txn, ctx, client_id, input, &hash, raw, now).await {
            Ok(d) => {
                txn.commit().await?;
                self.email.notify_committed();
                Ok(d)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }

    /// A refused delivery changes nothing, but the trail still shows that the client called and
    /// why it was refused (never the body: it is the tool's data, not ours to copy around).
    async fn record_rejection(
        &self,
        ctx: &RequestContext,
        client_id: Uuid,
        input: &ResultsInput,
        e: &AssessError,
    ) -> Result<(), AssessError> {
        let reason = match e {
            AssessError::Validation(v) => {
                json!({"kind": "validation", "fields": v.iter().map(|(f, _)| f).collect::<Vec<_>>()})
            }
            AssessError::NotFound => json!({"kind": "not_found"}),
            AssessError::Conflict(slug, _) => json!({"kind": slug}),
            AssessError::Unauthenticated(_) | AssessError::Internal(_) => json!({"kind": "other"}),
        };
        let mut ev = Event::new("assessment.results_rejected", Some(client_id)).details(json!({
            "actor_type": "integration_client",
            "client_id": client_id,
            "external_id": input.external_id.chars().take(128).collect::<String>(),
            "reason": reason,
        }));
        if let Some(id) = input.assessment_id {
            ev = ev.target("assessment", id);
        }
        let txn = self.db.begin_write().await?;
        audit::record(&*txn, ctx, ev).await?;
        txn.commit().await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_results(
        &self,
        txn: &crate::infra::db::WriteTxn,
        ctx: &RequestContext,
        client_id: Uuid,
        input: &ResultsInput,
        hash: &str,
        raw: String,
        now: DateTime<Utc>,
    ) -> Result<Delivery, AssessError> {
        let txn = &**txn;
        let previous = assessment::Entity::find()
            .filter(assessment::Column::ClientId.eq(client_id))
            .filter(assessment::Column::ExternalId.eq(input.external_id.as_str()))
            .one(txn)
            .await?;
        if let Some(a) = previous {
            let d = Self::repeat(&a, hash, now)?;
            audit::record(txn, ctx, delivery_event("assessment.results_repeat", client_id, &a, &input.external_id))
                .await?;
            return Ok(d);
        }

        let by_id = match input.assessment_id {
            Some(id) => Some(assessment::Entity::find_by_id(id).one(txn).await?.ok_or(AssessError::NotFound)?),
            None => None,
        };
        let by_token = match &input.launch_token {
            Some(t) => Some(Self::find_by_token(txn, t).await?.ok_or(AssessError::NotFound)?),
            None => None,
        };
        let a = match (by_id, by_token) {
            (Some(a), Some(b)) if a.id != b.id => {
                return Err(field("launch_token", "belongs to another assessment than assessment_id"));
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(field("assessment_id", "give assessment_id or launch_token")),
        };

        let skills_json = serde_json::to_value(&input.skills).map_err(|e| AssessError::Internal(e.to_string()))?;
        let completed = assessment::Entity::update_many()
            .col_expr(assessment::Column::Status, Expr::value("completed"))
            .col_expr(assessment::Column::CompletedAt, Expr::value(Some(input.completed_at)))
            .col_expr(assessment::Column::ReceivedAt, Expr::value(Some(now)))
            .col_expr(assessment::Column::ClientId, Expr::value(Some(client_id)))
            .col_expr(assessment::Column::ExternalId, Expr::value(Some(input.external_id.clone())))
            .col_expr(assessment::Column::PayloadHash, Expr::value(Some(hash.to_string())))
            .col_expr(assessment::Column::OverallScore, Expr::value(Some(input.overall_score)))
            .col_expr(assessment::Column::Skills, Expr::value(Some(skills_json)))
            .col_expr(assessment::Column::Details, Expr::value(input.details.clone()))
            .col_expr(assessment::Column::RawPayload, Expr::value(Some(raw)))
            .filter(assessment::Column::Id.eq(a.id))
            .filter(assessment::Column::Status.eq("pending"))
            .filter(assessment::Column::ExpiresAt.gt(now))
            .exec(txn)
            .await;
        let completed = match completed {
            Ok(r) => r.rows_affected == 1,
            // Another delivery used this external_id for a different assessment first.
            Err(e) if is_unique_violation(&e) => {
                return Err(AssessError::Conflict(
                    "external-id-conflict",
                    "this external_id was already delivered with a different body".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if !completed {
            // Re-read: on PostgreSQL this statement sees whatever a concurrent delivery committed.
            let a = assessment::Entity::find_by_id(a.id).one(txn).await?.ok_or(AssessError::NotFound)?;
            if a.client_id == Some(client_id) && a.external_id.as_deref() == Some(input.external_id.as_str()) {
                let d = Self::repeat(&a, hash, now)?;
                audit::record(txn, ctx, delivery_event("assessment.results_repeat", client_id, &a, &input.external_id))
                    .await?;
                return Ok(d);
            }
            return Err(if a.status == "completed" {
                AssessError::Conflict("assessment-completed", "this assessment already has results".into())
            } else {
                AssessError::Conflict("assessment-expired", "this assessment expired before results arrived".into())
            });
        }

        for s in &input.skills {
            skill_level::Entity::insert(skill_level::ActiveModel {
                user_id: Set(a.user_id),
                skill: Set(s.skill.clone()),
                score: Set(s.score),
                assessment_id: Set(a.id),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([skill_level::Column::UserId, skill_level::Column::Skill])
                    .update_columns([
                        skill_level::Column::Score,
                        skill_level::Column::AssessmentId,
                        skill_level::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        }
        let path = paths::recompute(txn, &self.rules, a.user_id, Some(a.id), now).await?;

        let score = engine::fmt_score(input.overall_score);
        let n1 = notifications::create(
            txn,
            a.user_id,
            "assessment.completed",
            "Your assessment results are in",
            &format!("Your overall score was {score}/100."),
            json!({"assessment_id": a.id, "overall_score": input.overall_score}),
        )
        .await?;
        let n2 = notifications::create(
            txn,
            a.user_id,
            "learning_path.updated",
            "Your learning path is ready",
            &format!("{} recommended steps, based on your assessment.", path.steps.len()),
            json!({"assessment_id": a.id, "steps": path.steps.len()}),
        )
        .await?;
        // A high score may earn an achievement (its rule and threshold are data).
        let achievements = crate::achievements::on_assessment_score(txn, ctx, a.user_id, input.overall_score).await?;
        self.email.enqueue_awards(txn, &achievements).await?;
        // The results email, once per assessment; the student may have switched it off.
        self.email
            .enqueue_for_user_once(
                txn,
                a.user_id,
                crate::email::Template::AssessmentResults,
                json!({"overall_score": score, "path_url": self.email.link("/learning-path")}),
                Some(format!("assessment-results:{}", a.id)),
            )
            .await
            .map_err(|e| AssessError::Internal(e.to_string()))?;
        let mut ev = delivery_event("assessment.complete", client_id, &a, &input.external_id);
        ev.details["overall_score"] = json!(input.overall_score);
        ev.details["skills"] = json!(input.skills.len());
        audit::record(txn, ctx, ev).await?;
        audit::record(
            txn,
            ctx,
            Event::new("learning_path.update", Some(client_id)).target("user", a.user_id).details(json!({
                "actor_type": "integration_client",
                "client_id": client_id,
                "assessment_id": a.id,
                "steps": path.steps.len(),
            })),
        )
        .await?;
        let a = assessment::Entity::find_by_id(a.id).one(txn).await?.ok_or(AssessError::NotFound)?;
        Ok(Delivery {
            created: true,
            assessment: AssessmentView::of(&a, now),
            notifications: vec![n1, n2],
            achievements,
        })
    }
}

/// Machine deliveries are audited with the client's id as the actor (the audit trail's actor
/// has no foreign key, so a client id is as good as a user id there) and in `details`.
fn delivery_event<'a>(action: &'a str, client_id: Uuid, a: &assessment::Model, external_id: &str) -> Event<'a> {
    Event::new(action, Some(client_id)).target("assessment", a.id).details(json!({
        "actor_type": "integration_client",
        "client_id": client_id,
        "external_id": external_id,
        "user_id": a.user_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_hash_ignores_key_order_and_whitespace() {
        let a = payload_hash(br#"{"a":1,"b":{"y":2,"x":[1,2]}}"#).unwrap();
        let b = payload_hash(b"{ \"b\": {\"x\": [1, 2], \"y\": 2}, \"a\": 1 }").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, payload_hash(br#"{"a":2,"b":{"y":2,"x":[1,2]}}"#).unwrap());
    }

    #[test]
    fn signatures_match_the_documented_scheme() {
        // The same vector is in clients/python/test_client.py.
        let key = signing_key_hex("s3cret");
        let msg = string_to_sign("1700000000", "abcdefghijklmnop", "post", "/api/v1/x", b"{}");
        assert_eq!(
            msg,
            "1700000000\nabcdefghijklmnop\nPOST\n/api/v1/x\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            hex::encode(sign(&key, &msg).unwrap()),
            "e324b0a5333146d30b40965a24ad6e1707a87ee4c3c376ff4a6782f771cdadfb"
        );
        assert!(sign("not hex", &msg).is_none() && sign("", &msg).is_none(), "no empty key, ever");
    }
}
