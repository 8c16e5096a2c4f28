//! CIFIX LEARN backend.
//!
//! Layout: `http/` is the thin axum edge (routing, extractors, middleware, OpenAPI);
//! `auth/`, `audit/`, `catalog/`, `progress/` and `email/` hold domain logic that knows nothing of axum; `infra/` holds the
//! swappable infrastructure (database, Redis, rate limiting); `entities/` and `migration/`
//! are the one schema definition shared by PostgreSQL and SQLite.

pub mod achievements;
pub mod admin;
pub mod app;
pub mod assessments;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod demo;
pub mod email;
pub mod entities;
pub mod http;
pub mod idempotency;
pub mod infra;
pub mod kernel;
pub mod migration;
pub mod notifications;
pub mod progress;
pub mod reactions;
pub mod state;
pub mod telemetry;
