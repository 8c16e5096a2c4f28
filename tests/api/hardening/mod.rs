//! What a hostile review found: real users blocked by limits meant for attackers, slow and
//! greedy clients, secrets and data at rest, content and audit. Each test fails without its fix.

mod caps;
mod connections;
mod content;
mod operations;
mod refusals;
mod secrets;
mod sign_in_limits;

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{TestApp, expect, s};

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

/// A machine request signed with the README's scheme, the HMAC key given directly.
/// An integration client (its id and signing key, as the tool derives it from the secret) and a
/// student's pending assessment, for tests of signed calls.
pub async fn tool_and_pending_assessment(app: &TestApp) -> (String, Vec<u8>, Value) {
    let admin = app.user("admin", "admin").await;
    let kid = app.user("kid", "student").await;
    let c = expect(
        app.post("/admin/integrations/clients", admin.auth(), json!({"name": "Tool"})).await,
        StatusCode::CREATED,
    )
    .await;
    let key = Sha256::digest(s(&c["client_secret"]).as_bytes()).to_vec();
    let a = expect(app.post("/me/assessments", kid.auth(), json!({})).await, StatusCode::CREATED).await;
    (s(&c["client_id"]), key, a)
}

pub fn signed(app: &TestApp, path: &str, client_id: &str, key: &[u8], body: &Value) -> reqwest::RequestBuilder {
    let body = serde_json::to_vec(body).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let msg = format!("{ts}\n{nonce}\nPOST\n{path}\n{}", hex::encode(Sha256::digest(&body)));
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg.as_bytes());
    app.req(Method::POST, path, None)
        .header("x-cifix-client", client_id)
        .header("x-cifix-timestamp", ts)
        .header("x-cifix-nonce", nonce)
        .header("x-cifix-signature", format!("v1={}", hex::encode(mac.finalize().into_bytes())))
        .header("content-type", "application/json")
        .body(body)
}
