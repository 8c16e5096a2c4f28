//! CIFIX LEARN backend.
//!
//! Layout (the README's "How the code is laid out" has one line per module): `http/` is the
//! thin axum edge; one folder per domain holds its logic and queries and knows nothing of axum;
//! `reactions/` alone decides what follows each fact a domain reports; `kernel/` is the shared
//! vocabulary; `infra/` the swappable infrastructure; `entities/` and `migration/` the one
//! schema shared by PostgreSQL and SQLite. Dependencies point down: app → http → state →
//! reactions → domains → kernel → infra → entities.

pub mod achievements;
pub mod admin;
pub mod app;
pub mod assessments;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod dashboard;
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
pub mod submissions;
pub mod telemetry;
