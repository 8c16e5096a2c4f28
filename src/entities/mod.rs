//! SeaORM entities: the typed view of the tables created in `migration/`.

pub mod audit_log;
pub mod refresh_token;
pub mod session;
pub mod user;
