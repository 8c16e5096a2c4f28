//! What a hostile review found: real users blocked by limits meant for attackers, slow and
//! greedy clients, secrets and data at rest, content and audit. Each test fails without its fix.

mod caps;
mod connections;
mod operations;
mod secrets;
mod sign_in_limits;

use std::collections::HashMap;

use reqwest::{Method, Response};
use serde_json::json;

use crate::support::TestApp;

/// The harness lifts every budget out of the way; these tests want the shipped defaults.
pub fn default_limits(env: &mut HashMap<String, String>) {
    for k in [
        "CIFIX_RATE_LIMIT_PER_MINUTE",
        "CIFIX_AUTH_RATE_LIMIT_PER_MINUTE",
        "CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE",
        "CIFIX_AUTH_FAILURES_PER_MINUTE",
        "CIFIX_REGISTRATIONS_PER_HOUR",
    ] {
        env.remove(k);
    }
}

/// A sign-in as the trusted proxy forwards it for a client at `ip`.
pub async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> Response {
    app.req(Method::POST, "/auth/login", None)
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}
