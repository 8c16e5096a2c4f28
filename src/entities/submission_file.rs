use sea_orm::entity::prelude::*;

use super::enums::ScanStatus;

/// One file of a submission. The bytes are in the object store under `object_key`, which is
/// ours (never the uploaded name).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "submission_files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub submission_id: Uuid,
    /// The submitting student, so the storage quota is one indexed sum.
    pub user_id: Uuid,
    pub position: i32,
    pub filename: String,
    pub size: i64,
    pub content_type: String,
    pub sha256: String,
    pub object_key: String,
    pub scan_status: ScanStatus,
    pub scan_signature: Option<String>,
    pub scan_attempts: i32,
    pub scan_next_at: Option<DateTimeUtc>,
    pub scan_locked_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
