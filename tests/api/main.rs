//! The integration tests, in one binary so that the crate is built and linked for them once.
//! `support` is the harness every module uses: the application on a fresh database, users,
//! requests and the assertions on their answers, and a real SMTP server.

mod support;

mod achievements;
mod admin;
mod assessments;
mod auth;
mod browser;
mod catalog;
mod console;
mod contract;
mod email;
mod guards;
mod hardening;
mod outages;
mod policies;
mod process;
mod progress;
mod reactions;
mod realtime;
mod statements;
mod storage;
mod submissions;
