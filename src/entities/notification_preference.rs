use sea_orm::entity::prelude::*;

/// A user's email choices. No row means the defaults (everything on).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_preferences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub achievements: bool,
    pub progress_digest: bool,
    pub assessment_results: bool,
    pub new_sign_in: bool,
    pub project_reviews: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
