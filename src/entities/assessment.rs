use sea_orm::entity::prelude::*;

use super::enums::AssessmentState;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "assessments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// `pending` or `completed`; a pending row past `expires_at` reads as `expired`.
    pub status: AssessmentState,
    pub launch_token_hash: String,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub received_at: Option<DateTimeUtc>,
    pub client_id: Option<Uuid>,
    pub external_id: Option<String>,
    pub payload_hash: Option<String>,
    pub overall_score: Option<f64>,
    pub skills: Option<Json>,
    pub details: Option<Json>,
    pub raw_payload: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
