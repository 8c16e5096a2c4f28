use sea_orm::entity::prelude::*;

/// One email the API has promised: written in the transaction of the change that causes it,
/// delivered later by a worker. `payload` holds the rendered parts.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "email_outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub to_address: String,
    pub to_name: Option<String>,
    pub user_id: Option<Uuid>,
    pub template: String,
    pub subject: String,
    pub payload: Json,
    /// queued | sending | sent | failed | suppressed
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub last_error: Option<String>,
    /// While `status = sending`: the claim expires then, and another worker may take the row.
    pub locked_until: Option<DateTimeUtc>,
    /// Which claim holds the row, so a worker whose lease ran out cannot overwrite the result
    /// of the worker that re-claimed it.
    pub lease_id: Option<Uuid>,
    pub dedup_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
