//! What the assessments API takes and returns.

use crate::kernel::input::schema;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::entities::{assessment, enums::AssessmentState};

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
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub skill: String,
    /// 0 to 100.
    #[schema(minimum = 0.0, maximum = 100.0)]
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
    pub(super) fn of(a: &assessment::Model, now: DateTime<Utc>) -> Self {
        // Expiry is computed on read: a pending row past its deadline *is* expired, whether or
        // not anything has written that down.
        let status = match a.status {
            AssessmentState::Completed => AssessmentStatus::Completed,
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
    #[schema(min_length = 1, max_length = 128)]
    pub launch_token: Option<String>,
    /// The tool's id for this result, 1 to 128 printable characters; the idempotency key.
    #[schema(schema_with = schema::client_key::<128>)]
    pub external_id: String,
    pub completed_at: DateTime<Utc>,
    #[schema(minimum = 0.0, maximum = 100.0)]
    pub overall_score: f64,
    /// Each skill once.
    #[schema(min_items = 1, max_items = 100)]
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
