use sea_orm::entity::prelude::*;

/// A stored notification: the source of truth for what a user was told, and the log that
/// real-time clients resume from.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// The event type, e.g. `course.completed` (API.md's real-time event types).
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: Option<Json>,
    pub read_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
