//! SeaORM entities: the typed view of the tables created in `migration/`.

pub mod achievement;
pub mod activity_hour;
pub mod audit_log;
pub mod course;
pub mod enrollment;
pub mod lesson;
pub mod lesson_progress;
pub mod module;
pub mod notification;
pub mod progress_event;
pub mod realtime_ticket;
pub mod refresh_token;
pub mod session;
pub mod user;
pub mod user_achievement;
