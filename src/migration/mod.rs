//! The one schema definition for PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;

mod m0001_foundation;
mod m0002_catalog;
mod m0003_notifications;
mod m0004_assessments;
mod m0005_achievements;
mod m0006_email;
mod m0007_idempotency;
mod m0008_sealed_client_keys;
mod m0009_submissions;
mod m0010_admin_statistics;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_foundation::Migration),
            Box::new(m0002_catalog::Migration),
            Box::new(m0003_notifications::Migration),
            Box::new(m0004_assessments::Migration),
            Box::new(m0005_achievements::Migration),
            Box::new(m0006_email::Migration),
            Box::new(m0007_idempotency::Migration),
            Box::new(m0008_sealed_client_keys::Migration),
            Box::new(m0009_submissions::Migration),
            Box::new(m0010_admin_statistics::Migration),
        ]
    }
}
