//! Swappable infrastructure: each part has an embedded default and a production service.

pub mod cache;
pub mod db;
pub mod ratelimit;
pub mod realtime;
pub mod redis;
pub mod scanner;
pub mod sqlite;
pub mod storage;
pub mod wakeup;
