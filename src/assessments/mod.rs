//! The assessment tool integration: machine clients and their request signatures, assessments
//! started by students and completed by the tool, skill levels and learning paths.
//!
//! Domain code only: the HTTP edge hands in already-read headers and bytes.

pub mod engine;
pub mod paths;

mod clients;
mod model;
mod results;
mod signing;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

pub use self::{
    clients::{ClientCreated, ClientRotated, ClientView, SignedRequest},
    model::*,
    results::{Delivery, payload_hash, validate_results},
    signing::{sha256_hex, sign, signing_key_hex, string_to_sign},
};
use self::{paths::LearningPathView, signing::random_hex};
use crate::{
    catalog::access::teaches,
    entities::{assessment, enums::AssessmentState, user},
    infra::db::Db,
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext, Role},
        facts::{ReactionError, Reactor},
        fields::FieldErrors,
        pagination::{Page, PageRequest},
    },
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
    Validation(#[from] FieldErrors),
    #[error("not found")]
    NotFound,
    /// A machine request that is not correctly signed; the reason is safe to show.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    #[error("conflict: {1}")]
    Conflict(&'static str, String),
    #[error("encoding results")]
    Encoding(#[from] serde_json::Error),
    #[error("database")]
    Db(#[from] DbErr),
    #[error("consequences of results")]
    Reaction(#[from] ReactionError),
}

pub(crate) fn field(f: &str, m: impl Into<String>) -> AssessError {
    FieldErrors::one(f, m).into()
}

pub struct AssessmentService {
    pub db: Db,
    /// Decides what follows completed results (path, notifications, achievements, email).
    pub reactor: Arc<dyn Reactor>,
    pub tool_url: String,
    pub launch_ttl: Duration,
    pub secret_overlap: Duration,
    /// Pending (unfinished, unexpired) assessments a student may hold at once.
    pub max_pending: u32,
    /// Seals the clients' signing keys at rest.
    pub sealer: crate::kernel::sealed::Sealer,
}

impl AssessmentService {
    pub async fn start(&self, ctx: &RequestContext, p: &Principal) -> Result<AssessmentStarted, AssessError> {
        let token = random_hex(32);
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(self.launch_ttl).unwrap_or_default();
        let id = Uuid::now_v7();
        let txn = self.db.begin_write().await?;
        self.check_pending_cap(&*txn, p.user_id).await?;
        assessment::Entity::insert(assessment::ActiveModel {
            id: Set(id),
            user_id: Set(p.user_id),
            status: Set(AssessmentState::Pending),
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

    /// Each start creates a launch token; a student needs one or two, a script would make
    /// thousands. Expired ones do not count: they are finished as far as anyone can tell.
    async fn check_pending_cap<C: ConnectionTrait>(&self, db: &C, user_id: Uuid) -> Result<(), AssessError> {
        let mut owner = user::Entity::find_by_id(user_id);
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            // Serialises one student's starts, so two at once cannot both take the last place;
            // SQLite's writer lock already does.
            owner = sea_orm::QuerySelect::lock_exclusive(owner);
        }
        owner.one(db).await?;
        let pending = assessment::Entity::find()
            .filter(assessment::Column::UserId.eq(user_id))
            .filter(assessment::Column::Status.eq(AssessmentState::Pending))
            .filter(assessment::Column::ExpiresAt.gt(Utc::now()))
            .count(db)
            .await?;
        if pending >= u64::from(self.max_pending) {
            return Err(AssessError::Conflict(
                "too-many-pending-assessments",
                format!(
                    "you already have {pending} assessments waiting for results; finish one or let it expire first"
                ),
            ));
        }
        Ok(())
    }

    pub async fn list_mine(&self, p: &Principal, page: PageRequest) -> Result<Page<AssessmentView>, AssessError> {
        let q = page.oldest_first(
            assessment::Entity::find().filter(assessment::Column::UserId.eq(p.user_id)),
            assessment::Column::Id,
        );
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
            Role::Instructor => teaches(&self.db.conn, p.user_id, student).await?,
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
}
