use sea_orm::entity::prelude::*;

use super::enums::AchievementKind;

/// One achievement and its rule: `kind` names the metric, `threshold` the value to reach.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "achievements")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub code: String,
    pub title: String,
    pub description: String,
    pub icon: String,
    pub kind: AchievementKind,
    pub threshold: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
