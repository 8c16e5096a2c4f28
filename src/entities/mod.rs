//! SeaORM entities: the typed view of the tables created in `migration/`.

pub mod achievement;
pub mod activity_hour;
pub mod assessment;
pub mod audit_log;
pub mod course;
pub mod email_outbox;
pub mod email_suppression;
pub mod email_token;
pub mod enrollment;
pub mod enums;
pub mod idempotency_key;
pub mod integration_client;
pub mod integration_nonce;
pub mod learning_path;
pub mod lesson;
pub mod lesson_progress;
pub mod module;
pub mod notification;
pub mod notification_preference;
pub mod progress_event;
pub mod realtime_ticket;
pub mod refresh_token;
pub mod session;
pub mod skill_level;
pub mod user;
pub mod user_achievement;
